"""The model under validation: its URI resolved and fetched (`fetch.py`), and its files read once
into typed views (`files.py`, `mlmodel.py`, `requirements.py`)."""
