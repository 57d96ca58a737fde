"""The checks over a stage's answers, on hand-made answers: no processes."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from mlflow_validator.expectations.answers import (
    NO_ANSWER,
    Answer,
    StageAnswers,
    check_answers,
    check_deterministic,
    check_expected_responses,
    check_rejections,
    check_same_answers,
    check_timing,
    undeclared_variable,
)
from mlflow_validator.expectations.contract import output_problems
from mlflow_validator.expectations.requests import Expect, SampleRequest
from mlflow_validator.results import Status
from mlflow_validator.settings import Budgets, Tolerance

EXAMPLE = SampleRequest("input-example", "{}", "application/json", "the logged input example")
RECORDS = SampleRequest("derived-records", "{}", "application/json", "the example as records", Expect.FORMAT)
MISSING = SampleRequest("contract-missing-column", "{}", "application/json", "without 'x'", Expect.REJECTION)
REJECTED = json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": "Model is missing inputs ['x']"})


def ok(predictions: object, seconds: float = 0.01) -> Answer:
    return Answer(200, json.dumps({"predictions": predictions}), seconds)


def stage(answers: dict[str, Answer], repeats: dict[str, Answer] | None = None) -> StageAnswers:
    return StageAnswers("venv", answers, repeats or {}, load_seconds=2.0, latency_seconds=[0.01] * 18 + [0.5] * 2)


def test_a_refused_derived_format_is_a_warning_and_a_refused_example_a_failure():
    refused = Answer(400, REJECTED, 0.01)
    assert check_answers([EXAMPLE, RECORDS], stage({"input-example": ok([1]), "derived-records": refused})).status is (
        Status.WARNED
    )
    outcome = check_answers([EXAMPLE], stage({"input-example": refused}))
    assert outcome.status is Status.FAILED
    assert "Model is missing inputs ['x']" in outcome.message


def test_an_unserializable_answer_names_the_type():
    body = json.dumps(
        {"error_code": "INTERNAL_ERROR", "message": "TypeError: Object of type Decimal is not JSON serializable"}
    )
    outcome = check_answers([EXAMPLE], stage({"input-example": Answer(500, body, 0.01)}))
    assert "a value of type Decimal" in outcome.message


def test_a_missing_variable_is_told_apart_from_other_key_errors():
    trace = "File \"<frozen os>\", line 679, in __getitem__\nKeyError: 'MODEL_MODE'"
    assert undeclared_variable(trace) == "MODEL_MODE"
    assert undeclared_variable("File \"model.py\", line 3, in predict\nKeyError: 'label'") is None


def test_contract_requests_need_a_4xx_with_mlflows_error_json():
    assert check_rejections([MISSING], stage({MISSING.name: Answer(400, REJECTED, 0.01)})).status is Status.PASSED
    for answer in (Answer(500, "Internal Server Error", 0.01), ok([1]), Answer(NO_ANSWER, "ReadTimeout", 60.0)):
        assert check_rejections([MISSING], stage({MISSING.name: answer})).status is Status.FAILED


def test_two_different_answers_are_non_deterministic():
    outcome = check_deterministic([EXAMPLE], stage({EXAMPLE.name: ok([0.1])}, {EXAMPLE.name: ok([0.7])}), Tolerance())
    assert outcome.message.startswith("non-deterministic output: input-example")
    assert check_deterministic(
        [EXAMPLE], stage({EXAMPLE.name: ok([1])}, {EXAMPLE.name: ok([1])}), Tolerance()
    ).status is (Status.PASSED)


def test_the_container_must_answer_with_the_same_status_and_values():
    venv = stage({EXAMPLE.name: ok([{"score": 0.5}]), MISSING.name: Answer(400, REJECTED, 0.01)})
    same = StageAnswers("container", {EXAMPLE.name: ok([{"score": 0.5}]), MISSING.name: Answer(400, REJECTED, 0.1)})
    assert check_same_answers([EXAMPLE, MISSING], venv, same, Tolerance()).status is Status.PASSED
    crashed = StageAnswers("container", {EXAMPLE.name: ok([{"score": 0.5}]), MISSING.name: Answer(500, "boom", 0.1)})
    assert (
        "answered 400 by the venv but 500 by the container"
        in check_same_answers([EXAMPLE, MISSING], venv, crashed, Tolerance()).message
    )
    drifted = StageAnswers("container", {EXAMPLE.name: ok([{"score": 0.6}]), MISSING.name: Answer(400, REJECTED, 0.1)})
    message = check_same_answers([EXAMPLE, MISSING], venv, drifted, Tolerance()).message
    assert "first at row 0, column score ($.predictions[0].score): venv 0.5 vs container 0.6" in message
    loose = Tolerance(columns={"score": {"rtol": 0.5}})
    assert check_same_answers([EXAMPLE, MISSING], venv, drifted, loose).status is Status.PASSED


def test_expected_responses_may_hold_the_whole_answer_or_the_predictions(tmp_path: Path):
    (tmp_path / "a.expected.json").write_text('[{"score": 0.5}]')
    (tmp_path / "b.expected.json").write_text('{"predictions": [{"score": 0.9}]}')
    requests = [
        SampleRequest(
            "user-a", "{}", "application/json", "request file a.json", expected_response=tmp_path / "a.expected.json"
        ),
        SampleRequest(
            "user-b", "{}", "application/json", "request file b.json", expected_response=tmp_path / "b.expected.json"
        ),
    ]
    outcome = check_expected_responses(
        requests, stage({"user-a": ok([{"score": 0.5}]), "user-b": ok([{"score": 0.5}])}), Tolerance()
    )
    assert outcome.status is Status.FAILED
    assert "b.expected.json: 1 value(s) differ; first at row 0, column score" in outcome.message


def test_timing_reports_figures_and_fails_only_over_a_budget():
    answers = stage({EXAMPLE.name: ok([1], seconds=0.2)})
    assert check_timing([EXAMPLE], answers, Budgets()).status is Status.PASSED
    assert "first answer 200 ms" in check_timing([EXAMPLE], answers, Budgets()).message
    outcome = check_timing([EXAMPLE], answers, Budgets(max_load_seconds=1, max_latency_ms=100))
    assert "load time 2.0 s exceeds max_load_seconds 1" in outcome.message
    assert "p95 latency" in outcome.message and "exceeds max_latency_ms 100" in outcome.message


def test_output_contract_checks_types_columns_and_shape():
    long_column = [{"type": "long", "required": True}]
    assert output_problems({"predictions": [0, 1]}, long_column) == []
    assert output_problems({"predictions": [0.5]}, long_column) == ["row 0 is float 0.5, the signature says long"]
    columns = [{"type": "double", "name": "score"}, {"type": "string", "name": "label"}]
    assert output_problems({"predictions": [{"score": 1.0, "label": "a"}]}, columns) == []
    assert "has columns ['score']" in output_problems({"predictions": [{"score": 1.0}]}, columns)[0]
    tensor = [{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]
    assert output_problems({"predictions": [1, 2]}, tensor) == []
    assert output_problems({"predictions": [[1, 2]]}, tensor) == [
        "the answer has shape [1, 2], the signature says [-1]"
    ]
    assert output_problems({"predictions": [0.5]}, tensor) == ["value 0 is float 0.5, the signature says int64"]


def test_parity_lets_a_serving_target_add_and_change_what_it_needs_but_not_what_the_model_requires():
    from mlflow_validator.expectations.packages import check_parity

    venv = {"mlflow": "3.17.2", "protobuf": "7.36.2", "numpy": "2.4.6"}
    image = {"mlflow": "3.17.2", "protobuf": "6.33.6", "numpy": "2.4.6", "mlserver": "1.7.1"}
    served = check_parity(venv, image, "MLServer", {"protobuf", "mlserver"}, {"mlflow", "numpy"})
    assert served.status is Status.PASSED
    assert "except what MLServer changes: protobuf 7.36.2 -> 6.33.6; and 1 of MLServer's own" in served.message
    required = check_parity(venv, image, "MLServer", {"protobuf", "mlserver"}, {"protobuf"})
    assert required.status is Status.FAILED and "protobuf: venv 7.36.2, image 6.33.6" in required.message
    assert check_parity(venv, image).status is Status.FAILED  # no serving target's own: every difference counts


def test_an_answer_nested_past_what_the_checks_compare_is_not_json_and_breaks_no_check():
    deep = Answer(200, "[" * 100_000 + "]" * 100_000, 0.1)
    nested = Answer(200, json.dumps({"predictions": functools.reduce(lambda inner, _: [inner], range(80), 1)}), 0.1)
    assert deep.json() is None and nested.json() is None
    assert not deep.is_mlflow_rejection()
    assert Answer(200, '{"predictions": [[1, 2], [3]]}', 0.1).json() == {"predictions": [[1, 2], [3]]}
