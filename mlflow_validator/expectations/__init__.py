"""What the answers of both stages must satisfy: the sample requests (`requests.py`), the checks over
a stage's answers (`answers.py`), value comparison (`compare.py`), the output signature
(`contract.py`) and the changes from a baseline (`baseline.py`). Runs nothing."""
