"""What of a serving container's log is the model's: the reach hint reads only that."""

from mlflow_validator.expectations.answers import reach_hint
from mlflow_validator.serving.container import python_tracebacks

NGINX_WAITING = (
    "2026/12/06 10:00:00 [error] 25#25: *1 connect() failed (111: Connection refused) while connecting to upstream"
)
MODEL_CALLS_OUT = """Traceback (most recent call last):
  File "/opt/ml/model/code/model.py", line 9, in predict
    requests.get(self.url, timeout=5)
requests.exceptions.ConnectionError: HTTPConnectionPool(host='llm.internal', port=443): \
Max retries exceeded (Temporary failure in name resolution)"""


def test_nginx_waiting_for_the_scoring_server_is_not_the_model_calling_out():
    assert python_tracebacks(f"{NGINX_WAITING}\n[INFO] Booting worker with pid: 7\n") == ""
    assert reach_hint(python_tracebacks(NGINX_WAITING)) is None


def test_the_models_own_traceback_is_kept_whole():
    logs = f"{NGINX_WAITING}\n{MODEL_CALLS_OUT}\n[INFO] Worker exiting (pid: 7)\n"
    assert python_tracebacks(logs) == MODEL_CALLS_OUT
    hint = reach_hint(python_tracebacks(logs))
    assert hint is not None and "host='llm.internal', port=443" in hint


def test_an_nginx_line_written_into_the_models_traceback_is_not_its_closing_line():
    crash = MODEL_CALLS_OUT.replace("Temporary failure in name resolution", "x").splitlines()
    crash[-1] = "FileNotFoundError: weights.bin is missing from the model directory"
    interleaved = "\n".join([*crash[:-1], NGINX_WAITING, crash[-1]])
    assert python_tracebacks(interleaved) == "\n".join(crash)
    assert reach_hint(python_tracebacks(interleaved)) is None
