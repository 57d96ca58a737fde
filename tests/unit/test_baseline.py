"""Counting what a candidate changes from its baseline's answers, on hand-made answers."""

from __future__ import annotations

import dataclasses
import json

from mlflow_validator.expectations.answers import Answer, StageAnswers
from mlflow_validator.expectations.baseline import check_changes, count_changes
from mlflow_validator.expectations.requests import Expect, SampleRequest
from mlflow_validator.results import Status
from mlflow_validator.settings import Budgets, Options

EXAMPLE = SampleRequest("input-example", "{}", "application/json", "the logged input example")
BATCH = SampleRequest("derived-batch", "{}", "application/json", "the example repeated")
INVALID = SampleRequest("contract-missing-column", "{}", "application/json", "without 'x'", Expect.REJECTION)
OPTIONS = dataclasses.replace(Options("models:/m/2"), baseline="models:/m@champion")


def ok(predictions: object) -> Answer:
    return Answer(200, json.dumps({"predictions": predictions}), 0.01)


def answers(stage: str, **by_name: Answer) -> StageAnswers:
    return StageAnswers(stage, {name.replace("_", "-"): answer for name, answer in by_name.items()})


def with_limit(fraction: float | None) -> Options:
    return dataclasses.replace(OPTIONS, budgets=Budgets(max_changed_fraction=fraction))


def test_unchanged_answers_count_no_changed_values():
    baseline = answers("baseline", input_example=ok([1.0, 2.0, 3.0, 4.0]))
    candidate = answers("venv", input_example=ok([1.0, 2.0, 3.0, 4.0]))

    changes = count_changes([EXAMPLE], candidate, baseline, OPTIONS)

    assert changes.requests_compared == 1
    assert changes.requests_changed == []
    assert (changes.values_changed, changes.values_total) == (0, 4)
    assert changes.fraction == 0.0
    assert changes.largest is None


def test_a_change_within_tolerance_is_not_counted():
    baseline = answers("baseline", input_example=ok([1.0]))
    candidate = answers("venv", input_example=ok([1.0 + 1e-12]))

    assert count_changes([EXAMPLE], candidate, baseline, OPTIONS).values_changed == 0


def test_one_changed_value_gives_its_fraction_and_is_the_largest_change():
    baseline = answers("baseline", input_example=ok([1.0, 2.0, 3.0, 4.0]), derived_batch=ok([1.0, 2.0, 3.0, 4.0]))
    candidate = answers("venv", input_example=ok([1.0, 2.0, 3.5, 4.0]), derived_batch=ok([1.0, 2.0, 3.0, 4.0]))

    changes = count_changes([EXAMPLE, BATCH], candidate, baseline, OPTIONS)

    assert changes.requests_changed == ["input-example"]
    assert (changes.values_changed, changes.values_total) == (1, 8)
    assert changes.fraction == 1 / 8
    assert changes.largest is not None
    name, difference = changes.largest
    assert name == "input-example"
    assert difference.path == "$.predictions[2]"
    assert difference.size == 0.5


def test_the_largest_change_is_found_across_requests():
    baseline = answers("baseline", input_example=ok([1.0, 2.0]), derived_batch=ok([1.0, 2.0]))
    candidate = answers("venv", input_example=ok([1.1, 2.0]), derived_batch=ok([1.0, 5.0]))

    changes = count_changes([EXAMPLE, BATCH], candidate, baseline, OPTIONS)

    assert changes.values_changed == 2
    assert changes.largest is not None
    assert changes.largest[0] == "derived-batch"
    assert changes.largest[1].size == 3.0


def test_a_changed_shape_counts_every_value_of_that_answer():
    baseline = answers("baseline", input_example=ok([1.0, 2.0, 3.0, 4.0]), derived_batch=ok([7.0, 8.0]))
    candidate = answers("venv", input_example=ok([1.0, 2.0, 3.0]), derived_batch=ok([7.0, 8.0]))

    changes = count_changes([EXAMPLE, BATCH], candidate, baseline, OPTIONS)

    assert (changes.values_changed, changes.values_total) == (4, 6)
    assert changes.requests_changed == ["input-example"]


def test_changed_keys_count_every_value_of_that_answer():
    baseline = answers("baseline", input_example=ok([{"a": 1, "b": 2}]))
    candidate = answers("venv", input_example=ok([{"a": 1, "c": 2}]))

    changes = count_changes([EXAMPLE], candidate, baseline, OPTIONS)

    assert (changes.values_changed, changes.values_total) == (2, 2)


def test_rejection_requests_are_left_out_of_the_count():
    refused = Answer(400, json.dumps({"error_code": "BAD_REQUEST", "message": "missing x"}), 0.01)
    baseline = answers("baseline", input_example=ok([1.0]), contract_missing_column=refused)
    candidate = answers("venv", input_example=ok([1.0]), contract_missing_column=Answer(400, '{"other": 1}', 0.01))

    changes = count_changes([EXAMPLE, INVALID], candidate, baseline, OPTIONS)

    assert changes.requests_compared == 1
    assert (changes.values_changed, changes.values_total) == (0, 1)


def test_answers_that_are_not_200_on_either_side_are_left_out_of_the_count():
    failure = Answer(500, '{"error_code": "INTERNAL_ERROR", "message": "boom"}', 0.01)
    baseline = answers("baseline", input_example=ok([1.0]), derived_batch=failure)
    candidate = answers("venv", input_example=failure, derived_batch=ok([1.0, 2.0]))

    changes = count_changes([EXAMPLE, BATCH], candidate, baseline, OPTIONS)

    assert changes.requests_compared == 0
    assert (changes.values_changed, changes.values_total) == (0, 0)
    assert changes.fraction == 0.0


def test_check_changes_fails_only_above_the_budget():
    baseline = answers("baseline", input_example=ok([1.0, 2.0, 3.0, 4.0]))
    candidate = answers("venv", input_example=ok([1.0, 2.0, 3.0, 9.0]))  # 1 of 4 values: 25%

    assert check_changes([EXAMPLE], candidate, baseline, with_limit(0.1)).status is Status.FAILED
    assert check_changes([EXAMPLE], candidate, baseline, with_limit(0.25)).status is Status.PASSED
    assert check_changes([EXAMPLE], candidate, baseline, with_limit(0.5)).status is Status.PASSED


def test_check_changes_without_a_budget_only_reports():
    baseline = answers("baseline", input_example=ok([1.0, 2.0]))
    candidate = answers("venv", input_example=ok([5.0, 6.0]))

    outcome = check_changes([EXAMPLE], candidate, baseline, with_limit(None))

    assert outcome.status is Status.PASSED
    assert "1 of 1 answers changed from models:/m@champion: 2 of 2 values (100.0%)" in outcome.message


def test_check_changes_names_the_budget_and_the_largest_change_when_it_fails():
    baseline = answers("baseline", input_example=ok([1.0, 2.0]))
    candidate = answers("venv", input_example=ok([1.0, 2.5]))

    outcome = check_changes([EXAMPLE], candidate, baseline, with_limit(0.1))

    assert outcome.status is Status.FAILED
    assert "more than max_changed_fraction 0.1" in outcome.message
    assert "the largest change is 0.5 (2.0 -> 2.5)" in outcome.message
    assert "at row 1 ($.predictions[1]) of input-example" in outcome.message
    assert outcome.details == "changed: input-example"


def test_a_changed_length_never_counts_as_the_largest_value_change():
    baseline = answers("baseline", input_example=ok([1.0] * 100), derived_batch=ok([2.0]))
    candidate = answers("venv", input_example=ok([1.0] * 3), derived_batch=ok([2.5]))

    changes = count_changes([EXAMPLE, BATCH], candidate, baseline, OPTIONS)

    assert changes.largest is not None
    assert changes.largest[0] == "derived-batch"
    assert changes.largest[1].size == 0.5
