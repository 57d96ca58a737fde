"""Inputs generated from the signature: valid by construction, judged by what came back, and the
smallest failing one kept."""

import json

import pytest
from hypothesis import given, settings

from mlflow_validator.expectations.answers import NO_ANSWER, Answer
from mlflow_validator.expectations.contract import output_problems
from mlflow_validator.expectations.generated import MODEL_RAISED, CannotGenerate, explore, extremes, judge, payloads
from mlflow_validator.model.mlmodel import Signature

COLUMNS = Signature(
    inputs=(
        {"type": "string", "name": "color", "required": True},
        {"type": "double", "name": "size", "required": False},
    ),
    outputs=({"type": "long", "required": True},),
    params=({"type": "double", "name": "temperature", "default": 0.5, "shape": None},),
)
TENSOR = Signature(inputs=({"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}},))


def ok(body: str) -> Answer:
    rows = json.loads(body)["dataframe_split"]["data"]
    return Answer(200, json.dumps({"predictions": [0] * len(rows)}), 0.0)


def raised(exception: str) -> Answer:
    error = {"error_code": "BAD_REQUEST", "message": f"Encountered an {MODEL_RAISED}.", "stack_trace": exception}
    return Answer(400, json.dumps(error), 0.0)


@settings(max_examples=30, deadline=None)
@given(payloads(COLUMNS))
def test_column_payloads_fit_the_signature(payload):
    split = payload["dataframe_split"]
    assert split["columns"] == ["color", "size"]
    assert 1 <= len(split["data"]) <= 3
    for color, size in split["data"]:
        assert isinstance(color, str)
        assert size is None or isinstance(size, float)
    assert set(payload.get("params", {})) <= {"temperature"}


@settings(max_examples=30, deadline=None)
@given(payloads(TENSOR))
def test_tensor_payloads_have_the_shape_of_the_spec(payload):
    assert all(len(row) == 3 for row in payload["inputs"])


def test_extremes_give_nan_and_null_only_to_columns_that_may_miss_values():
    rows = [payload["dataframe_split"]["data"][0] for payload in extremes(COLUMNS)]
    assert ["", 0.0] in rows
    assert any(size is None for _, size in rows)
    assert all(color is not None for color, _ in rows)


def test_a_model_that_raises_on_some_valid_input_is_caught_with_the_smallest_such_input(tmp_path):
    def ask(body: str) -> Answer:
        rows = json.loads(body)["dataframe_split"]["data"]
        if any(size is not None and size > 100 for _, size in rows):
            return raised("Traceback ...\nValueError: size out of range")
        return ok(body)

    found = explore(ask, COLUMNS, examples=200, seed=3, storage=tmp_path)
    assert "the model raised ValueError: size out of range" in found.why
    (row,) = json.loads(found.failing)["dataframe_split"]["data"]
    assert row[1] > 100
    assert found.passed, "the inputs answered 200 are kept for the docker stage"


def test_a_model_that_answers_everything_passes_and_the_same_seed_asks_the_same_inputs(tmp_path):
    first = explore(ok, COLUMNS, examples=20, seed=7, storage=tmp_path)
    second = explore(ok, COLUMNS, examples=20, seed=7, storage=tmp_path)
    assert not first.failing
    assert [body for body, _ in first.passed] == [body for body, _ in second.passed]


def test_no_answer_stops_the_search_at_once(tmp_path):
    asked = []

    def ask(body: str) -> Answer:
        asked.append(body)
        return Answer(NO_ANSWER, "ReadTimeout within 60 s", 60.0)

    found = explore(ask, COLUMNS, examples=50, seed=1, storage=tmp_path)
    assert len(asked) == 1
    assert found.why == "no answer: ReadTimeout within 60 s"


@pytest.mark.parametrize(
    ("answer", "acceptable"),
    [
        (Answer(400, json.dumps({"error_code": "BAD_REQUEST", "message": "Failed to enforce schema"}), 0), True),
        (Answer(400, json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": "no negatives"}), 0), True),
        (raised("KeyError: 'x'"), False),
        (Answer(500, "boom", 0), False),
        (Answer(422, "not json", 0), False),
        (Answer(200, json.dumps({"predictions": ["a"]}), 0), False),  # the output signature says long
    ],
)
def test_what_counts_as_a_legitimate_answer(answer, acceptable):
    assert judge(answer, lambda parsed: output_problems(parsed, COLUMNS.outputs)).ok is acceptable


def test_a_type_nothing_can_be_generated_for_is_said():
    with pytest.raises(CannotGenerate, match="type 'decimal'"):
        payloads(Signature(inputs=({"type": "decimal", "name": "x"},)))
