"""What a stage's answers to the sample requests mean: the checks the venv and docker stages share.

Each check reads the plan and the answers and returns an Outcome; none of them runs anything.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlflow_validator.expectations.chat import ChatContract, chat_contract
from mlflow_validator.expectations.compare import compare, describe
from mlflow_validator.expectations.contract import output_problems
from mlflow_validator.expectations.requests import Expect, SampleRequest
from mlflow_validator.isolation import Secret, hide_secrets
from mlflow_validator.model.mlmodel import MLmodel
from mlflow_validator.results import Outcome, Status, failed, passed, skipped
from mlflow_validator.settings import Budgets, Options, Tolerance

MAX_BODY = 300
MLSERVER_REFUSAL = "mlflow.exceptions.MlflowException:"
MAX_DEPTH = 64  # of an answer's nesting: the comparisons recurse, and a model may send 100,000 brackets
NO_ANSWER = 0  # the status of a request the server never answered; the body says why
_NOT_SERIALIZABLE = re.compile(r"Object of type (\S+) is not JSON serializable")
_MISSING_ENV = re.compile(r"KeyError: '([A-Za-z_][A-Za-z0-9_]*)'")
MODEL_DIRECTORIES = ("/opt/ml/",)  # where the serving image keeps the model; the venv's is a work directory
_MISSING_PATH = re.compile(r"(?:No such file or directory|Permission denied|Read-only file system): '(/[^']+)'")
_NO_NETWORK = re.compile(
    r"(Network is unreachable|Connection refused|Temporary failure in name resolution|Name or service not known)"
)
_ADDRESS = re.compile(r"host='[^']+', port=\d+|https?://[^\s'\"]+")


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    seconds: float

    def json(self) -> Any:
        """The body parsed; None when it is not JSON, or nests deeper than any answer the checks compare."""
        try:
            parsed = json.loads(self.body)
        except (ValueError, RecursionError):
            return None
        return parsed if _depth(parsed) <= MAX_DEPTH else None

    def is_mlflow_rejection(self) -> bool:
        """A 4xx carrying MLflow's error JSON ({"error_code": …, "message": …}), or MLflow's refusal as MLServer
        sends it: a 500 of its own around the exception ({"error": "mlflow.exceptions.MlflowException: …"})."""
        parsed = self.json()
        if not isinstance(parsed, dict):
            return False
        if 400 <= self.status < 500:
            return "error_code" in parsed
        return self.status == 500 and str(parsed.get("error", "")).startswith(MLSERVER_REFUSAL)


def _depth(value: Any) -> int:
    """How deep `value` nests, counted without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        pending.extend((child, depth + 1) for child in children)
    return deepest


@dataclass(frozen=True)
class Stream:
    """What predict_stream sent for one request: its chunks (parsed JSON), or why it stopped."""

    request: str
    chunks: list[Any]
    error: str = ""


@dataclass
class StageAnswers:
    """One stage's answers to the plan, in plan order, with its timings."""

    stage: str  # "venv", "container" or "baseline": how messages name it
    answers: dict[str, Answer] = field(default_factory=dict)
    repeats: dict[str, Answer] = field(default_factory=dict)  # the venv answers each request twice
    load_seconds: float = 0.0
    latency_seconds: list[float] = field(default_factory=list)
    installed: dict[str, str] = field(default_factory=dict)  # canonical distribution name -> version
    generated: list[SampleRequest] = field(default_factory=list)  # generated inputs answered 200: asked again later
    stream: Stream | None = None  # the one streamed answer, where the model streams (the venv only)

    def save(self, directory: Path, secrets: Sequence[Secret] = ()) -> None:
        """Each answer's body as <name>.json, and index.json with statuses and timings, next to the report; the
        `secrets` the model was given hidden, should it answer with one."""
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, answer in self.answers.items():
            (directory / f"{name}.json").write_text(hide_secrets(answer.body, secrets))
        index = {name: {"status": a.status, "seconds": round(a.seconds, 6)} for name, a in self.answers.items()}
        (directory / "index.json").write_text(json.dumps({"load_seconds": self.load_seconds, "answers": index}))


AnswerCheck = Callable[[list[SampleRequest], StageAnswers], Outcome]


class Answering(Protocol):
    """A stage that has answered its sample requests (the venv or the docker stage)."""

    requests: list[SampleRequest]
    answers: StageAnswers


def over_answers(stage: Answering, checks: Mapping[str, AnswerCheck]) -> dict[str, Callable[[], Outcome]]:
    """Each check bound to the stage's requests and to the answers it will have when the check runs."""

    def bind(check: AnswerCheck) -> Callable[[], Outcome]:
        return lambda: check(stage.requests, stage.answers)

    return {name: bind(check) for name, check in checks.items()}


def undeclared_variable(text: str) -> str | None:
    """The environment variable a model failed to read (`os.environ[NAME]` raising KeyError), if any."""
    match = _MISSING_ENV.search(text)
    if match and ("<frozen os>" in text or "/os.py" in text):
        return match.group(1)
    return None


def reach_hint(text: str) -> str | None:
    """What to say when the model reached for a host path or the network that the cage hides, if it did."""
    match = _MISSING_PATH.search(text)
    if match and not match.group(1).startswith(MODEL_DIRECTORIES) and "/mlflow-validator-" not in match.group(1):
        return (
            f"the model reads {match.group(1)}, a path outside its own directory that the validator's cage hides "
            "(and a serving image will not have): log the file with the model as an artifact "
            "(artifacts={...} or code_paths) and read it from the model's directory"
        )
    if match := _NO_NETWORK.search(text):
        where = _ADDRESS.search(text)
        return (
            f"the model reaches for the network ({where.group(0) if where else 'an address its error does not name'}: "
            f"{match.group(1)}), which the validator's cage does not give it: log what it fetches with the model as "
            "an artifact, so that it answers without the network"
        )
    return None


def declare_hint(name: str) -> str:
    return (
        f"the model reads the environment variable {name}, which nobody declared: model processes see only PATH, "
        f"locale and a temporary HOME. Declare it in mlflow-validator.yaml with `env: {{pass: [{name}]}}` "
        f"(the CI's value) or `env: {{set: {{{name}: <value>}}}}`"
    )


def _error_text(answer: Answer) -> str:
    """MLflow's error message and the last line of its stack trace, or the start of the body."""
    parsed = answer.json()
    if isinstance(parsed, dict) and "message" in parsed:
        trace = str(parsed.get("stack_trace") or "").strip().splitlines()
        return str(parsed["message"])[:MAX_BODY] + (f" ({trace[-1]})" if trace else "")
    return answer.body[:MAX_BODY]


def answer_problem(request: SampleRequest, answer: Answer) -> str:
    """Why an answer is not a 200 the user can act on; empty when it is."""
    if answer.status == 200:
        return ""
    if answer.status == NO_ANSWER:
        return f"{request.name} ({request.origin}) got no answer: {answer.body}"
    if name := undeclared_variable(answer.body):
        return f"{request.name}: {declare_hint(name)}"
    if reach := reach_hint(answer.body):
        return f"{request.name}: {reach}"
    if match := _NOT_SERIALIZABLE.search(answer.body):
        return (
            f"{request.name}: the scoring server cannot turn the model's answer into JSON: a value of type "
            f"{match.group(1)} (return numbers, strings, lists, dicts, numpy arrays or pandas objects)"
        )
    return f"{request.name} ({request.origin}) was answered {answer.status}: {_error_text(answer)}"


def check_answers(requests: list[SampleRequest], answers: StageAnswers) -> Outcome:
    """Every request that calls for an answer got a 200. MLflow refusing another payload format is a warning."""
    problems, refused, blamed = [], [], []
    expecting = [r for r in requests if r.expect is not Expect.REJECTION]
    for request in expecting:
        answer = answers.answers[request.name]
        if request.expect is Expect.FORMAT and answer.is_mlflow_rejection():
            refused.append(f"{request.origin}: {_error_text(answer)}")
        elif problem := answer_problem(request, answer):
            problems.append(problem)
            blamed.append(request.path)
    if problems:
        message = f"{len(problems)} of {len(expecting)} request(s) failed; {problems[0]}"
        return failed(message, "\n".join(problems), source=blamed[0])
    if refused:
        return Outcome(
            Status.WARNED,
            f"MLflow refuses {len(refused)} payload format(s) for this model; clients must not send them: {refused[0]}",
            "\n".join(refused),
        )
    return passed(f"{len(expecting)} request(s) answered 200 by the {answers.stage}")


def check_rejections(requests: list[SampleRequest], answers: StageAnswers) -> Outcome:
    """Requests the signature forbids get a 4xx with MLflow's error JSON, not a 5xx or a crash."""
    invalid = [r for r in requests if r.expect is Expect.REJECTION]
    if not invalid:
        return skipped("the signature declares no column or type a request could violate")
    problems = [
        f"{r.origin} must be rejected with a 4xx and MLflow's error JSON, but the {answers.stage} answered "
        f"{answers.answers[r.name].status}: {answers.answers[r.name].body[:MAX_BODY]}"
        for r in invalid
        if not answers.answers[r.name].is_mlflow_rejection()
    ]
    if problems:
        return failed(
            f"{problems[0]}. The scoring server enforces the input signature only when one is logged "
            "and the model does not catch its errors",
            "\n".join(problems),
        )
    how = "with 4xx" if all(answers.answers[r.name].status < 500 for r in invalid) else "with MLflow's refusal"
    return passed(f"{len(invalid)} invalid request(s) rejected {how}: {', '.join(r.name for r in invalid)}")


def answered_by_all(requests: list[SampleRequest], *stages: StageAnswers) -> list[SampleRequest]:
    """The requests that call for an answer and that every given stage answered with a 200."""
    return [
        r for r in requests if r.expect is not Expect.REJECTION and all(s.answers[r.name].status == 200 for s in stages)
    ]


def check_deterministic(requests: list[SampleRequest], answers: StageAnswers, tolerance: Tolerance) -> Outcome:
    answered = answered_by_all(requests, answers)
    for request in answered:
        first, second = answers.answers[request.name].json(), answers.repeats[request.name].json()
        if differences := compare(first, second, tolerance):
            summary, listing = describe(differences, "first", "second")
            return failed(
                f"non-deterministic output: {request.name} ({request.origin}) was answered differently twice: "
                f"{summary}. Seed the model's randomness (e.g. numpy.random.default_rng(seed)) or set "
                "`checks: {deterministic: warn}`",
                listing,
            )
    return passed(f"{len(answered)} request(s) answered identically twice")


def check_output_contract(requests: list[SampleRequest], answers: StageAnswers, mlmodel: MLmodel) -> Outcome:
    if contract := chat_contract(mlmodel):
        return check_chat_contract(requests, answers, contract)
    outputs = mlmodel.signature.outputs
    if not outputs:
        return skipped("no output signature is logged; log one with signature=infer_signature(X, model.predict(X))")
    for request in answered_by_all(requests, answers):
        if problems := output_problems(answers.answers[request.name].json(), outputs):
            return failed(
                f"the {answers.stage}'s answer to {request.name} ({request.origin}) breaks the output signature: "
                f"{problems[0]}. MLflow does not check outputs; clients that trust the signature will break",
                "\n".join(problems),
            )
    declared = ", ".join(str(spec.get("name") or spec.get("type")) for spec in outputs)
    return passed(f"every answer conforms to the output signature ({declared})")


def check_chat_contract(requests: list[SampleRequest], answers: StageAnswers, contract: ChatContract) -> Outcome:
    """Each answer, and each chunk of the one streamed answer, is what MLflow's type for the model's API takes."""
    for request in answered_by_all(requests, answers):
        if problems := contract.answer_problems(answers.answers[request.name].json()):
            return failed(
                f"the {answers.stage}'s answer to {request.name} ({request.origin}) breaks the {contract.api} "
                f"contract ({contract.task}): {problems[0]}. Clients of that API will break",
                "\n".join(problems),
            )
    stream = answers.stream
    if stream is None:
        streamed = ""
    elif stream.error:
        return failed(f"predict_stream failed on {stream.request}: {stream.error}", stream.error)
    elif problems := contract.chunk_problems(stream.chunks):
        return failed(
            f"the {answers.stage}'s stream for {stream.request} breaks the {contract.api} contract: {problems[0]}",
            "\n".join(problems),
        )
    else:
        streamed = f"; predict_stream, asked {stream.request}, sent {len(stream.chunks)} valid chunk(s)"
    return passed(f"every answer is a valid {contract.response_name} ({contract.task}){streamed}")


def _expected_body(path: Path) -> Any:
    """An expected-response file holds the whole answer ({"predictions": …}) or just the predictions."""
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path.name} is not valid JSON ({exc})") from None


def check_expected_responses(requests: list[SampleRequest], answers: StageAnswers, tolerance: Tolerance) -> Outcome:
    with_expected = [r for r in answered_by_all(requests, answers) if r.expected_response is not None]
    if not with_expected:
        return skipped("no request file has a NAME.expected.json next to it")
    for request in with_expected:
        assert request.expected_response is not None
        try:
            expected = _expected_body(request.expected_response)
        except ValueError as exc:
            return failed(f"{exc}: fix the expected response", source=request.expected_response)
        actual = answers.answers[request.name].json()
        if not (isinstance(expected, dict) and "predictions" in expected) and isinstance(actual, dict):
            actual = actual.get("predictions")
        if differences := compare(expected, actual, tolerance):
            summary, listing = describe(differences, "expected", answers.stage)
            return failed(
                f"the {answers.stage}'s answer to {request.origin} is not the expected response "
                f"{request.expected_response.name}: {summary}",
                listing,
                source=request.path,
            )
    return passed(f"{len(with_expected)} answer(s) match their expected responses")


def check_same_answers(
    requests: list[SampleRequest],
    expected: StageAnswers,
    actual: StageAnswers,
    tolerance: Tolerance,
    words_vary: bool = False,
) -> Outcome:
    """`actual` answers every request as `expected` did: the same status, and for a 200 the same values. MLflow's
    refusal is the same answer whichever server sends it (MLServer wraps it in a 500). When `words_vary` (a chat
    model: an LLM's words differ between calls) the statuses alone are compared; output-contract judges the rest."""
    for request in requests:
        want, got = expected.answers[request.name], actual.answers[request.name]
        if want.is_mlflow_rejection() and got.is_mlflow_rejection():
            continue
        if (want.status == 200) != (got.status == 200) or (want.status >= 500) != (got.status >= 500):
            return failed(
                f"{request.name} ({request.origin}) was answered {want.status} by the {expected.stage} but "
                f"{got.status} by the {actual.stage}: {_error_text(got if got.status != 200 else want)}"
            )
    if words_vary:
        return passed(
            f"{len(requests)} request(s) answered with the same status as in the {expected.stage}; a chat model's "
            "words are not compared"
        )
    for request in answered_by_all(requests, expected, actual):
        differences = compare(expected.answers[request.name].json(), actual.answers[request.name].json(), tolerance)
        if differences:
            summary, listing = describe(differences, expected.stage, actual.stage)
            return failed(
                f"the {actual.stage} answers {request.name} ({request.origin}) differently from the "
                f"{expected.stage}: {summary}. Both answers are in the report's answers/ directory",
                f"request: {request.body[:MAX_BODY]}\n{listing}",
            )
    return passed(f"{len(requests)} answer(s) identical within rtol={tolerance.rtol:g}, atol={tolerance.atol:g}")


def percentile_ms(seconds: list[float], percentile: int) -> float:
    if len(seconds) == 1:
        return seconds[0] * 1000
    return statistics.quantiles([s * 1000 for s in seconds], n=100, method="inclusive")[percentile - 1]


def check_timing(requests: list[SampleRequest], answers: StageAnswers, budgets: Budgets) -> Outcome:
    """Load time, time to first answer, latency percentiles; fails only when a budget is set and exceeded."""
    first = answers.answers[requests[0].name].seconds * 1000
    p50, p95 = percentile_ms(answers.latency_seconds, 50), percentile_ms(answers.latency_seconds, 95)
    figures = (
        f"load {answers.load_seconds:.1f} s, first answer {first:.0f} ms, "
        f"{requests[0].name} p50 {p50:.1f} ms / p95 {p95:.1f} ms over {len(answers.latency_seconds)} requests"
    )
    over = []
    if budgets.max_load_seconds is not None and answers.load_seconds > budgets.max_load_seconds:
        over.append(f"load time {answers.load_seconds:.1f} s exceeds max_load_seconds {budgets.max_load_seconds:g}")
    if budgets.max_latency_ms is not None and p95 > budgets.max_latency_ms:
        over.append(f"p95 latency {p95:.1f} ms exceeds max_latency_ms {budgets.max_latency_ms:g}")
    if over:
        return failed(f"{'; '.join(over)} in the {answers.stage} ({figures})")
    return passed(figures)


def shared_checks(mlmodel: Callable[[], MLmodel], options: Options) -> dict[str, AnswerCheck]:
    """The checks every answering stage runs over its own answers, whatever serves the model. MLmodel is read
    when the output contract's check runs: a damaged MLmodel then fails that check, as the model's fault."""
    tolerance = options.tolerance
    return {
        "rejects-invalid-input": check_rejections,
        "output-contract": lambda requests, answers: check_output_contract(requests, answers, mlmodel()),
        "expected-responses": lambda requests, answers: check_expected_responses(requests, answers, tolerance),
        "timing": lambda requests, answers: check_timing(requests, answers, options.budgets),
    }
