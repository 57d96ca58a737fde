"""Environments for the processes the validator starts.

A model is untrusted code (pickles, code_paths): the processes that load it see an allow-list,
never the CI's tokens. Install tools (uv, docker build) see only what reaching the index needs.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mlflow_validator.model.requirements import RequirementLine, index_urls
from mlflow_validator.settings import BuildNetwork

MODEL_ENV_ALLOWED = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
TOOL_ENV_ALLOWED = (
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME", "UV_CACHE_DIR", "DOCKER_HOST", "PYENV_ROOT",
    "UV_PYTHON_INSTALL_DIR",  # where uv's own interpreters are (python.downloads: auto)
)  # fmt: skip
# Where uv downloads interpreters from (python.downloads: auto), often with credentials: given to
# `uv python install` alone, never to a uv that may build a requirement's source distribution.
PYTHON_MIRROR_ENV = ("UV_PYTHON_INSTALL_MIRROR", "UV_PYTHON_DOWNLOADS_JSON_URL")


def _allowed(env: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: env[name] for name in names if name in env}


def model_process_env(
    env: Mapping[str, str], *, home: Path, bin_dir: Path, declared: Mapping[str, str]
) -> dict[str, str]:
    """The whole environment of a process that loads the model: the allow-list plus what the
    config file declares (`env: {pass: [...], set: {...}}`, already resolved to values)."""
    return {
        **_allowed(env, MODEL_ENV_ALLOWED),
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "PYTHONDONTWRITEBYTECODE": "1",
        **declared,
    }


CHECKS_ENV_ALLOWED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH")
CONTEXT_VARIABLE = "MLFLOW_VALIDATOR_CHECKS_CONTEXT"  # names the file telling the checks' plugin where the model is


def checks_process_env(env: Mapping[str, str], *, home: Path, context: Path) -> dict[str, str]:
    """The team's checks see where to find the model (`context`) and nothing of the CI's secrets or of
    what the model is given: the model's secrets stay the model's."""
    return {
        **_allowed(env, CHECKS_ENV_ALLOWED),
        "HOME": str(home),
        "TMPDIR": str(home),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",  # no user site-packages: no .pth file runs before the team's tests
        "HYPOTHESIS_STORAGE_DIRECTORY": str(home / "hypothesis"),  # not the team's directory
        CONTEXT_VARIABLE: str(context),
    }


# A value shorter than this is no key, and hiding it would garble the report (a `1`, a `true`).
MIN_SECRET_CHARS = 8
# A variable named like a credential: any 8 characters of its value in a row are hidden too, since outputs
# cut long text (a message shortened to 300 characters, pydantic's `invalid k...W1yHc6JfA3`) and the cut
# half of a key is still most of it. Other values (an endpoint's URL) are hidden whole only: their pieces
# (`https://`) are everywhere.
CREDENTIAL_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
HIDDEN = "[hidden: a value of env.pass or env.set]"


@dataclass(frozen=True)
class Secret:
    value: str
    piecewise: bool  # hide any MIN_SECRET_CHARS of it in a row, in any case


def secrets_of(model_env: Mapping[str, str]) -> tuple[Secret, ...]:
    """The values the model is given (`env: {pass: [...], set: {...}}`): an API key among them. Longest
    first, so that one that contains another is hidden whole."""
    found = [
        Secret(value, bool(CREDENTIAL_NAME.search(name)))
        for name, value in model_env.items()
        if len(value) >= MIN_SECRET_CHARS
    ]
    return tuple(sorted(found, key=lambda secret: len(secret.value), reverse=True))


def hide_secrets(text: str, secrets: Sequence[Secret]) -> str:
    """`text` as an output may show it: every secret replaced. The model may print or answer its key."""
    for secret in secrets:
        text = text.replace(secret.value, HIDDEN)
    pieces = {
        secret.value[start : start + MIN_SECRET_CHARS].lower()
        for secret in secrets
        if secret.piecewise
        for start in range(len(secret.value) - MIN_SECRET_CHARS + 1)
    }
    if not pieces or not text:
        return text
    folded, spans = text.lower(), []
    for piece in pieces:  # str.find per piece: linear scans in C, where one regex of them all is not
        start = folded.find(piece)
        while start != -1:
            spans.append((start, start + MIN_SECRET_CHARS))
            start = folded.find(piece, start + 1)
    return _replaced(text, spans)


def _replaced(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each run of overlapping spans replaced by HIDDEN."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    kept, position = [], 0
    for start, end in merged:
        kept += [text[position:start], HIDDEN]
        position = end
    return "".join([*kept, text[position:]])


class UntrustedFileError(OSError):
    """A file the model could write is not a plain file of a sane size."""


def read_untrusted(path: Path, max_bytes: int) -> bytes:
    """A file from a directory the model may write: never through a link, never a fifo or a device,
    never more than `max_bytes`."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UntrustedFileError(f"{path.name} cannot be opened without following a link: {exc.strerror}") from exc
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise UntrustedFileError(f"{path.name} is not a regular file")
        content = handle.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise UntrustedFileError(f"{path.name} is larger than {max_bytes // 2**20} MiB")
    return content


def proxy_env(network: BuildNetwork) -> dict[str, str]:
    pairs = {"HTTP_PROXY": network.http_proxy, "HTTPS_PROXY": network.https_proxy, "NO_PROXY": network.no_proxy}
    return {name: value for name, value in pairs.items() if value}


def install_network(network: BuildNetwork, requirements: list[RequirementLine]) -> BuildNetwork:
    """The settings' indexes plus those the model's requirements name: pip honours those lines in
    MLflow's build, so both stages honour them too. The settings' index_url wins over the file's."""
    file_index, file_extras = index_urls(requirements)
    extras = network.extra_index_urls + tuple(url for url in file_extras if url not in network.extra_index_urls)
    return replace(network, index_url=network.index_url or file_index, extra_index_urls=extras)


def python_mirror_env(env: Mapping[str, str]) -> dict[str, str]:
    return _allowed(env, PYTHON_MIRROR_ENV)


def install_tool_env(env: Mapping[str, str], network: BuildNetwork) -> dict[str, str]:
    """Environment for uv: the index, CA bundle and proxies, and no interpreter downloads."""
    # UV_NO_CONFIG: a uv.toml or pyproject.toml in the model's directory (uv's working directory) configures nothing
    tool_env = {
        **_allowed(env, TOOL_ENV_ALLOWED),
        **proxy_env(network),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_CONFIG": "1",
    }
    if network.ca_bundle:
        tool_env["SSL_CERT_FILE"] = str(network.ca_bundle)
    if network.index_url:
        tool_env["UV_DEFAULT_INDEX"] = network.index_url
    if network.extra_index_urls:
        tool_env["UV_INDEX"] = " ".join(network.extra_index_urls)
    return tool_env
