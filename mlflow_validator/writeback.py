"""The verdict goes back to the registry when asked (`--write-back`, `--on-pass-set-alias`): tags on the validated
model version, and an alias when every stage ran and passed, so that the registry, not only a CI log, says what was
validated, by which stages, and how it went."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version

from mlflow_validator.errors import EXIT_PASSED, RegistryRefusedError
from mlflow_validator.model.fetch import parse_model_uri
from mlflow_validator.model.registry import Registry
from mlflow_validator.results import ModelIdentity, Status, ValidationReport
from mlflow_validator.settings import Options

TAG_PREFIX = "mlflow_validator."
MAX_TAG_VALUE = 500  # the failed checks' names, cut here: the report has the rest


@dataclass(frozen=True)
class RegistryWrite:
    name: str
    version: str
    tags: dict[str, str]
    alias: str = ""  # set on the version when it passed

    def describe(self) -> str:
        tags = ", ".join(f"{key}={value}" for key, value in self.tags.items())
        alias = f"; alias {self.alias} -> version {self.version}" if self.alias else ""
        return f"{self.name} version {self.version}: {tags}{alias}"


def ci_job_url(env: Mapping[str, str]) -> str:
    """The job's page, when the CI says where it is (GitHub Actions, GitLab CI)."""
    if all(env.get(name) for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")):
        return f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return env.get("CI_JOB_URL", "")


def planned_write(report: ValidationReport, options: Options, env: Mapping[str, str]) -> RegistryWrite | None:
    """What this run writes; None when nobody asked, or the model is not a registered version (a run, a
    directory)."""
    asked = options.write_back
    if not (asked.enabled or asked.on_pass_set_alias or asked.dry_run):
        return None
    identity = report.identity
    if not has_version(identity, options):
        return None
    broken = [f"{c.stage.value}/{c.name}" for c in report.checks if c.status in (Status.FAILED, Status.ERROR)]
    tags = {
        "status": report.verdict_name,
        "validator_version": version("mlflow-validator"),
        "report": options.write_back.report_url or ci_job_url(env),
        "checks_failed": ",".join(broken)[:MAX_TAG_VALUE],
        "image_digest": report.properties.get("image.digest", ""),
        "stages": ",".join(stage.value for stage in report.stages_run),
        "stages_not_run": ",".join(stage.value for stage in report.stages_not_run),
    }
    promoted = report.exit_code == EXIT_PASSED and report.complete
    alias = options.write_back.on_pass_set_alias if promoted else None
    return RegistryWrite(
        identity.name,
        identity.version,
        {TAG_PREFIX + key: value for key, value in tags.items() if value},
        alias or "",
    )


def has_version(identity: ModelIdentity, options: Options) -> bool:
    """A registered version, which has tags to write: not a run, not a directory."""
    return bool(identity.name and identity.version) and parse_model_uri(options.model_uri).local_path is None


def write(planned: RegistryWrite, options: Options) -> None:
    """Tags, then the alias; bounded retries while the server does not answer, none when it refuses."""
    from mlflow.exceptions import MlflowException

    registry = Registry.for_options(options)
    client, uri = registry.client, options.model_uri
    try:
        existing = registry.call(partial(client.get_model_version, planned.name, planned.version), uri).tags
        # A tag an earlier run set and this one does not (checks_failed after a pass) would tell a stale story.
        stale = [key for key in existing if key.startswith(TAG_PREFIX) and key not in planned.tags]
        calls: list[Callable[[], object]] = [
            *(partial(client.delete_model_version_tag, planned.name, planned.version, key) for key in stale),
            *(
                partial(client.set_model_version_tag, planned.name, planned.version, key, value)
                for key, value in planned.tags.items()
            ),
        ]
        if planned.alias:
            calls.append(partial(client.set_registered_model_alias, planned.name, planned.alias, planned.version))
        for call in calls:
            registry.call(call, uri)
    except MlflowException as exc:
        raise RegistryRefusedError(
            f"the registry at {registry.tracking_uri} refused the verdict for {planned.name} version "
            f"{planned.version}: {exc.error_code} {' '.join(str(exc.message).split())[:200]}",
            "give the token permission to edit this model (MLflow's EDIT), or pass --dry-run",
        ) from None
