"""fetch → static → venv → docker, feeding every result to the reporters as it finishes.

Once the model is fetched, the report is written on every path: pass, fail, an error the validator
cannot get past, a cancellation (SIGTERM, Ctrl-C) or a crash. Whatever stopped the run is recorded
as a result of the stage it stopped, and re-raised for the CLI to turn into an exit code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from mlflow_validator.errors import Cancelled, ValidatorError
from mlflow_validator.expectations.answers import StageAnswers
from mlflow_validator.expectations.requests import SampleRequest, plan_requests
from mlflow_validator.isolation import hide_secrets, install_network, install_tool_env, secrets_of
from mlflow_validator.model.fetch import FetchedModel, fetch_model
from mlflow_validator.model.lock import Resolver
from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.plan import PlannedStage
from mlflow_validator.reporters import Reporter
from mlflow_validator.results import SERVING_STAGES, CheckResult, Stage, Status, ValidationReport
from mlflow_validator.settings import BuildNetwork, Options
from mlflow_validator.settings.options import EARLY_BUILD_CORES
from mlflow_validator.stages.context import RunContext
from mlflow_validator.stages.docker.stage import DockerStage
from mlflow_validator.stages.registry import STAGES, StageRunner
from mlflow_validator.steps import run_steps

REMOVAL_TIMEOUT_S = 15


def _open_up(function: Callable[..., object], path: str, _: object) -> None:
    """A model that runs as the validator's own user may have closed its directories to their owner:
    open them again (never through a link), so that the next attempt removes them."""
    for directory in (os.path.dirname(path), path):
        with suppress(OSError):
            descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.fchmod(descriptor, 0o700)
            finally:
                os.close(descriptor)
    function(path)


def remove_work_directory(workdir: Path) -> None:
    """Remove the run's work directory. After a cancellation, a killed process (uv, the caged model)
    may still write into it for a moment, so a partial removal is retried, bounded."""

    def remove() -> None:
        if workdir.exists():
            shutil.rmtree(workdir, onerror=_open_up)

    Retrying(
        retry=retry_if_exception_type(OSError),
        stop=stop_after_delay(REMOVAL_TIMEOUT_S),
        wait=wait_fixed(0.2),
        retry_error_callback=lambda state: None,  # past the bound, give up quietly: the verdict stands
    )(remove)


def _planned_requests(model: FetchedModel, options: Options) -> list[SampleRequest] | ModelFileError:
    try:
        return plan_requests(model.files, options.requests)
    except ModelFileError as exc:
        return exc  # the stages that answer requests fail with it; the static stage reports the cause


def _stop_reason(exc: BaseException) -> str:
    if isinstance(exc, Cancelled):
        return "cancelled by SIGTERM"
    if isinstance(exc, KeyboardInterrupt):
        return "cancelled by Ctrl-C"
    if isinstance(exc, ValidatorError):
        return str(exc)
    return f"internal error in mlflow-validator: {type(exc).__name__}: {exc}; see mlflow-validator.log"


class Pipeline:
    def __init__(
        self,
        options: Options,
        plan: list[PlannedStage],
        env: Mapping[str, str],
        reporters: Iterable[Reporter],
        on_report: Callable[[], object] = lambda: None,  # called once the report is written
    ):
        self.options = options
        self.plan = plan
        self.env = env
        self.reporters = list(reporters)
        self.on_report = on_report
        self.run_id = uuid.uuid4().hex[:12]
        self.secrets = secrets_of(options.model_env)  # hidden in every result

    def run(self) -> ValidationReport:
        workdir = Path(tempfile.mkdtemp(prefix=f"mlflow-validator-{self.run_id}-"))
        try:
            static_only = not any(p.run for p in self.plan if p.stage is not Stage.STATIC)
            model = fetch_model(self.options, workdir / "model", static_files_only=static_only)
            report = ValidationReport(model.identity)
            try:
                for reporter in self.reporters:
                    reporter.model_fetched(model.identity)
                baseline = self._fetch_baseline(workdir, report)
                network = self._network(model)
                run = RunContext(
                    self.options,
                    self.env,
                    model,
                    _planned_requests(model, self.options),
                    workdir,
                    self.run_id,
                    answers={},
                    resolver=self._resolver(model, workdir, network),
                    network=network,
                    baseline=baseline,
                )
                self._run_stages(run, report)
            finally:
                self._finish(report)
        finally:
            if not self.options.keep:
                remove_work_directory(workdir)
        return report

    def _network(self, model: FetchedModel) -> BuildNetwork:
        try:
            requirements = model.files.requirements
        except ModelFileError:  # the model's checks say so; installs then reach the settings' indexes only
            requirements = []
        return install_network(self.options.build, requirements)

    def _resolver(self, model: FetchedModel, workdir: Path, network: BuildNetwork) -> Resolver:
        return Resolver(
            files=model.files,
            workdir=workdir / "lock",
            output_dir=self.options.output_dir.absolute(),
            constraints=self.options.constraints,
            tool_env=install_tool_env(self.env, network),
            timeout_s=self.options.timeouts.install,
        )

    def _fetch_baseline(self, workdir: Path, report: ValidationReport) -> FetchedModel | None:
        """Resolved before any work, so a wrong URI is refused at once; its weights come later."""
        if not self.options.baseline:
            return None
        options = replace(self.options, model_uri=self.options.baseline)
        try:
            return fetch_model(options, workdir / "baseline-model", static_files_only=True)
        except ValidatorError as exc:
            self._record(report, CheckResult(Stage.VENV, "changed-vs-baseline", Status.ERROR, 0.0, str(exc)))
            raise

    def _run_stages(self, run: RunContext, report: ValidationReport) -> None:
        answers: dict[Stage, StageAnswers] = {}
        early: DockerStage | None = None
        try:
            for index, planned in enumerate(self.plan):
                stage = planned.stage
                reason = planned.skip_reason or self._earlier_failure(report, stage)
                if reason:
                    self._record(report, CheckResult(stage, stage.value, Status.SKIPPED, 0.0, reason))
                    continue
                if stage is Stage.VENV and self._builds_during_venv():
                    early = self._docker_early(run)
                failed = tuple(s for s in Stage if report.stage_failed(s))
                stage_run = replace(run, answers=dict(answers), failed_stages=failed)
                started = early.resume(stage_run) if stage is Stage.DOCKER and early else None
                try:
                    self._run_stage(stage_run, stage, report, answers, started)
                except BaseException as exc:
                    self._record_interruption(report, index, exc)
                    raise
        finally:
            if early is not None:
                early.close()  # stops its build when the docker stage never ran; a no-op after it did

    def _record_interruption(self, report: ValidationReport, index: int, exc: BaseException) -> None:
        """The stage at `index` stopped: an error for it, and the later stages skipped."""
        stage = self.plan[index].stage
        message = f"{_stop_reason(exc)} while this stage ran"
        self._record(report, CheckResult(stage, "interrupted", Status.ERROR, 0.0, message))
        for later in self.plan[index + 1 :]:
            reason = f"not run: the run stopped in the {stage.value} stage"
            self._record(report, CheckResult(later.stage, later.stage.value, Status.SKIPPED, 0.0, reason))

    def _builds_during_venv(self) -> bool:
        docker_runs = any(p.stage is Stage.DOCKER and p.run and not p.skip_reason for p in self.plan)
        wanted = self.options.docker.build_during_venv
        return docker_runs and (wanted if wanted is not None else (os.cpu_count() or 1) >= EARLY_BUILD_CORES)

    @staticmethod
    def _docker_early(run: RunContext) -> DockerStage | None:
        """The docker stage, already building, when the lock exists (else the venv stage fails first)."""
        try:
            run.resolver.lock()  # resolved here, on this thread, before two threads ask for it
        except ModelFileError:
            return None
        run.model.download_rest()
        stage = DockerStage(run)
        stage.start_early()
        return stage

    def _run_stage(
        self,
        run: RunContext,
        stage: Stage,
        report: ValidationReport,
        answers: dict[Stage, StageAnswers],
        started: StageRunner | None = None,
    ) -> None:
        for reporter in self.reporters:
            reporter.stage_started(stage)
        if stage is not Stage.STATIC:
            run.model.download_rest()
        runner = started or STAGES[stage](run)
        try:
            for result in run_steps(stage, runner.steps(), on_start=self._started):
                self._record(report, result)
        finally:
            runner.close()
        if (answered := runner.answered()) is not None:
            answers[stage] = answered

    @staticmethod
    def _earlier_failure(report: ValidationReport, stage: Stage) -> str:
        earlier = [s for s in Stage if list(Stage).index(s) < list(Stage).index(stage)]
        if stage in SERVING_STAGES:  # side by side: one serving target's failure does not hide the other's
            earlier = [s for s in earlier if s not in SERVING_STAGES]
        failed = next((s for s in earlier if report.stage_failed(s)), None)
        return f"not run: the {failed.value} stage failed" if failed else ""

    def _started(self, stage: Stage, name: str) -> None:
        for reporter in self.reporters:
            reporter.check_started(stage, name)

    def _record(self, report: ValidationReport, result: CheckResult) -> None:
        """Every output is made from the results recorded here: the secrets the model was given are hidden once."""
        result = replace(
            result,
            message=hide_secrets(result.message, self.secrets),
            details=hide_secrets(result.details, self.secrets),
            properties={name: hide_secrets(value, self.secrets) for name, value in result.properties.items()},
        )
        report.checks.append(result)
        for reporter in self.reporters:
            reporter.check_finished(result)

    def _finish(self, report: ValidationReport) -> None:
        for reporter in self.reporters:
            reporter.report_finished(report)
        self.on_report()
