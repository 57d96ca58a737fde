"""No credentials in logged code or text artifacts. Reports file, line and kind, never the secret."""

from __future__ import annotations

from pathlib import Path

from mlflow_validator.results import Outcome, failed, passed
from mlflow_validator.stages.static.context import StaticContext

TEXT_SUFFIXES = (".py", ".txt", ".yaml", ".yml", ".json", ".cfg", ".ini", ".toml", ".env", ".md", ".sh", ".ipynb")


def _plugins() -> list[dict[str, str]]:
    """detect-secrets' detectors, less the entropy ones: logged examples and MLmodel's ids are high-entropy."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    classes: list[type] = list(get_mapping_from_secret_type_to_class().values())
    return [{"name": cls.__name__} for cls in classes if "HighEntropy" not in cls.__name__]


def find_secrets(files: list[Path], root: Path) -> list[str]:
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings, transient_settings

    collection = SecretsCollection(root=str(root))
    with default_settings(), transient_settings({"plugins_used": _plugins()}):
        for path in files:
            collection.scan_file(str(path.relative_to(root)))
    return sorted(f"{filename}:{secret.line_number} ({secret.type})" for filename, secret in collection)


def check_secrets(ctx: StaticContext) -> Outcome:
    model_dir = ctx.files.directory
    files = [p for p in model_dir.rglob("*") if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name == "MLmodel")]
    found = find_secrets(sorted(files), model_dir)
    if found:
        return failed(
            f"credentials in the model's files: {', '.join(found)}. Anyone who can read the registry can read them: "
            "remove them from the code, read them from an environment variable at serving time, log the model "
            "again, and rotate the credentials"
        )
    return passed(f"{len(files)} text files scanned")
