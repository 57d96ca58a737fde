"""Several models in one run (several URIs, or a manifest's entries).

Each model is validated by its own `mlflow-validator validate` process, in its own output directory,
at most `jobs` at a time: a process per model keeps every run's cleanup, signals and timeouts exactly
those of a single validation. Then one JUnit file with a testsuite per model, `results.json` (what CI
outputs are made of), and on GitHub one step summary and one annotation budget for all of them.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mlflow_validator import commands
from mlflow_validator.batch.manifest import Manifest, ResolvedChange
from mlflow_validator.errors import EXIT_CANNOT_VALIDATE, EXIT_PASSED, Cancelled
from mlflow_validator.outputs import IMAGE_RECORD, JUNIT_FILE, REPORT_FILE, RESULTS_FILE, SUMMARY_FILE, VERDICT_FILE
from mlflow_validator.reporters.github import Blame, append_summary, check_annotations, within_budget
from mlflow_validator.reporters.junit import render_models
from mlflow_validator.reporters.markdown import models_summary
from mlflow_validator.reporters.record import dotenv, from_json
from mlflow_validator.results import (
    VERDICTS,
    CheckResult,
    ModelIdentity,
    Stage,
    Status,
    ValidationReport,
    verdict_word,
)

MODEL_TIMEOUT_S = 3 * 3600  # every stage is bounded by its own timeouts; this bounds their sum
CLEANUP_GRACE_S = 60  # a cancelled validation removes its containers and images in this time
# The parent reports to GitHub for every model at once; a child's own summary and annotations would
# spend the step's budget model by model.
PARENT_ONLY_VARIABLES = ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY")


@dataclass(frozen=True)
class Target:
    label: str  # how reports name the model: a manifest entry's ENVIRONMENT/MODEL, else its URI
    model_uri: str
    flags: tuple[str, ...] = ()  # the model's own settings (a manifest entry's)
    blame: Blame | None = None  # the manifest line annotations point at

    @property
    def directory_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.label).strip("-")


@dataclass(frozen=True)
class TargetResult:
    target: Target
    exit_code: int
    report: ValidationReport
    output_dir: Path

    @property
    def _reported(self) -> bool:
        """The report tells the verdict: a child stopped from outside has only its exit code."""
        return self.report.exit_code == self.exit_code

    @property
    def verdict(self) -> str:
        """The console's verdict line: the report's names what did not run."""
        if self._reported:
            return self.report.verdict
        return VERDICTS.get(self.exit_code, VERDICTS[EXIT_CANNOT_VALIDATE])

    def record(self) -> dict[str, str | int]:
        image = self.output_dir / IMAGE_RECORD
        return {
            "id": self.target.label,
            "model-uri": self.target.model_uri,
            "verdict": self.report.verdict_name
            if self.report.exit_code == self.exit_code
            else verdict_word(self.exit_code),
            "exit-code": self.exit_code,
            "junit-xml": str(self.output_dir / JUNIT_FILE),
            "report-dir": str(self.output_dir),
            "image-digest": json.loads(image.read_text()).get("digest", "") if image.is_file() else "",
        }


def overall_verdict(records: list[dict[str, str | int]], exit_code: int) -> str:
    """The worst over the models: partial when every model passed but one of them not by every stage."""
    if exit_code == EXIT_PASSED and any(record["verdict"] == "partial" for record in records):
        return "partial"
    return verdict_word(exit_code)


def manifest_target(manifest: Manifest, change: ResolvedChange) -> Target:
    entry = change.entry
    return Target(entry.id, change.resolved.model_uri, tuple(manifest.flags(entry)), Blame(manifest.path, entry.line))


class Batch:
    def __init__(
        self,
        targets: list[Target],
        common_flags: list[str],
        output_dir: Path,
        junit_path: Path,
        env: Mapping[str, str],
        jobs: int,
        tracking_uri: str,
    ) -> None:
        self.targets = targets
        self.common_flags = common_flags
        self.output_dir = output_dir
        self.junit_path = junit_path
        self.env = env
        self.jobs = max(1, min(jobs, len(targets)))
        self.tracking_uri = tracking_uri
        self.abort = threading.Event()
        self.print_lock = threading.Lock()

    def run(self) -> int:
        print(f"Validating {len(self.targets)} model(s), {self.jobs} at a time", flush=True)
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = [pool.submit(self._validate, target) for target in self.targets]
            try:
                results = [future.result() for future in futures]
            except BaseException:  # SIGTERM or Ctrl-C on this thread: the children get SIGTERM and clean up
                self.abort.set()
                pool.shutdown(wait=True, cancel_futures=True)
                # The models that were reached are in the report, the cancelled ones with their interruption.
                reached = [f.result() for f in futures if f.done() and not f.cancelled() and not f.exception()]
                self._report(reached, cancelled=True)
                raise
        self._report(results)
        return max((result.exit_code for result in results), default=0)

    def _child_env(self) -> dict[str, str]:
        env = {name: value for name, value in self.env.items() if name not in PARENT_ONLY_VARIABLES}
        if self.jobs > 1:
            env.pop("GITLAB_CI", None)  # its collapsible sections would be cut by the interleaved, prefixed lines
        return env

    def _validate(self, target: Target) -> TargetResult:
        output_dir = self.output_dir / target.directory_name
        argv = [sys.executable, "-m", "mlflow_validator", "validate", target.model_uri, "--output-dir", str(output_dir)]
        argv += ["--junit-xml", str(output_dir / JUNIT_FILE), *self.common_flags, *target.flags]
        self._print(f"[{target.label}] validating {target.model_uri}")
        for stale in (REPORT_FILE, IMAGE_RECORD):  # an earlier run's, in a reused output directory
            (output_dir / stale).unlink(missing_ok=True)
        try:
            with commands.abortable(self.abort):
                done = commands.run(
                    argv,
                    env=self._child_env(),
                    timeout_s=MODEL_TIMEOUT_S,
                    check=False,
                    on_line=lambda line: self._print(line if self.jobs == 1 else f"[{target.label}] {line}"),
                    grace_s=CLEANUP_GRACE_S,
                )
            exit_code, last_line = done.returncode, commands.last_line(done.output)
        except Cancelled:  # the child got SIGTERM and had its grace to clean up and write its report
            exit_code, last_line = EXIT_CANNOT_VALIDATE, "cancelled before the model was reached"
        report_file = output_dir / REPORT_FILE
        if report_file.is_file():
            report = from_json(report_file.read_text())
        else:  # stopped before reaching the model (not found, a bad setting): its error is the whole report
            problem = last_line.removeprefix("mlflow-validator: error: ")
            report = ValidationReport(
                ModelIdentity(target.model_uri, target.label),
                [CheckResult(Stage.STATIC, "model", Status.ERROR, 0.0, problem)],
            )
        result = TargetResult(target, exit_code, report, output_dir)
        self._print(f"[{target.label}] {result.verdict}")
        return result

    def _print(self, line: str) -> None:
        with self.print_lock:
            print(line, flush=True)

    def _report(self, results: list[TargetResult], cancelled: bool = False) -> None:
        reports = {result.target.label: result.report for result in results}
        self.junit_path.parent.mkdir(parents=True, exist_ok=True)
        self.junit_path.write_text(render_models(reports), encoding="utf-8")
        results_file = self.output_dir / RESULTS_FILE
        results_file.write_text(json.dumps([result.record() for result in results], indent=2), encoding="utf-8")
        print("")
        for result in results:
            print(f"{result.verdict:<36} {result.target.label}")
        print(f"JUnit report: {self.junit_path}\nResults: {results_file}", flush=True)
        summary = models_summary(reports, self.tracking_uri)
        (self.output_dir / SUMMARY_FILE).write_text(summary, encoding="utf-8")
        # A cancelled run could not validate every model, whatever those it reached said.
        exit_code = EXIT_CANNOT_VALIDATE if cancelled else max((result.exit_code for result in results), default=0)
        verdict = overall_verdict([result.record() for result in results], exit_code)
        (self.output_dir / VERDICT_FILE).write_text(dotenv(verdict, exit_code, ""), encoding="utf-8")
        if self.env.get("GITHUB_ACTIONS") == "true":
            workspace = Path(self.env.get("GITHUB_WORKSPACE", "."))
            found = [c for r in results for c in check_annotations(r.report, workspace, r.target.label, r.target.blame)]
            for command in within_budget(found):
                print(command, flush=True)
            append_summary(self.env, summary)
