"""The cage's argv and the sandbox policy, without starting anything (the real cage is an integration test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_validator.checks import Policy
from mlflow_validator.model.lock import Resolver
from mlflow_validator.settings import resolve_options
from mlflow_validator.stages.venv import cage as cage_module
from mlflow_validator.stages.venv.cage import cage_for, cage_problem, caged


def test_the_cage_hides_homes_sockets_and_tmp_and_shows_back_only_what_the_model_needs(tmp_path):
    socket_dir = tmp_path / "engine"
    socket_dir.mkdir()
    env = {"HOME": str(tmp_path / "home"), "DOCKER_HOST": f"unix://{socket_dir}/docker.sock"}
    (tmp_path / "home").mkdir()
    cage = cage_for(tmp_path / "work", [Path("/opt/python")], env, memory_mb=512, cpu_s=60)
    assert {Path("/root"), Path("/tmp"), tmp_path / "home", socket_dir} <= set(cage.hidden)
    argv = [str(arg) for arg in caged(cage, ["python", "-c", "pass"])]
    assert argv[:4] == ["prlimit", f"--as={512 * 1024 * 1024}", "--cpu=60", "--"]
    assert {"--unshare-all", "--die-with-parent", "--new-session"} <= set(argv)
    # binds come after the tmpfs that hide their parents, so the model still sees its own files
    assert argv.index("--tmpfs") < argv.index("/opt/python") < argv.index(str(tmp_path / "work"))
    assert argv[argv.index(str(tmp_path / "work")) - 1] == "--bind"
    assert argv[-4:] == ["--", "python", "-c", "pass"]


def test_a_machine_that_cannot_cage_says_what_to_enable(monkeypatch):
    class Refused:
        ok = False
        output = "bwrap: No permissions to creating new namespace"

    monkeypatch.setattr(cage_module.commands, "run", lambda *args, **kwargs: Refused())
    assert "No permissions" in cage_problem({"PATH": "/usr/bin"})
    assert "apt-get install bubblewrap" in cage_module.ENABLE_HINT


@pytest.mark.parametrize(("env", "policy"), [({"CI": "true"}, Policy.ERROR), ({}, Policy.WARN)])
def test_the_sandbox_policy_is_error_in_ci_and_warn_elsewhere(tmp_path, env, policy):
    assert resolve_options({"model_uri": "m"}, env, tmp_path).policy("sandbox") is policy


def test_the_config_file_decides_the_sandbox_policy_over_the_ci_default(tmp_path):
    (tmp_path / "mlflow-validator.yaml").write_text("checks: {sandbox: 'off'}\n")
    assert resolve_options({"model_uri": "m"}, {"CI": "true"}, tmp_path).policy("sandbox") is Policy.OFF


def test_where_the_cage_fails_under_error_the_model_is_not_loaded(tmp_path, monkeypatch):
    from mlflow_validator.model.fetch import FetchedModel
    from mlflow_validator.model.files import ModelFiles
    from mlflow_validator.results import ModelIdentity, Status
    from mlflow_validator.stages.context import RunContext
    from mlflow_validator.stages.venv import stage as venv_stage

    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    options = resolve_options({"model_uri": "m"}, {"CI": "true"}, tmp_path)
    model = FetchedModel(ModelFiles(tmp_path, {}), ModelIdentity("m", "m"))
    resolver = Resolver(model.files, tmp_path, tmp_path, None, {}, timeout_s=1)  # resolves nothing here
    stage = venv_stage.VenvStage(RunContext(options, {}, model, [], tmp_path, "run", {}, resolver, options.build))
    monkeypatch.setattr(venv_stage, "cage_problem", lambda env: "bwrap: setting up uid map: Permission denied")

    sandbox = stage.build_cage()
    assert sandbox.status is Status.FAILED
    assert "Permission denied" in sandbox.message and "apt-get install bubblewrap" in sandbox.message
    loaded = stage.load_model()
    assert loaded.status is Status.SKIPPED
    assert "would run uncaged" in loaded.message
