"""package-parity: the venv and the image install the same lock, so they must hold the same distributions;
a serving target that installs packages of its own (MLServer) may add to them, and change what it must."""

from __future__ import annotations

from collections.abc import Collection

from packaging.utils import canonicalize_name

from mlflow_validator.results import Outcome, failed, passed

SHOWN = 15


def canonical(distributions: dict[str, str]) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in distributions.items()}


def check_parity(
    venv: dict[str, str],
    image: dict[str, str],
    server: str = "",
    installed_by_server: Collection[str] = (),
    required: Collection[str] = (),
) -> Outcome:
    """Every difference fails, but those of the distributions `server` installed: its additions pass, and so
    do the versions it changed, named, unless the model requires that distribution itself (`required`)."""
    differences = [
        f"{name}: venv {venv.get(name, 'absent')}, image {image.get(name, 'absent')}"
        for name in sorted(venv.keys() | image.keys())
        if venv.get(name) != image.get(name) and (name not in installed_by_server or name in required)
    ]
    if not differences:
        if not installed_by_server:
            return passed(f"the venv and the image hold the same {len(venv)} distributions, at the same versions")
        changed = sorted(name for name in installed_by_server if name in venv)
        moved = f", except what {server} changes: " + ", ".join(f"{n} {venv[n]} -> {image.get(n)}" for n in changed)
        return passed(
            f"the image holds the venv's {len(venv)} distributions at the venv's versions{moved if changed else ''}; "
            f"and {len(set(installed_by_server) - set(venv))} of {server}'s own"
        )
    more = f"; and {len(differences) - SHOWN} more" if len(differences) > SHOWN else ""
    by_server = [
        name for name in sorted(venv.keys() | image.keys()) if name in installed_by_server and name in required
    ]
    why = (
        f"{server} needs other versions of {', '.join(by_server)}, which the model requires: pin versions it "
        "accepts, or serve the model with MLflow's scoring server"
        if by_server
        else "Both install the run's lock: a difference comes from the base image or from an install outside the lock"
    )
    return failed(
        f"the image and the venv differ in {len(differences)} distribution(s): {'; '.join(differences[:SHOWN])}{more}. "
        f"{why}",
        "\n".join(differences),
    )
