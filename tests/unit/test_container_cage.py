"""The container cage's argv, its files and its channel, without an engine (the real container cage is an
integration test: tests/integration/test_cage.py)."""

from __future__ import annotations

import itertools
import os
import tarfile
import time
from types import SimpleNamespace

import pytest

from mlflow_validator.serving.endpoint import MAX_ANSWER_BYTES, BadAnswer
from mlflow_validator.stages.venv.cage import Bounds
from mlflow_validator.stages.venv.container_cage import FILES, Channel, ContainerCage, created, packed

CAGE = ContainerCage("deps:1", "mlflow-validator-run-venv", {"org.mlflow-validator.managed": "run"}, 1_900_000_123,
                     Bounds(memory_mb=512, cpu_seconds=60, processes=100))  # fmt: skip


def test_the_container_has_no_network_no_capability_a_read_only_root_and_bounds():
    argv = created(CAGE, ["python", "-I", "predictor.py"], {"HOME": "/home/model"}, passed=["OPENAI_API_KEY"])
    pairs = set(itertools.pairwise(argv))
    assert {("--network", "none"), ("--cap-drop", "ALL"), ("--security-opt", "no-new-privileges")} <= pairs
    assert {("--user", "1900000123:1900000123"), ("--pids-limit", "100"), ("--ulimit", "cpu=60:60")} <= pairs
    assert {("--memory", "512m"), ("--memory-swap", "512m")} <= pairs
    assert "--read-only" in argv and "--privileged" not in argv and ("--log-driver", "none") in pairs
    assert ("--mount", f"type=volume,dst={FILES}") in pairs  # a volume of its own: nothing of the job
    assert not any(arg in ("--volume", "-v") or "type=bind" in arg for arg in argv)
    assert ("--env", "OPENAI_API_KEY") in pairs  # the value stays in the docker CLI's environment
    assert argv[argv.index("--entrypoint") + 1 :] == ["python", "deps:1", "-I", "predictor.py"]


def test_the_models_files_go_in_as_roots_readable_by_all_writable_by_none_else(tmp_path):
    model = tmp_path / "model"
    (model / "artifacts").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "MLmodel").chmod(0o600)  # a model logged under umask 077
    (model / "artifacts" / "run.sh").write_text("#!/bin/sh\n")
    (model / "artifacts" / "run.sh").chmod(0o700)
    archive = packed({"model": model}, tmp_path / "files.tar")
    with tarfile.open(archive) as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert {member.uid for member in members.values()} == {0}
    assert members["model/MLmodel"].mode == 0o644
    assert members["model/artifacts/run.sh"].mode == 0o755
    assert members["model/artifacts"].mode == 0o755


def channel_over_pipes(first_line_bytes: int = 100) -> tuple[Channel, int, int]:
    """A channel whose "process" is two pipes: the test writes the model's side."""
    answers_read, answers_write = os.pipe()
    questions_read, questions_write = os.pipe()
    process = SimpleNamespace(stdin=os.fdopen(questions_write, "wb"), stdout=os.fdopen(answers_read, "rb"))
    return Channel(process, first_line_bytes), answers_write, questions_read  # type: ignore[arg-type]


def test_the_channel_reads_one_line_per_answer_and_gives_up_on_a_late_one():
    channel, model_side, _ = channel_over_pipes()
    os.write(model_side, b'{"answers": 1}\n{"status": 200, "body": "[1]"}\n')
    assert channel.next_line(5) == b'{"answers": 1}\n'
    assert channel.ask(b'{"body": "{}", "content_type": "application/json"}\n', 5).startswith(b'{"status": 200')
    with pytest.raises(TimeoutError):
        channel.ask(b"{}\n", 0.2)
    os.write(model_side, b'{"status": 200, "body": "late"}\n')
    with pytest.raises(ConnectionError):  # out of step: a late answer is never taken for the next one
        channel.ask(b"{}\n", 5)


def test_a_line_longer_than_allowed_or_the_end_of_the_stream_is_no_answer():
    channel, model_side, _ = channel_over_pipes(first_line_bytes=10)
    os.write(model_side, b"x" * 11 + b"\n")
    with pytest.raises(BadAnswer):
        channel.next_line(5)
    channel, model_side, _ = channel_over_pipes()
    os.write(model_side, b"{}\n" + b"y" * (MAX_ANSWER_BYTES + 1))
    assert channel.next_line(5) == b"{}\n"
    with pytest.raises(BadAnswer):
        channel.next_line(5)
    channel, model_side, _ = channel_over_pipes()
    os.close(model_side)
    with pytest.raises(ConnectionError):
        channel.next_line(5)


def test_a_model_that_reads_no_question_does_not_hold_the_validator():
    channel, _, _ = channel_over_pipes()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        channel.ask(b"x" * 2**20 + b"\n", 0.5)  # more than a pipe holds, and nobody reads it
    assert time.monotonic() - started < 2
    with pytest.raises(ConnectionError):
        channel.ask(b"{}\n", 5)
