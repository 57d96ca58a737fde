"""Every import in the logged code resolves: to logged code, the standard library, or a locked distribution."""

from __future__ import annotations

import ast
import shlex
import sys
from dataclasses import dataclass
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.utils import canonicalize_name

from mlflow_validator.results import Outcome, failed, passed, skipped
from mlflow_validator.stages.static.context import StaticContext

# Import names whose distribution is named otherwise, for distributions the validator may not have installed.
KNOWN_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "cv2": "opencv-python",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "attr": "attrs",
    "jwt": "pyjwt",
    "OpenSSL": "pyopenssl",
    "Crypto": "pycryptodome",
    "dotenv": "python-dotenv",
    "docx": "python-docx",
    "google": "protobuf",
    "lightgbm": "lightgbm",
    "torch": "torch",
}
OPTIONAL_IMPORT_GUARDS = ("ImportError", "ModuleNotFoundError", "Exception")


@dataclass(frozen=True)
class ImportSite:
    file: str  # relative to the model directory
    line: int
    module: str  # dotted, absolute


def _guarded(handlers: list[ast.ExceptHandler]) -> bool:
    names = {ast.unparse(h.type) for h in handlers if h.type is not None}
    return not names or any(guard in name for name in names for guard in OPTIONAL_IMPORT_GUARDS)


def imports_in(source: str, relative: str) -> list[ImportSite]:
    """Absolute imports that must resolve; imports guarded by `except ImportError` are optional."""
    tree = ast.parse(source)
    optional: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and _guarded(node.handlers):
            optional.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    sites = []
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            sites += [ImportSite(relative, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            sites.append(ImportSite(relative, node.lineno, node.module))
    return sites


@cache
def _local_distributions() -> dict[str, list[str]]:
    return {name: [canonicalize_name(d) for d in dists] for name, dists in packages_distributions().items()}


def distributions_for(top_level: str) -> set[str]:
    candidates = {canonicalize_name(top_level), *_local_distributions().get(top_level, [])}
    if top_level in KNOWN_DISTRIBUTIONS:
        candidates.add(canonicalize_name(KNOWN_DISTRIBUTIONS[top_level]))
    return candidates


def code_files(ctx: StaticContext) -> tuple[list[Path], list[Path]]:
    """(directories MLflow puts on sys.path, Python files to scan)."""
    pyfunc = ctx.files.mlmodel.python_function
    model_dir = ctx.files.directory
    roots = [model_dir / pyfunc.code] if pyfunc.code else []
    roots = [root for root in roots if root.is_dir()]
    files = [path for root in roots for path in sorted(root.rglob("*.py"))]
    if pyfunc.model_code_path:
        model_code = model_dir / Path(pyfunc.model_code_path).name
        if model_code.is_file():
            files.append(model_code)
    return roots, files


def _logged(module: str, roots: list[Path]) -> bool:
    parts = module.split(".")
    for root in roots:
        for depth in range(len(parts), 0, -1):
            base = root.joinpath(*parts[:depth])
            if base.with_suffix(".py").is_file() or (base.is_dir() and depth == len(parts)):
                return True
    return False


def _flattened(module: str, roots: list[Path]) -> str:
    """The code_paths pitfall: `src.utils` imported, but utils.py was logged at the top of code/."""
    parts = module.split(".")
    if len(parts) < 2:
        return ""
    for root in roots:
        if root.joinpath(*parts[1:]).with_suffix(".py").is_file() or root.joinpath(*parts[1:]).is_dir():
            return parts[0]
    return ""


def _unresolved(site: ImportSite, roots: list[Path], ctx: StaticContext) -> str:
    """Why the import would fail in a fresh environment; empty when it resolves."""
    top = site.module.split(".")[0]
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    if top in stdlib or _logged(site.module, roots) or distributions_for(top) & set(ctx.lock):
        return ""
    where = f"{site.file}:{site.line} imports {site.module}" if site.line else f"{site.file} imports {site.module}"
    if package := _flattened(site.module, roots):
        return (
            f"{where}, but {package}/ was logged flattened into code/: MLflow copies each code_paths "
            f'entry by its last path component, so log code_paths=["{package}"] (the directory)'
        )
    return (
        f"{where}, which is neither logged code, nor the standard library, nor in the resolved "
        f"requirements: add it with `mlflow models update-pip-requirements -m {shlex.quote(ctx.model_uri)}"
        f' add "{top}==<version>"` or log it with code_paths'
    )


def check_code_imports(ctx: StaticContext) -> Outcome:
    roots, files = code_files(ctx)
    # What pickled code imports is known without its line: the pickle is the place to look.
    pickled = [ImportSite(f"{p.file} (pickled code)", 0, module) for p in ctx.pickles for module in p.imports]
    unread = [f"{p.file}: {p.code_unread}" for p in ctx.pickles if p.code_unread]
    if not files and not pickled and unread:
        return skipped(f"not known: {'; '.join(unread)}")
    if not files and not pickled:
        return skipped("the model logs no Python code (no code_paths, no models-from-code file, no pickled code)")
    problems = []
    sites = list(pickled)
    for path in files:
        relative = str(path.relative_to(ctx.files.directory))
        try:
            sites += imports_in(path.read_text(), relative)
        except SyntaxError as exc:
            problems.append(f"{relative}:{exc.lineno} does not parse: {exc.msg}")
    problems += [problem for site in sites if (problem := _unresolved(site, roots, ctx))]
    if problems:
        return failed("; ".join(problems))
    pickles = f" and the code of {len({p.file for p in ctx.pickles if p.imports})} pickle(s)" if pickled else ""
    not_known = f"; not known for {'; '.join(unread)}" if unread else ""
    return passed(f"every import in {len(files)} file(s){pickles} resolves{not_known}")
