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


_INCLUDES = ("-r", "--requirement", "-c", "--constraint", "-e", "--editable")


def _named_path(line: RequirementLine) -> str | None:
    """The local file or directory a line reads: an included file, an editable or a local path."""
    if line.kind is Kind.OTHER_OPTION:
        option, _, rest = line.text.replace("=", " ", 1).partition(" ")
        return rest.strip() or None if option in _INCLUDES else None
    if line.kind is Kind.PATH:
        return line.text.split("@", 1)[-1].strip() if " @ " in line.text else line.text
    return None


def outside_paths(requirements: Path, root: Path, seen: frozenset[Path] = frozenset()) -> list[str]:
    """What a requirements file (and the files it includes, in turn) reads from outside `root`: uv would
    read it on the host, and quote it in its errors (`-r /proc/self/environ`)."""
    outside = []
    for line in read_requirements(requirements):
        named = _named_path(line)
        if named is None or (re.match(r"^[a-z][a-z0-9+.-]*://", named) and not named.startswith("file:")):
            continue
        path = (requirements.parent / Path(named.removeprefix("file://").removeprefix("file:")).expanduser()).resolve()
        if not path.is_relative_to(root):
            outside.append(f"{requirements.name} {line.display}")
        elif line.kind is Kind.OTHER_OPTION and path.is_file() and path not in seen:
            outside += outside_paths(path, root, seen | {requirements.resolve()})
    return outside
