"""`--baseline URI`: how many of the baseline's answers the candidate changes, and by how much
(`budgets.max_changed_fraction` gates on it). Pure: the baseline's answers come from the venv stage."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow_validator.expectations.answers import StageAnswers, answered_by_all
from mlflow_validator.expectations.compare import Difference, compare, count_values
from mlflow_validator.expectations.requests import SampleRequest
from mlflow_validator.results import Outcome, failed, passed
from mlflow_validator.settings import Options

SHAPE_MARKS = ("(length)", "(keys)")  # how compare() marks a difference in shape rather than value


@dataclass(frozen=True)
class Changes:
    requests_compared: int
    requests_changed: list[str]
    values_changed: int
    values_total: int
    largest: tuple[str, Difference] | None  # the request and the biggest numeric change

    @property
    def fraction(self) -> float:
        return self.values_changed / self.values_total if self.values_total else 0.0


def count_changes(
    requests: list[SampleRequest], candidate: StageAnswers, baseline: StageAnswers, options: Options
) -> Changes:
    changed_requests, changed, total = [], 0, 0
    largest: tuple[str, Difference] | None = None
    compared = answered_by_all(requests, candidate, baseline)
    for request in compared:
        before, after = baseline.answers[request.name].json(), candidate.answers[request.name].json()
        values = count_values(before)
        differences = compare(before, after, options.tolerance)
        total += values
        if not differences:
            continue
        changed_requests.append(request.name)
        shape_changes = [d for d in differences if d.path.endswith(SHAPE_MARKS)]
        changed += values if shape_changes else len(differences)
        for difference in differences:
            if difference in shape_changes or difference.size is None:
                continue  # a length is not a value: only value changes compete for the largest
            if largest is None or difference.size > (largest[1].size or 0):
                largest = (request.name, difference)
    return Changes(len(compared), changed_requests, changed, total, largest)


def check_changes(
    requests: list[SampleRequest], candidate: StageAnswers, baseline: StageAnswers, options: Options
) -> Outcome:
    changes = count_changes(requests, candidate, baseline, options)
    summary = (
        f"{len(changes.requests_changed)} of {changes.requests_compared} answers changed "
        f"from {options.baseline}: {changes.values_changed} of {changes.values_total} values "
        f"({changes.fraction:.1%})"
    )
    if changes.largest is not None:
        name, difference = changes.largest
        summary += (
            f"; the largest change is {difference.size:.6g} ({difference.expected} -> {difference.actual}) "
            f"at {difference.where} of {name}"
        )
    details = "changed: " + ", ".join(changes.requests_changed) if changes.requests_changed else ""
    limit = options.budgets.max_changed_fraction
    if limit is not None and changes.fraction > limit:
        return failed(f"{summary}, more than max_changed_fraction {limit:g}", details)
    return passed(summary, details)
