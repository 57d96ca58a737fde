"""Runs inside the model's own virtualenv, with the model's MLflow: not imported by the validator.

It answers each request with `invocations`, the function behind the scoring server's /invocations,
and turns exceptions into statuses the way the server does, so this stage and the container answer
the same question. Each request is answered twice, to catch non-determinism; then the first request
is repeated to measure latency. Then it goes on answering, one JSON line per question ({"body",
"content_type"} in, {"status", "body", "seconds"} out), for the generated inputs and the team's checks,
until it is stopped: one question per connection on a listening socket the validator made where the
model cannot write and handed down (bubblewrap), or questions on stdin (a container, ANSWERS_JSON `-`).

Usage: python -I predictor.py MODEL_DIR PLAN_JSON ANSWERS_JSON [LISTENING_FD]
PLAN_JSON: {"requests": [{"name", "body_file" (relative to PLAN_JSON), "content_type"}, ...], "latency_samples": n,
            "stream": name of the request predict_stream is asked once, or absent}
ANSWERS_JSON: {"load_seconds": s, "answers": {name: [{"status", "body", "seconds"} x 2]}, "latency_seconds": [...],
               "stream": {"chunks": [...], "error": "..."}},
written to the file, or as the first line on stdout when it is `-` (the model's own prints then go to stderr).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any

if sys.argv[3:4] == ["-"]:  # before any import that may print: what the model prints goes to its log
    ANSWERS_OUT = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

from mlflow.exceptions import MlflowException
from mlflow.pyfunc import load_model
from mlflow.pyfunc.scoring_server import invocations

MAX_CHUNKS = 1000
DOOR_CLOSED = "mlflow-validator: the egress door did not open"  # the validator's trouble: see stage.py


def answer(model: Any, schema: Any, body: str, content_type: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        response = invocations(body, content_type, model, schema)
        status, text = response.status, response.response
    except MlflowException as exc:
        status, text = exc.get_http_status_code(), exc.serialize_as_json()
    except Exception as exc:  # the server answers 500 to anything else, serialization errors included
        text = json.dumps({"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"})
        status = 500
    return {"status": status, "body": text, "seconds": time.perf_counter() - started}


def serve(model: Any, schema: Any, listening_fd: int) -> None:
    server = socket.socket(fileno=listening_fd)
    while True:
        connection, _ = server.accept()
        with connection, connection.makefile("rwb") as stream:
            request = json.loads(stream.readline())
            stream.write(json.dumps(answer(model, schema, request["body"], request["content_type"])).encode() + b"\n")


def serve_stdio(model: Any, schema: Any, answers: Any) -> None:
    for line in sys.stdin.buffer:
        request = json.loads(line)
        answers.write(json.dumps(answer(model, schema, request["body"], request["content_type"])).encode() + b"\n")
        answers.flush()


def stream_once(model: Any, schema: Any, body: str) -> dict[str, Any]:
    """predict_stream asked once, as a streaming client would ask it: its chunks, or why it stopped."""
    chunks: list[Any] = []
    try:
        from mlflow.pyfunc.scoring_server import _parse_json_data

        parsed = _parse_json_data(body, model.metadata, schema)
        for chunk in model.predict_stream(parsed.data, params=parsed.params):
            chunks.append(json.loads(json.dumps(chunk, default=repr)))
            if len(chunks) >= MAX_CHUNKS:
                break
    except NotImplementedError as exc:  # MLflow marks every ChatModel streamable; the base class raises this
        if not chunks:
            return {"offered": False}
        return {"chunks": chunks, "error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # the stream's failure is the answer
        return {"chunks": chunks, "error": f"{type(exc).__name__}: {exc}"}
    return {"chunks": chunks}


def await_door(address: str, timeout_s: float = 30) -> None:
    """A container's egress door is started beside this process: the model finds its proxy from its first line."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    print(f"{DOOR_CLOSED} within {timeout_s:g} s", file=sys.stderr, flush=True)
    sys.exit(3)


def main(model_dir: str, plan_path: str, answers_path: str, listening_fd: str = "") -> None:
    # Where relative paths go (MLflow's own sqlite:///mlflow.db for traces, say). Not the container's
    # --workdir: Docker 20.10 makes a --workdir that is a tmpfs root's, 0755, whatever its mode says.
    os.chdir(os.environ["HOME"])
    if door := os.environ.pop("MLFLOW_VALIDATOR_DOOR", ""):
        await_door(door)
    with open(plan_path) as plan_file:
        plan = json.load(plan_file)
    started = time.perf_counter()
    model = load_model(model_dir)
    load_seconds = time.perf_counter() - started
    schema = model.metadata.get_input_schema()
    bodies = {}
    for request in plan["requests"]:
        with open(os.path.join(os.path.dirname(plan_path), request["body_file"])) as body_file:
            bodies[request["name"]] = body_file.read()
    answers = {
        request["name"]: [answer(model, schema, bodies[request["name"]], request["content_type"]) for _ in range(2)]
        for request in plan["requests"]
    }
    first = plan["requests"][0]
    latency = [
        answer(model, schema, bodies[first["name"]], first["content_type"])["seconds"]
        for _ in range(plan["latency_samples"])
    ]
    written = {"load_seconds": load_seconds, "answers": answers, "latency_seconds": latency}
    if plan.get("stream"):
        written["stream"] = stream_once(model, schema, bodies[plan["stream"]])
    if answers_path == "-":
        ANSWERS_OUT.write(json.dumps(written).encode() + b"\n")
        ANSWERS_OUT.flush()
        serve_stdio(model, schema, ANSWERS_OUT)
        return
    with open(answers_path + ".partial", "w") as out:  # renamed once complete: its existence says "answered"
        json.dump(written, out)
    os.replace(answers_path + ".partial", answers_path)
    if listening_fd:
        serve(model, schema, int(listening_fd))


main(*sys.argv[1:5])
