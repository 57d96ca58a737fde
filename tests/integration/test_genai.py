"""GenAI models, for real: a chat model (ChatModel on requests) and a tool-calling agent (ResponsesAgent on the
OpenAI SDK) of our own call an OpenAI-compatible stub on a test host in a network namespace (not loopback, so
the cage's refusal of everything else is real), with a key only they are given. They pass caged in both stages
through declared egress; a second host nobody declared fails by name and is never reached; an LLM loop fails
the call budget; the key is in no output. (The proxy itself: test_egress_proxy.py.)"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from tests.integration.conftest import MODELS_DIR, CliResult, pins
from tests.integration.reports import read_report
from tests.integration.services import NetnsHost, netns_host

pytestmark = pytest.mark.integration
KEY = f"sk-test-{secrets.token_hex(16)}"  # what the stub accepts: the models' key, and a canary
STUB = Path(__file__).with_name("llm_stub.py")
CONFIG = """
sandbox:
  egress: ["${LLM_ENDPOINT}"]
env:
  pass: [LLM_ENDPOINT, OPENAI_API_KEY]
budgets:
  max_upstream_calls: 3
generated:
  examples: 5
requests:
  latency_samples: 3
"""


@dataclass(frozen=True)
class Hosts:
    llm: NetnsHost
    second: NetnsHost  # nobody declares it

    @property
    def env(self) -> dict[str, str]:
        return {"LLM_ENDPOINT": f"{self.llm.url}/v1", "OPENAI_API_KEY": KEY}

    def calls(self) -> list[str]:
        return self.llm.lines()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    workdir = tmp_path_factory.mktemp("llm-hosts")
    with netns_host(workdir) as second:
        stub_env = {"STUB_KEY": KEY, "REDIRECT_TO": second.url}
        with netns_host(workdir, service=[str(STUB)], env=stub_env) as llm:
            yield Hosts(llm, second)


@pytest.fixture(scope="module")
def genai_uri(registered, hosts: Hosts) -> str:
    """Logged as a notebook logs them: MLflow runs each on its default example, so the stub is asked then."""
    import mlflow

    mlflow.set_tracking_uri(registered.tracking_uri)
    chat = pins("mlflow", "requests")
    models = {
        "genai-chat": ("chat_model.py", chat, None),
        "genai-agent": ("tool_agent.py", pins("mlflow", "openai"), None),
        "genai-chat-second-host": ("chat_model.py", chat, {"also": hosts.second.url}),
        "genai-chat-loop": ("chat_model.py", chat, {"calls": 5}),
    }
    with mock.patch.dict(os.environ, hosts.env):
        for name, (code, requirements, config) in models.items():
            with mlflow.start_run():
                mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(MODELS_DIR / code),
                    pip_requirements=requirements,
                    model_config=config,
                    registered_model_name=name,
                )
    return registered.tracking_uri


def validate(run_cli, tmp_path: Path, hosts: Hosts, uri: str, name: str, stages: str) -> CliResult:
    (tmp_path / "mlflow-validator.yaml").write_text(CONFIG)
    return run_cli(
        "validate", f"models:/{name}/1", "--tracking-uri", uri, "--stages", stages, env={**hosts.env, "CI": "true"}
    )


def assert_key_nowhere(result: CliResult, output_dir: Path) -> None:
    assert KEY not in result.stdout + result.stderr
    for path in output_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the key is in {path}"


@pytest.mark.docker
@pytest.mark.parametrize("name", ["genai-chat", "genai-agent"])
def test_a_chat_model_and_a_tool_calling_agent_pass_caged_in_both_stages(
    genai_uri, hosts, run_cli, tmp_path, docker_engine, name
):
    before, second = len(hosts.calls()), hosts.second.connections
    result = validate(run_cli, tmp_path, hosts, genai_uri, name, "static,venv,docker")
    assert result.returncode == 0, result.stdout + result.stderr
    report = read_report(tmp_path / "mlflow-validator-report" / "junit.xml")
    for stage in ("venv", "docker"):
        assert report[stage]["egress"] == "passed"
        assert report[stage]["output-contract"] == "passed"
    assert "bubblewrap:" in result.stdout and "its only way out is the validator's proxy" in result.stdout
    asked = hosts.calls()[before:]
    assert asked and all('"key_ok": true' in line for line in asked)  # the key reached the LLM, from both stages
    assert hosts.second.connections == second
    if name == "genai-agent":
        assert "predict_stream, asked input-example, sent" in result.stdout
    else:  # it printed its key: the model's output is in the report, the key hidden
        report_text = (tmp_path / "mlflow-validator-report" / "report.json").read_text()
        assert "with the key [hidden: a value of env.pass or env.set]" in report_text
    assert_key_nowhere(result, tmp_path / "mlflow-validator-report")


@pytest.mark.docker
@pytest.mark.parametrize("stages", ["venv", "docker"])
def test_a_model_that_also_calls_a_host_nobody_declared_fails_naming_it_and_reaches_nothing(
    genai_uri, hosts, run_cli, tmp_path, docker_engine, stages
):
    before = hosts.second.connections  # logging the model ran it, unguarded
    result = validate(run_cli, tmp_path, hosts, genai_uri, "genai-chat-second-host", stages)
    assert result.returncode == 1, result.stdout + result.stderr
    second = f"{hosts.second.address}:{hosts.second.port}"
    assert f"the model reached for {second}, which sandbox.egress does not allow" in result.stdout
    assert f"add `- {second}` under `sandbox: {{egress: [...]}}`" in result.stdout
    assert read_report(tmp_path / "mlflow-validator-report" / "junit.xml")[stages]["egress"] == "failure"
    assert hosts.second.connections == before
    assert_key_nowhere(result, tmp_path / "mlflow-validator-report")


def test_a_model_that_calls_its_llm_in_a_loop_fails_the_call_budget(genai_uri, hosts, run_cli, tmp_path):
    result = validate(run_cli, tmp_path, hosts, genai_uri, "genai-chat-loop", "venv")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "upstream call(s) for" in result.stdout
    assert "more than budgets.max_upstream_calls (3) each: does the model call its LLM in a loop?" in result.stdout
    assert_key_nowhere(result, tmp_path / "mlflow-validator-report")
