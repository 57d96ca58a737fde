"""Stage 1: check the model's files in seconds, before anything is installed.

Each check has a policy from the config file (`checks: {name: error|warn|off}`); error is the default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from validator.isolation import install_tool_env
from validator.model_files import ModelFileError, pyfunc_conf, read_mlmodel
from validator.options import Options
from validator.results import Outcome, failed, passed
from validator.static.code_imports import check_code_imports
from validator.static.context import StaticContext
from validator.static.environment import check_agreement, check_environment_files, check_pinned
from validator.static.integrity import check_integrity
from validator.static.resolution import Resolver
from validator.static.secrets import check_secrets
from validator.static.signature import check_example_matches_signature, check_input_example, check_signature
from validator.steps import Step, with_policy

LOCK_FILE_NAME = "requirements.lock.txt"


class StaticChecks:
    def __init__(self, model_dir: Path, listing: dict[str, int | None], options: Options, env: Mapping[str, str]):
        self.ctx = StaticContext(model_dir, listing, options.model_uri)
        self.options = options
        self.resolver = Resolver(
            lock_file=options.output_dir.absolute() / LOCK_FILE_NAME,
            constraints=options.constraints,
            tool_env=install_tool_env(env, options.network),
            timeout_s=options.timeouts.install,
        )

    def steps(self) -> list[Step]:
        ctx = self.ctx

        def bind(check: Callable[[StaticContext], Outcome]) -> Callable[[], Outcome]:
            return lambda: check(ctx)

        checks = [
            Step("pyfunc-flavor", self.has_pyfunc_flavor, requires=("mlmodel",)),
            Step("integrity", bind(check_integrity), requires=("mlmodel",)),
            Step("environment-files", bind(check_environment_files), requires=("pyfunc-flavor",)),
            Step("environment-agreement", bind(check_agreement), requires=("environment-files",)),
            Step("resolvable", bind(self.resolver.check_resolvable), requires=("environment-files",)),
            Step("runtime-constraints", bind(self.resolver.check_runtime_constraints), requires=("resolvable",)),
            Step("pinned", bind(check_pinned), requires=("environment-files",)),
            Step("uv-lock", bind(self.resolver.check_uv_lock), requires=("environment-files",)),
            Step("code-imports", bind(check_code_imports), requires=("resolvable",)),
            Step("secrets", bind(check_secrets), requires=()),
            Step("signature", bind(check_signature), requires=("mlmodel",)),
            Step("input-example", bind(check_input_example), requires=("mlmodel",)),
            Step(
                "example-matches-signature",
                bind(check_example_matches_signature),
                requires=("signature", "input-example"),
            ),
        ]
        return [Step("mlmodel", self.mlmodel_parses), *(with_policy(s, self.options.policy(s.name)) for s in checks)]

    def mlmodel_parses(self) -> Outcome:
        try:
            self.ctx.meta = read_mlmodel(self.ctx.model_dir)
        except ModelFileError as exc:
            return failed(f"{exc}; the model directory is damaged: log the model again")
        return passed(f"flavors: {', '.join(self.ctx.meta['flavors'])}")

    def has_pyfunc_flavor(self) -> Outcome:
        try:
            pyfunc_conf(self.ctx.meta)
        except ModelFileError as exc:
            return failed(f"{exc}; log it with an MLflow flavor or mlflow.pyfunc.log_model")
        return passed()
