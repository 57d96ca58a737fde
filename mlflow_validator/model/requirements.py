"""Parse requirements.txt into records the static checks can reason about."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


class Kind(str, enum.Enum):
    PINNED = "pinned"  # name==version
    UNPINNED = "unpinned"  # a range, or no version at all
    URL = "url"  # name @ https://… or a bare URL
    VCS = "vcs"  # git+https://…
    PATH = "path"  # ./wheels/x.whl, /abs/dir, file:…
    INDEX_OPTION = "index option"  # --index-url, --extra-index-url, --find-links
    OTHER_OPTION = "option"  # -r, -c, -e and other pip options
    INVALID = "invalid"


@dataclass(frozen=True)
class RequirementLine:
    line_no: int
    text: str
    kind: Kind
    name: str = ""  # canonical distribution name, when there is one
    version: str = ""  # the pinned version, for PINNED

    @property
    def display(self) -> str:
        return f"line {self.line_no}: {self.text}"


_INDEX_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f")
_VCS = re.compile(r"^(git|hg|svn|bzr)\+", re.IGNORECASE)


def _classify(text: str) -> tuple[Kind, str, str]:
    if text.startswith("-"):
        option = text.split()[0].split("=")[0]
        return (Kind.INDEX_OPTION if option in _INDEX_OPTIONS else Kind.OTHER_OPTION), "", ""
    if _VCS.match(text) or re.search(r"@\s*(git|hg|svn|bzr)\+", text):
        return Kind.VCS, "", ""
    if text.startswith((".", "/", "~", "file:")) or (text.endswith((".whl", ".tar.gz", ".zip")) and "@" not in text):
        return Kind.PATH, "", ""
    if re.match(r"^[a-z]+://", text):
        return Kind.URL, "", ""
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return Kind.INVALID, "", ""
    name = canonicalize_name(requirement.name)
    if requirement.url:
        return (Kind.PATH if requirement.url.startswith("file:") else Kind.URL), name, ""
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return Kind.PINNED, name, specs[0].version
    return Kind.UNPINNED, name, ""


def parse_requirements(text: str) -> list[RequirementLine]:
    """One record per meaningful line; comments and blank lines are dropped, continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    lines = []
    for number, raw in enumerate(joined.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line:
            kind, name, version = _classify(line)
            lines.append(RequirementLine(number, line, kind, name, version))
    return lines


def read_requirements(path: Path) -> list[RequirementLine]:
    return parse_requirements(path.read_text())


def index_urls(lines: list[RequirementLine]) -> tuple[str | None, tuple[str, ...]]:
    """The indexes the file names, as pip reads them: (--index-url, the --extra-index-urls)."""
    index_url, extra = None, []
    for line in lines:
        option, _, value = line.text.replace("=", " ", 1).partition(" ") if line.kind is Kind.INDEX_OPTION else "   "
        if option in ("--index-url", "-i"):
            index_url = value.strip()
        elif option == "--extra-index-url":
            extra.append(value.strip())
    return index_url, tuple(extra)


def pins(lines: list[RequirementLine]) -> dict[str, str]:
    """Canonical name -> pinned version, for pinned lines only."""
    return {line.name: line.version for line in lines if line.kind is Kind.PINNED}


# What uv is given of a model's requirements: an allow-list, not an imitation of uv's parser. uv would read
# files the line names (relative to the file for -r/-c, to its working directory for paths), expand ${VAR}
# from its environment (where index credentials are), un-quote values and fetch what a URL includes.
SAFE_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]*")  # relative; no quoting, expansion, comment or space
_INCLUDE = re.compile(r"(-r|--requirement|-c|--constraint)[ =]([^ ]+)")
_INDEX = re.compile(r"(--index-url|-i|--extra-index-url|--find-links|-f)[ =](https?://[^ ]+)")
_HASHES = re.compile(r"( +--hash[ =]sha256:[0-9a-f]{64})+$")
ACCEPTED = (
    "name==version (markers, extras and --hash allowed), name @ https://…, an https:// wheel, a wheel file of the "
    "model, -r/-c a file of the model, and http(s) --index-url, --extra-index-url and --find-links"
)
MAX_REQUIREMENTS_BYTES = 1024 * 1024


def refused_lines(requirements: Path, root: Path, visited: set[Path] | None = None) -> list[str]:
    """The lines of a requirements file, and of the files it includes in turn, that uv is not given, each
    with why. `root` is the model's directory (resolved): uv's working directory."""
    visited = set() if visited is None else visited
    visited.add(requirements.resolve())
    if requirements.stat().st_size > MAX_REQUIREMENTS_BYTES:
        return [f"{requirements.name}: larger than {MAX_REQUIREMENTS_BYTES // 1024} KiB"]
    try:
        text = requirements.read_text()
    except UnicodeDecodeError:
        return [f"{requirements.name}: not text"]
    refused = []
    for line in parse_requirements(text):
        why, included = refusal(line.text, requirements.parent, root)
        if why:
            refused.append(f"{requirements.name} {line.display} ({why})")
        elif included is not None and included not in visited:
            refused += refused_lines(included, root, visited)
    return refused


def refusal(text: str, directory: Path, root: Path) -> tuple[str, Path | None]:
    """Why uv must not be given this line ("" when it may), and the model's file it includes, if any."""
    if "$" in text or "\t" in text or "\\" in text:
        return "uv would expand or un-escape it", None
    if match := _INCLUDE.fullmatch(text):
        path = _inside(match[2], directory, root)
        return ("", path) if path and path.is_file() else ("not a file of the model", None)
    if _INDEX.fullmatch(text):
        return "", None
    if text.startswith("-"):
        return "a pip option uv is not given", None
    text = _HASHES.sub("", text)
    if text.endswith(".whl") and SAFE_PATH.fullmatch(wheel := text.removeprefix("./")):  # the model's own wheel
        return ("", None) if _inside(wheel, root, root) else ("not a file of the model", None)
    if re.fullmatch(r"https?://[^ ;]+\.whl", text):
        return "", None
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return "not a requirement", None
    if requirement.url and not re.match(r"https?://", requirement.url):
        return "a URL that is not http(s)", None
    return "", None


def _inside(named: str, directory: Path, root: Path) -> Path | None:
    """`named`, relative to `directory` and to uv's working directory alike, when both are in the model."""
    if not SAFE_PATH.fullmatch(named):
        return None
    paths = [(directory / named).resolve(), (root / named).resolve()]
    return paths[0] if all(path.is_relative_to(root) for path in paths) else None
