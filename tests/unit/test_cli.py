"""The command line: every way a run can stop maps to an exit code and one line on stderr."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import mlflow_validator.cli as cli
import mlflow_validator.subcommands as subcommands
from mlflow_validator.errors import Cancelled
from mlflow_validator.runlog import LOG_FILE_NAME
from mlflow_validator.settings import Options

PASSWORD = "pa55-w0rd-xyz"  # a value no path or setting name could contain by chance


@pytest.fixture(autouse=True)
def _restore_sigterm() -> Iterator[None]:
    """main() installs a SIGTERM handler; keep it out of the test process."""
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_an_unknown_flag_is_a_usage_error_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = cli.main(["validate", "m", "--no-such-flag"], env={}, cwd=tmp_path)

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("mlflow-validator: error:")
    assert "--no-such-flag" in err
    assert "Traceback" not in err


def test_a_bad_config_value_is_a_usage_error_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "mlflow-validator.yaml").write_text("timeouts: {predict: -1}\n")

    code = cli.main(["validate", "m"], env={}, cwd=tmp_path)

    lines = stderr_lines(capsys)
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("mlflow-validator: error:")
    assert "timeouts.predict" in lines[0]


def test_a_config_file_that_is_not_yaml_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "mlflow-validator.yaml").write_text("a: [\n")

    code = cli.main(["validate", "m"], env={}, cwd=tmp_path)

    lines = stderr_lines(capsys)
    assert code == 2
    assert len(lines) == 1
    assert "not valid YAML" in lines[0]
    assert "line 2" in lines[0]


def test_a_crash_exits_3_and_writes_the_traceback_to_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    def crash(*args: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(subcommands, "validate", crash)
    out = tmp_path / "out"

    code = cli.main(["validate", "m", "--output-dir", str(out)], env={}, cwd=tmp_path)

    lines = stderr_lines(capsys)
    log_file = out / LOG_FILE_NAME
    assert code == 3
    assert len(lines) == 1
    assert "internal error" in lines[0]
    assert str(log_file) in lines[0]
    text = log_file.read_text()
    assert "Traceback" in text
    assert "RuntimeError: boom" in text
    assert "settings:" in text
    assert "output_dir" in text
    assert "(not resolved)" not in text


def test_a_cancelled_run_says_what_it_created_was_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    def cancelled(*args: object) -> int:
        raise Cancelled()

    monkeypatch.setattr(subcommands, "validate", cancelled)

    code = cli.main(["validate", "m"], env={}, cwd=tmp_path)

    lines = stderr_lines(capsys)
    assert code == 2
    assert len(lines) == 1
    assert "removed" in lines[0]


def test_a_cancelled_run_with_keep_says_what_it_created_was_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    def cancelled(*args: object) -> int:
        raise Cancelled()

    monkeypatch.setattr(subcommands, "validate", cancelled)

    code = cli.main(["validate", "m", "--keep"], env={}, cwd=tmp_path)

    lines = stderr_lines(capsys)
    assert code == 2
    assert len(lines) == 1
    assert "kept" in lines[0]
    assert "removed" not in lines[0]


def test_config_prints_every_setting_with_its_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = cli.main(
        ["config", "--index-url", "https://index.example/simple"],
        env={"MLFLOW_VALIDATOR_RTOL": "0.001"},
        cwd=tmp_path,
    )

    out = capsys.readouterr().out.splitlines()
    by_key = {line.split()[0]: line for line in out}
    assert code == 0
    assert "https://index.example/simple" in by_key["build.index_url"]
    assert by_key["build.index_url"].endswith("(flag --index-url)")
    assert "0.001" in by_key["tolerance.rtol"]
    assert by_key["tolerance.rtol"].endswith("(environment MLFLOW_VALIDATOR_RTOL)")
    assert by_key["tolerance.atol"].endswith("(default)")
    assert {"timeouts.predict", "budgets.max_changed_fraction", "env.set", "keep"} <= set(by_key)


def test_config_redacts_every_extra_index_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    extra = f"https://a:{PASSWORD}@one/simple https://b:{PASSWORD}@two/simple"
    code = cli.main(["config"], env={"PIP_EXTRA_INDEX_URL": extra}, cwd=tmp_path)

    out = capsys.readouterr().out
    assert code == 0
    assert PASSWORD not in out
    assert "https://a:***@one/simple,https://b:***@two/simple" in out


def test_config_redacts_a_proxy_password_from_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = cli.main(["config"], env={"HTTPS_PROXY": f"http://user:{PASSWORD}@proxy:3128"}, cwd=tmp_path)

    out = capsys.readouterr().out
    proxy = next(line for line in out.splitlines() if line.startswith("build.https_proxy"))
    assert code == 0
    assert PASSWORD not in out
    assert "http://user:***@proxy:3128" in proxy
    assert proxy.endswith("(environment HTTPS_PROXY)")


def test_config_redacts_env_set_values_from_the_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "mlflow-validator.yaml").write_text(f"env: {{set: {{TOKEN: {PASSWORD}}}}}\n")

    code = cli.main(["config"], env={}, cwd=tmp_path)

    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("env.set"))
    assert code == 0
    assert PASSWORD not in out
    assert "TOKEN" in line
    assert "***" in line
    assert "config file" in line


def test_an_unwritable_report_path_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    constructed: list[object] = []

    def no_engine(env: object) -> str:
        raise AssertionError("the engine was probed before the report path was checked")

    def pipeline(*args: object, **kwargs: object) -> None:
        constructed.append(args)
        raise AssertionError("a pipeline was built")

    monkeypatch.setattr(subcommands, "engine_problem", no_engine)
    monkeypatch.setattr(subcommands, "Pipeline", pipeline)

    code = cli.main(["validate", "m", "--junit-xml", "/proc/no/such/r.xml"], env={}, cwd=tmp_path)

    lines = stderr_lines(capsys)
    assert code == 2
    assert len(lines) == 1
    assert "cannot write the report" in lines[0]
    assert constructed == []
    assert not (tmp_path / "mlflow-validator-report").exists()


def test_validate_passes_the_resolved_options_and_returns_their_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    seen: list[Options] = []

    def fake_validate(options: Options, env: object, run_log: object) -> int:
        seen.append(options)
        return 1

    monkeypatch.setattr(subcommands, "validate", fake_validate)

    code = cli.main(["validate", "models:/m/1", "--rtol", "0.5"], env={}, cwd=tmp_path)

    assert code == 1
    assert seen[0].model_uri == "models:/m/1"
    assert seen[0].tolerance.rtol == 0.5
    assert seen[0].sources["tolerance.rtol"] == "flag --rtol"


def test_the_usage_hint_names_the_program_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["--no-such-flag"], env={}, cwd=tmp_path) == 2
    assert "see `mlflow-validator --help`" in capsys.readouterr().err


def test_an_output_directory_that_is_a_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "afile").write_text("")
    monkeypatch.setattr(subcommands, "engine_problem", lambda env, cli: "no engine in unit tests")

    code = cli.main(["validate", "m", "--output-dir", "afile", "--stages", "static"], env={}, cwd=tmp_path)

    lines = stderr_lines(capsys)
    assert code == 2
    assert len(lines) == 1
    assert "is a file" in lines[0]


@pytest.mark.parametrize("command", [["plan", "--manifest", "m.yaml"], ["init-checks", "checks", "m"]])
def test_a_helper_command_takes_only_its_own_flags(command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture):
    code = cli.main([*command, "--image-tag", "team/model:1"], env={}, cwd=tmp_path)
    assert code == 2
    assert "unrecognized arguments: --image-tag" in capsys.readouterr().err


def test_the_flags_metavars_say_what_they_take(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        cli.main(["validate", "--help"], env={})
    helped = capsys.readouterr().out
    assert "--memory SIZE" in helped and "(512m, 2g)" in helped
    assert "--sandbox-backend {auto,bubblewrap,container}" in helped
    assert "--stages STAGE[,STAGE...]" in helped


def test_completion_scripts_come_from_the_parser(capsys: pytest.CaptureFixture[str]):
    assert cli.main(["completion", "bash"], env={}) == 0
    script = capsys.readouterr().out
    assert "--sandbox-backend" in script and "init-checks" in script
    assert cli.main(["completion", "cmd.exe"], env={}) == 2  # a shell shtab does not write for: one usage line
