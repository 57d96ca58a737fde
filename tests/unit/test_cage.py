"""The cage's argv and the sandbox policy, without starting anything (the real cage is an integration test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_validator.checks import Policy
from mlflow_validator.errors import InfrastructureError
from mlflow_validator.model.lock import Resolver
from mlflow_validator.settings import resolve_options
from mlflow_validator.stages.venv import cage as cage_module
from mlflow_validator.stages.venv.cage import CAGE_UIDS, Bounds, cage_for, cage_problem, caged, hidden_paths
from mlflow_validator.stages.venv.stage import interpreter_prefixes

BOUNDS = Bounds(memory_mb=512, cpu_seconds=60, processes=100)


def test_the_cage_hides_homes_sockets_tmp_and_the_checkout(tmp_path):
    socket_dir, checkout, workspace = tmp_path / "engine", tmp_path / "checkout", tmp_path / "workspace"
    for directory in (socket_dir, checkout, workspace, tmp_path / "home"):
        directory.mkdir()
    env = {
        "HOME": str(tmp_path / "home"),
        "DOCKER_HOST": f"unix://{socket_dir}/docker.sock",
        "GITHUB_WORKSPACE": str(workspace),
        "CI_BUILDS_DIR": str(tmp_path / "not-there"),
    }
    hidden = hidden_paths(env, checkout, extra=[tmp_path / "run"])
    assert {Path("/root"), Path("/tmp"), tmp_path / "home", socket_dir, checkout, workspace} <= set(hidden)
    assert tmp_path / "not-there" not in hidden  # only what exists
    assert Path("/") not in hidden_paths(env, Path("/"))
    assert Path("/usr/lib") not in hidden_paths(env, Path("/usr/lib"))  # a system directory is no checkout
    runner = tmp_path / "actions-runner"
    (runner / "_work" / "repository").mkdir(parents=True)
    self_hosted = {"RUNNER_WORKSPACE": str(runner / "_work" / "repository")}
    assert runner in hidden_paths(self_hosted, Path("/"))  # its .credentials live there


def test_as_a_user_the_model_gets_a_user_namespace_without_capabilities(tmp_path):
    cage = cage_for(tmp_path / "home", [Path("/opt/python")], [Path("/tmp")], BOUNDS, euid=1000)
    assert cage.model_uid is None
    argv = [str(arg) for arg in caged(cage, ["python", "-c", "pass"])]
    assert argv[:5] == ["prlimit", f"--as={512 * 1024 * 1024}", "--cpu=60", f"--nproc={cage.tasks_before + 100}", "--"]
    assert {"--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session"} <= set(argv)
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert "setpriv" not in argv
    # binds come after the tmpfs that hide their parents, so the model still sees its own files
    assert argv.index("--tmpfs") < argv.index("/opt/python") < argv.index(str(tmp_path / "home"))
    assert argv[argv.index(str(tmp_path / "home")) - 1] == "--bind"
    assert argv[-4:] == ["--", "python", "-c", "pass"]
    shm = argv.index("/dev/shm")  # shared memory the model may use, within its memory bound
    assert argv[shm - 5 : shm] == ["--perms", "1777", "--size", str(512 * 2**20), "--tmpfs"]


def test_as_root_the_model_becomes_a_fresh_uid_without_capabilities_and_no_user_namespace_maps_it_to_root(tmp_path):
    cage = cage_for(tmp_path / "home", [], [], BOUNDS, euid=0)
    assert cage.model_uid in CAGE_UIDS
    assert cage.tasks_before == 0  # nothing runs as that uid yet
    argv = [str(arg) for arg in caged(cage, ["python"])]
    assert "--unshare-all" not in argv and "--unshare-user" not in argv
    assert {"--unshare-pid", "--unshare-net", "--unshare-ipc"} <= set(argv)
    become = argv[argv.index("setpriv") :]
    assert become == [
        "setpriv", f"--reuid={cage.model_uid}", f"--regid={cage.model_uid}", "--clear-groups", "--inh-caps=-all",
        "--bounding-set=-all", "--no-new-privs", "--", "python",
    ]  # fmt: skip
    assert argv.index("bwrap") < argv.index("setpriv")  # bubblewrap mounts as root, the model never runs as it


def test_a_machine_that_cannot_cage_says_what_to_enable(monkeypatch):
    class Refused:
        ok = False
        output = "bwrap: No permissions to creating new namespace"

    monkeypatch.setattr(cage_module.commands, "run", lambda *args, **kwargs: Refused())
    assert "No permissions" in cage_problem({"PATH": "/usr/bin"}, euid=1000)
    assert "apt-get install bubblewrap" in cage_module.ENABLE_HINT
    assert "bwrap-userns-restrict" in cage_module.ENABLE_HINT


@pytest.mark.parametrize(("env", "policy"), [({"CI": "true"}, Policy.ERROR), ({}, Policy.WARN)])
def test_the_sandbox_policy_is_error_in_ci_and_warn_elsewhere(tmp_path, env, policy):
    assert resolve_options({"model_uri": "m"}, env, tmp_path).policy("sandbox") is policy


def test_the_config_file_decides_the_sandbox_policy_over_the_ci_default(tmp_path):
    (tmp_path / "mlflow-validator.yaml").write_text("checks: {sandbox: 'off'}\n")
    assert resolve_options({"model_uri": "m"}, {"CI": "true"}, tmp_path).policy("sandbox") is Policy.OFF


def test_where_the_cage_fails_under_error_the_validation_stops_and_the_model_is_not_loaded(tmp_path, monkeypatch):
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
    monkeypatch.setattr(venv_stage, "cage_problem", lambda env, euid: "bwrap: setting up uid map: Permission denied")
    monkeypatch.setattr(venv_stage, "engine_problem", lambda env, cli: "Cannot connect to the Docker daemon")

    with pytest.raises(InfrastructureError) as refused:  # the validator's trouble (exit 2), not the model's
        stage.build_cage()
    said = str(refused.value)
    assert "Permission denied" in said and "apt-get install bubblewrap" in said
    assert "Cannot connect to the Docker daemon" in said and "DOCKER_HOST" in said
    loaded = stage.load_model()
    assert loaded.status is Status.SKIPPED
    assert "would run uncaged" in loaded.message


def test_the_directories_made_to_show_a_path_again_are_open_to_the_model(tmp_path):
    """bubblewrap makes them 0700, which a model running as another uid than the validator cannot enter."""
    hidden = [Path("/root"), Path("/tmp/run"), Path("/tmp")]
    cage = cage_for(Path("/tmp/run/venv-stage/home"), [Path("/root/.pyenv/versions/3.11.7")], hidden, BOUNDS, euid=0)
    argv = [str(arg) for arg in caged(cage, ["python"])]
    made = [argv[index + 1] for index, arg in enumerate(argv) if arg == "--dir"]
    assert made == ["/root/.pyenv", "/root/.pyenv/versions", "/tmp/run", "/tmp/run/venv-stage"]
    assert all(argv[index - 2 : index] == ["--perms", "0755"] for index, arg in enumerate(argv) if arg == "--dir")
    tmpfs = [argv[index + 1] for index, arg in enumerate(argv) if arg == "--tmpfs" and argv[index + 1] != "/dev/shm"]
    assert tmpfs.index("/tmp") < tmpfs.index("/tmp/run")  # the outer empty directory first
    remounted = [argv[index + 1] for index, arg in enumerate(argv) if arg == "--remount-ro"]
    assert sorted(remounted) == sorted(tmpfs)  # and none the model's to write in
    assert argv.index("--remount-ro") > argv.index("--bind")


def test_a_models_output_in_a_message_cannot_move_the_cursor_or_start_a_ci_command():
    from mlflow_validator.reporters.console import one_printable_line

    said = "failed: \x1b[2K\x1b[1A\r\n::error::forged\x9b31m\tdone"
    assert one_printable_line(said) == "failed: [2K [1A ::error::forged 31m done"


def test_a_link_to_the_interpreter_in_a_hidden_directory_shows_only_the_install(tmp_path):
    """uv finds `~/bin/python3.11`, a link in the home the cage hides: the home must stay hidden."""
    install = tmp_path / "opt" / "cpython-3.13.0"
    (install / "bin").mkdir(parents=True)
    (install / "bin" / "python3.13").write_text("")
    home_bin = tmp_path / "home" / "bin"
    home_bin.mkdir(parents=True)
    (home_bin / "python3.13").symlink_to(install / "bin" / "python3.13")
    venv_python = tmp_path / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(home_bin / "python3.13")
    assert interpreter_prefixes(home_bin / "python3.13", venv_python) == [install]

    # uv's own installs: the venv links through cpython-3.13 -> cpython-3.13.0, the same install.
    minor = tmp_path / "opt" / "cpython-3.13"
    minor.symlink_to(install)
    venv_python.unlink()
    venv_python.symlink_to(minor / "bin" / "python3.13")
    assert interpreter_prefixes(install / "bin" / "python3.13", venv_python) == [install, minor]
