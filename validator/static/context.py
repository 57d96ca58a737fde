"""What every static check reads: the model's files, as listed by its store and as downloaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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

    def downloaded_text_files(self, suffixes: tuple[str, ...]) -> list[Path]:
        return sorted(p for p in self.model_dir.rglob("*") if p.is_file() and p.suffix in suffixes)
