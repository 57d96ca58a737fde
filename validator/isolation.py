"""Environments for the processes the validator starts.

A model is untrusted code (pickles, code_paths): the processes that load it see an allow-list,
never the CI's tokens. Install tools (uv, docker build) see only what reaching the index needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from validator.settings import BuildNetwork

MODEL_ENV_ALLOWED = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
TOOL_ENV_ALLOWED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME", "UV_CACHE_DIR", "DOCKER_HOST")


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


def proxy_env(network: BuildNetwork) -> dict[str, str]:
    pairs = {"HTTP_PROXY": network.http_proxy, "HTTPS_PROXY": network.https_proxy, "NO_PROXY": network.no_proxy}
    return {name: value for name, value in pairs.items() if value}


def install_tool_env(env: Mapping[str, str], network: BuildNetwork) -> dict[str, str]:
    """Environment for uv: the index, CA bundle and proxies, and no interpreter downloads."""
    tool_env = {**_allowed(env, TOOL_ENV_ALLOWED), **proxy_env(network), "UV_PYTHON_DOWNLOADS": "never"}
    if network.ca_bundle:
        tool_env["SSL_CERT_FILE"] = str(network.ca_bundle)
    if network.index_url:
        tool_env["UV_DEFAULT_INDEX"] = network.index_url
    return tool_env
