"""Inputs generated from the input signature with Hypothesis, asked of the model under test.

Valid inputs only: every column (or tensor) of its type, optional columns sometimes missing their
value, params within their types, a few rows at a time; plus the extremes of each type (empty and long
strings, the largest and smallest numbers, NaN where a value may be missing). Each answer must be a 200
that conforms to the output signature, or a 4xx with MLflow's error JSON raised before the model's code
ran (schema enforcement) or by the model on purpose (an MlflowException). An exception from the model's
own code (MLflow answers it 400, "unexpected error while evaluating the model"), a 5xx, no answer or a
dead process is a defect: Hypothesis shrinks the input to the smallest one that still fails, and it is
saved as a request file.
"""

from __future__ import annotations

import base64
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_validator.expectations.answers import NO_ANSWER, Answer
from mlflow_validator.expectations.chat import ChatContract
from mlflow_validator.expectations.contract import output_problems
from mlflow_validator.model.mlmodel import Signature, Spec

JSON = "application/json"
MAX_ROWS = 3
# How MLflow's scoring server says the model's own code raised (any exception but an MlflowException).
MODEL_RAISED = "unexpected error while evaluating the model"
INT32, INT64 = 2**31, 2**63
FLOAT32_MAX, FLOAT32_TINY = 3.4028234663852886e38, 1.401298464324817e-45


class CannotGenerate(Exception):
    """The signature holds a type no input can be generated for (the check is skipped, saying which)."""


def _scalar(kind: str) -> Any:
    from hypothesis import strategies as st

    strategies = {
        "boolean": st.booleans(),
        "integer": st.integers(-INT32, INT32 - 1),
        "long": st.integers(-INT64, INT64 - 1),
        "float": st.floats(width=32, allow_nan=False, allow_infinity=False),
        "double": st.floats(allow_nan=False, allow_infinity=False),
        "string": st.text(max_size=12),
        "binary": st.binary(max_size=12).map(lambda raw: base64.b64encode(raw).decode()),
        "datetime": st.datetimes().map(lambda moment: moment.isoformat()),
    }
    if kind not in strategies:
        raise CannotGenerate(f"type '{kind}'")
    return strategies[kind]


def _value(spec: Spec) -> Any:
    """A strategy for one value of a column spec, params spec, or array/object item."""
    from hypothesis import strategies as st

    kind = str(spec.get("type"))
    if kind == "array":
        return st.lists(_value(spec.get("items", {})), max_size=3)
    if kind == "object":
        properties = spec.get("properties", {})
        return st.fixed_dictionaries({name: _value(inner) for name, inner in properties.items()})
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), _value(spec.get("values", {})), max_size=3)
    return _scalar(kind)


def _maybe_missing(spec: Spec, strategy: Any) -> Any:
    from hypothesis import strategies as st

    return strategy if spec.get("required", True) else st.one_of(st.none(), strategy)


def _tensor(spec: Spec) -> Any:
    from hypothesis import strategies as st

    tensor = spec.get("tensor-spec", {})
    dtype = str(tensor.get("dtype", ""))
    kinds = {"float64": "double", "float32": "float", "int64": "long", "int32": "integer", "bool": "boolean"}
    kind = kinds.get(dtype, "string" if dtype in ("str", "object") else "")
    if not kind:
        raise CannotGenerate(f"tensor dtype '{dtype}'")
    strategy = _scalar(kind)
    for size in reversed(list(tensor.get("shape", [-1]))):
        fixed = size if size != -1 else None  # -1: any number of rows, a few at a time
        strategy = st.lists(strategy, min_size=fixed or 1, max_size=fixed or MAX_ROWS)
    return strategy


def _params(params: Sequence[Spec]) -> Any:
    from hypothesis import strategies as st

    values = {}
    for spec in params:
        value = _value(spec)
        values[str(spec["name"])] = st.lists(value, max_size=3) if spec.get("shape") else value
    return st.fixed_dictionaries({}, optional=values)


def payloads(signature: Signature) -> Any:
    """A strategy for whole request bodies (as dicts) the signature says are valid."""
    from hypothesis import strategies as st

    inputs = signature.inputs
    if not inputs:
        raise CannotGenerate("no input signature")
    if all(spec.get("type") == "tensor" for spec in inputs):
        if len(inputs) == 1 and not inputs[0].get("name"):
            body = st.fixed_dictionaries({"inputs": _tensor(inputs[0])})
        else:
            body = st.fixed_dictionaries({"inputs": st.fixed_dictionaries({s["name"]: _tensor(s) for s in inputs})})
    else:
        names = [str(spec.get("name", "")) for spec in inputs]
        row = st.tuples(*[_maybe_missing(spec, _value(spec)) for spec in inputs]).map(list)
        rows = st.lists(row, min_size=1, max_size=MAX_ROWS)
        body = rows.map(lambda data: {"dataframe_split": {"columns": names, "data": data}})
    if signature.params:
        return st.tuples(body, _params(signature.params)).map(
            lambda pair: pair[0] | ({"params": pair[1]} if pair[1] else {})
        )
    return body


EXTREMES: Mapping[str, list[Any]] = {
    "string": ["", "x" * 10_000, "ünïcödé ✓ 模型"],
    "double": [0.0, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324],
    "float": [0.0, FLOAT32_MAX, -FLOAT32_MAX, FLOAT32_TINY],
    "integer": [0, INT32 - 1, -INT32],
    "long": [0, INT64 - 1, -INT64],
    "boolean": [True, False],
}


def extremes(signature: Signature) -> list[dict[str, Any]]:
    """One row per extreme: each column takes its type's n-th extreme (NaN and null only where a column
    may miss its value). Column signatures only: a tensor's extremes are its dtype's, which the generator
    reaches on its own."""
    columns = [spec for spec in signature.inputs if spec.get("type") != "tensor"]
    if not columns or len(columns) < len(signature.inputs):
        return []
    values = []
    for spec in columns:
        choices = list(EXTREMES.get(str(spec.get("type")), []))
        if not spec.get("required", True):
            choices += [None] + ([math.nan] if spec.get("type") in ("double", "float") else [])
        values.append(choices)
    if not all(values):
        return []
    names = [str(spec.get("name", "")) for spec in columns]
    longest = max(len(choices) for choices in values)
    rows = [[choices[i % len(choices)] for choices in values] for i in range(longest)]
    return [{"dataframe_split": {"columns": names, "data": [row]}} for row in rows]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    why: str = ""


def judge(answer: Answer, problems_of: Callable[[Any], list[str]]) -> Verdict:
    """Whether an answer to a valid input is acceptable (see the module's docstring); `problems_of` says what
    breaks the output's contract in a 200's body."""
    if answer.status == NO_ANSWER:
        return Verdict(False, f"no answer: {answer.body}")
    if answer.status >= 500:
        return Verdict(False, f"answered {answer.status}: {answer.body[:300]}")
    parsed = answer.json()
    if answer.status == 200:
        problems = problems_of(parsed)
        return Verdict(not problems, f"the answer breaks the output contract: {problems[0]}" if problems else "")
    if not (isinstance(parsed, dict) and "error_code" in parsed):
        return Verdict(False, f"answered {answer.status} without MLflow's error JSON: {answer.body[:300]}")
    if MODEL_RAISED in str(parsed.get("message", "")):
        trace = str(parsed.get("stack_trace") or "").strip().splitlines()
        return Verdict(False, f"the model raised {trace[-1] if trace else 'an exception'} (answered {answer.status})")
    return Verdict(True)


@dataclass
class Exploration:
    seed: int
    tried: int = 0
    passed: list[tuple[str, Answer]] = field(default_factory=list)  # answered 200: replayed in the docker stage
    failing: str = ""  # the smallest failing body found
    why: str = ""


class _Unanswered(Exception):
    """No answer at all: shrinking would wait out the timeout again and again, so the search stops here."""

    def __init__(self, body: str, why: str) -> None:
        super().__init__(why)
        self.body = body
        self.why = why


def explore(
    ask: Callable[[str], Answer],
    signature: Signature,
    examples: int,
    seed: int,
    storage: Path,
    chat: ChatContract | None = None,
) -> Exploration:
    """The extremes, then `examples` generated inputs; on a failure, Hypothesis' smallest failing input.
    A model that speaks a `chat` API is asked conversations, and its answers judged by that API's type.
    Hypothesis keeps caches (its Unicode tables) in `storage`, not in the working directory."""
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.configuration import set_hypothesis_home_dir
    from hypothesis.errors import NoSuchExample

    set_hypothesis_home_dir(storage)
    found = Exploration(seed)
    contract = chat.answer_problems if chat else lambda parsed: output_problems(parsed, signature.outputs)

    def fails(payload: dict[str, Any]) -> bool:
        body = json.dumps(payload)
        answer = ask(body)
        found.tried += 1
        verdict = judge(answer, contract)
        if answer.status == NO_ANSWER:
            raise _Unanswered(body, verdict.why)
        if verdict.ok and answer.status == 200 and len(found.passed) < examples:
            found.passed.append((body, answer))
        if not verdict.ok:
            found.failing, found.why = body, verdict.why
        return not verdict.ok

    try:
        for payload in [] if chat else extremes(signature):
            if fails(payload):
                return found  # already small: one row of extremes
        budget = settings(
            max_examples=examples,
            database=None,
            deadline=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        find(chat.payloads() if chat else payloads(signature), fails, settings=budget, random=random.Random(seed))
    except NoSuchExample:
        pass
    except _Unanswered as stopped:
        found.failing, found.why = stopped.body, stopped.why
    return found
