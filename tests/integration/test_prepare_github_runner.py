"""The Action's first step on the runners it meets. AppArmor is not on this machine: the restriction's
sysctl and the profile directory are files the test makes, and apparmor_parser records what it loads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.paths import ROOT

SCRIPT = ROOT / "scripts" / "prepare-github-runner"


def prepare(tmp_path: Path, restricted: str, **env: str) -> subprocess.CompletedProcess[str]:
    restriction = tmp_path / "apparmor_restrict_unprivileged_userns"
    restriction.write_text(restricted + "\n")
    (tmp_path / "apparmor.d").mkdir(exist_ok=True)
    tools = tmp_path / "bin"
    tools.mkdir(exist_ok=True)
    parser = tools / "apparmor_parser"
    parser.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/loaded\n')
    parser.chmod(0o755)
    child_env = {
        **os.environ,
        "PATH": f"{tools}:{os.environ['PATH']}",
        "MLFLOW_VALIDATOR_USERNS_RESTRICTION": str(restriction),
        "MLFLOW_VALIDATOR_APPARMOR_DIR": str(tmp_path / "apparmor.d"),
        **env,
    }
    return subprocess.run([str(SCRIPT)], env=child_env, capture_output=True, text=True, timeout=300)


def test_where_apparmor_restricts_user_namespaces_bwrap_alone_gets_them(tmp_path):
    done = prepare(tmp_path, "1", RUNNER_OS="Linux")
    assert done.returncode == 0, done.stderr
    profile = tmp_path / "apparmor.d" / "bwrap-userns-restrict"
    assert "userns," in profile.read_text()
    assert "bwrap" in profile.read_text()
    assert (tmp_path / "loaded").read_text().split() == ["--replace", str(profile)]
    # the restriction stays on for everything else
    assert (tmp_path / "apparmor_restrict_unprivileged_userns").read_text() == "1\n"


def test_without_the_restriction_nothing_is_loaded(tmp_path):
    done = prepare(tmp_path, "0", RUNNER_OS="Linux")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "loaded").exists()
    assert list((tmp_path / "apparmor.d").iterdir()) == []


def test_a_runner_that_is_not_linux_fails_fast_with_one_error(tmp_path):
    done = prepare(tmp_path, "0", RUNNER_OS="macOS")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "::error title=mlflow-validator::the validator runs on Linux runners only, this one is macOS: "
        "use runs-on: ubuntu-24.04"
    ]
