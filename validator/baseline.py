"""`--baseline URI`: the same requests go through the baseline model in its own virtualenv, and the
report says how many answers changed and by how much (`budgets.max_changed_fraction` gates on it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from validator.answers import StageAnswers, answered_by_all
from validator.compare import Difference, compare, count_values
from validator.errors import ValidatorError
from validator.fetch import FetchedModel, fetch_model
from validator.options import Options
from validator.results import Outcome, Stage, Status, failed, passed
from validator.samples import SampleRequest
from validator.steps import run_steps
from validator.venv.stage import VenvPaths, VenvStage


class BaselineUnavailable(ValidatorError):
    """The baseline model could not answer, so there is nothing to compare with."""


def fetch_baseline(options: Options, workdir: Path) -> FetchedModel:
    """Resolve the baseline before any work, so a wrong URI is refused at once; its weights come later."""
    assert options.baseline_uri is not None
    return fetch_model(
        replace(options, model_uri=options.baseline_uri), workdir / "baseline-model", static_files_only=True
    )


def baseline_answers(
    model: FetchedModel,
    options: Options,
    env: Mapping[str, str],
    workdir: Path,
    answers_dir: Path,
    requests: list[SampleRequest],
) -> StageAnswers:
    """Rebuild the baseline's environment and answer the candidate's requests with it."""
    assert options.baseline_uri is not None
    baseline_options = replace(options, model_uri=options.baseline_uri)
    model.download_rest()
    paths = VenvPaths(workdir / "baseline-stage", answers_dir)
    stage = VenvStage(model.directory, baseline_options, paths, env, label="baseline", requests=requests)
    for result in run_steps(Stage.VENV, stage.setup_steps()):
        if result.status is not Status.PASSED:
            raise BaselineUnavailable(
                f"the baseline {options.baseline_uri} could not answer the requests ({result.name}: {result.message})",
                "point --baseline at a model that validates, or drop it",
            )
    return stage.answers


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
        shape_changed = any(d.path.endswith(("(length)", "(keys)")) for d in differences)
        changed += values if shape_changed else len(differences)
        for difference in differences:
            if difference.size is not None and (largest is None or difference.size > (largest[1].size or 0)):
                largest = (request.name, difference)
    return Changes(len(compared), changed_requests, changed, total, largest)


def check_changes(
    requests: list[SampleRequest], candidate: StageAnswers, baseline: StageAnswers, options: Options
) -> Outcome:
    changes = count_changes(requests, candidate, baseline, options)
    summary = (
        f"{len(changes.requests_changed)} of {changes.requests_compared} answers changed "
        f"from {options.baseline_uri}: {changes.values_changed} of {changes.values_total} values "
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
