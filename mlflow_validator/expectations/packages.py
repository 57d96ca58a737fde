"""package-parity: the venv and the image install the same lock, so they must hold the same distributions."""

from __future__ import annotations

from packaging.utils import canonicalize_name

from mlflow_validator.results import Outcome, failed, passed

SHOWN = 15


def canonical(distributions: dict[str, str]) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in distributions.items()}


def check_parity(venv: dict[str, str], image: dict[str, str]) -> Outcome:
    differences = [
        f"{name}: venv {venv.get(name, 'absent')}, image {image.get(name, 'absent')}"
        for name in sorted(venv.keys() | image.keys())
        if venv.get(name) != image.get(name)
    ]
    if not differences:
        return passed(f"the venv and the image hold the same {len(venv)} distributions, at the same versions")
    more = f"; and {len(differences) - SHOWN} more" if len(differences) > SHOWN else ""
    return failed(
        f"the image and the venv differ in {len(differences)} distribution(s): {'; '.join(differences[:SHOWN])}{more}. "
        "Both install the run's lock: a difference comes from the base image or from an install outside the lock",
        "\n".join(differences),
    )
