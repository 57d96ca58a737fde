"""`doctor` on machines that lack each part a validation needs: it names the part and exits 2; on this machine,
with everything there, it says so and exits 0. (A token that may not write: test_write_back.py.)"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.integration.test_interpreter import model_asking_for_python

EXAMPLE = Path(__file__).parents[2] / "examples" / "iris-classifier"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_with_everything_there_it_says_so(run_cli, docker_engine):
    result = run_cli("doctor", str(EXAMPLE))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "MISSING" not in result.stdout and "everything this validation needs works here" in result.stdout
    for part in ("uv", "docker engine", "cage", "interpreters", "model", "Python 3.11"):
        assert f"ok  {part}" in result.stdout


@pytest.mark.parametrize(
    ("case", "missing", "says"),
    [
        ("no engine", "docker engine", "or leave docker out of --stages"),
        ("a CLI without buildx", "docker engine", "has no buildx plugin"),
        ("no cage", "cage", "neither backend can cage the model"),
        ("not the model's Python", "Python 3.99.1", "no Python 3.99 interpreter on this machine"),
        ("no registry", "model", "127.0.0.1"),
    ],
)
def test_a_part_that_cannot_work_is_named_and_is_exit_2(run_cli, tmp_path, case, missing, says):
    args, env = [str(EXAMPLE)], {}
    if case == "no engine":  # named in --stages: the validation would need it
        env["DOCKER_HOST"] = f"unix://{tmp_path}/no-engine.sock"
        args += ["--stages", "static,venv,docker"]
    elif case == "a CLI without buildx":
        env["MLFLOW_VALIDATOR_DOCKER_CLI"] = "/usr/local/bin/docker"
        args += ["--stages", "static,venv,docker"]
    elif case == "no cage":  # neither bubblewrap nor a Docker CLI on PATH
        empty = tmp_path / "bin"
        empty.mkdir()
        env |= {"PATH": str(empty), "MLFLOW_VALIDATOR_DOCKER_CLI": "docker"}
        args += ["--stages", "static,venv"]
    elif case == "not the model's Python":
        args = [str(model_asking_for_python(tmp_path, "3.99.1")), "--stages", "static,venv"]
        args += ["--sandbox-backend", "bubblewrap"]  # else the engine would run it in a container of its Python
    else:
        args = ["models:/iris/1", "--tracking-uri", f"http://127.0.0.1:{closed_port()}", "--stages", "static"]

    result = run_cli("doctor", *args, env=env, timeout=300)

    assert result.returncode == 2, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("MISSING"))
    assert f"MISSING  {missing}" in line and says in line
    assert result.stderr.strip().endswith(missing) and "Traceback" not in result.stderr


def test_what_the_validation_would_skip_is_no_problem(run_cli, tmp_path):
    """The default stages skip docker without an engine (loudly), as the validation does: doctor says so, exit 0."""
    result = run_cli("doctor", str(EXAMPLE), env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok  docker engine" in result.stdout and "no-engine.sock" in result.stdout
