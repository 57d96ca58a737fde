"""The GitLab CI/CD component, included the way GitLab documents testing a component in its own project
(`$CI_SERVER_FQDN/$CI_PROJECT_PATH/NAME@$CI_COMMIT_SHA`) and run by gitlab-ci-local with a shell executor
against a local model. The shell executor has no service containers, so the job is given none, and the
docker stage (which needs the dind service) is left out; the remote TLS engine it would talk to is tested
in test_docker_on_ci.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.reports import read_report
from tests.paths import ROOT

JOB = "mlflow-validator"
GIT_IDENTITY = ("-c", "user.name=ci", "-c", "user.email=ci@example.invalid")


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", *GIT_IDENTITY, *args], cwd=project, check=True, capture_output=True, timeout=60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A GitLab project holding the component and two models, one whose pins cannot be installed."""
    project = tmp_path / "project"
    (project / "templates").mkdir(parents=True)
    shutil.copy(ROOT / "templates" / "validate.yml", project / "templates")
    shutil.copytree(ROOT / "examples" / "iris-classifier", project / "models" / "good")
    shutil.copytree(ROOT / "examples" / "iris-classifier", project / "models" / "bad-pin")
    requirements = project / "models" / "bad-pin" / "requirements.txt"
    requirements.write_text(requirements.read_text() + "cloudpickle==99.0.0\n")
    git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "remote", "add", "origin", "git@gitlab.example.com:acme/models.git")
    return project


def run_job(project: Path, inputs: dict[str, str]) -> subprocess.CompletedProcess[str]:
    pipeline = {
        "include": [{"component": "$CI_SERVER_FQDN/$CI_PROJECT_PATH/validate@$CI_COMMIT_SHA", "inputs": inputs}],
        JOB: {"services": []},
    }
    (project / ".gitlab-ci.yml").write_text(yaml.safe_dump(pipeline))
    git(project, "add", ".")
    git(project, "commit", "--quiet", "--allow-empty", "-m", "pipeline")
    executable = shutil.which("gitlab-ci-local")
    assert executable, "gitlab-ci-local is not installed: scripts/test installs it (npm install -g gitlab-ci-local)"
    done = subprocess.run(
        # gitlab-ci-local says GITLAB_CI=false; GitLab's runners say true, which turns the log sections on.
        [executable, "--force-shell-executor", "--no-color", "--variable", "GITLAB_CI=true", JOB],
        cwd=project,
        env={**os.environ, "TMPDIR": str(project.parent)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(done.stdout, done.stderr)
    return done


def test_the_components_job_validates_a_model_and_keeps_its_report(project):
    done = run_job(project, {"model-uri": "models/good", "stages": "static,venv", "args": "--quiet --rtol 0.001"})

    assert done.returncode == 0, done.stderr
    assert f"PASS  {JOB}" in done.stdout
    assert "PASSED static, venv only: docker did not run" in done.stdout
    for stage in ("static", "venv"):
        assert "section_start:" in done.stdout and f"mlflow_validator_{stage}" in done.stdout
    artifacts = project / ".gitlab-ci-local" / "artifacts" / JOB / "mlflow-validator-report"
    statuses = read_report(artifacts / "junit.xml")
    assert statuses["venv"]["load-model"] == "passed"
    assert "PASS  static mlmodel" not in done.stdout, "args pass through: --quiet"
    assert "ok  cage" in done.stdout and "everything this validation needs works here" in done.stdout, "doctor first"
    assert (artifacts / "verdict.env").read_text().splitlines() == [
        "MLFLOW_VALIDATOR_VERDICT=partial",
        "MLFLOW_VALIDATOR_EXIT_CODE=0",
        "MLFLOW_VALIDATOR_IMAGE_DIGEST=",
    ]
    assert (artifacts / "summary.md").read_text().startswith("## ✅ `models/good`: PASSED static, venv only")


def test_a_failed_gate_fails_the_job(project):
    done = run_job(project, {"model-uri": "models/bad-pin", "stages": "static"})

    assert done.returncode != 0
    assert f"FAIL  {JOB}" in done.stdout
    assert "mlflow-validator: the gate failed: static" in done.stdout + done.stderr
    artifacts = project / ".gitlab-ci-local" / "artifacts" / JOB / "mlflow-validator-report"
    assert "failure" in read_report(artifacts / "junit.xml")["static"].values(), "the report is kept when the job fails"
    assert "MLFLOW_VALIDATOR_EXIT_CODE=1" in (artifacts / "verdict.env").read_text()
