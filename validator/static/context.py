"""What every static check reads: the model's files, as listed by its store and as downloaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from validator.model_files import PythonEnv, read_python_env
from validator.static.requirements import RequirementLine, read_requirements


@dataclass
class StaticContext:
    model_dir: Path
    listing: dict[str, int | None]  # every file of the model, relative path -> size in the store
    model_uri: str
    meta: dict[str, Any] = field(default_factory=dict)  # MLmodel, once parsed
    lock: dict[str, str] = field(default_factory=dict)  # canonical name -> version, once resolved

    def listed(self, relative: str) -> bool:
        """A file, or a directory with files under it, that the model's store lists."""
        relative = relative.strip("/")
        return relative in self.listing or any(path.startswith(relative + "/") for path in self.listing)

    @cached_property
    def python_env(self) -> PythonEnv:
        """python_env.yaml, read once MLmodel is parsed (raises ModelFileError when it is broken)."""
        return read_python_env(self.model_dir, self.meta)

    @cached_property
    def requirements(self) -> list[RequirementLine]:
        return read_requirements(self.python_env.requirements_file)
