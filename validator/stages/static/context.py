"""What every static check reads: the model's files (typed views) and the resolution of its requirements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from validator.model.files import ModelFiles

if TYPE_CHECKING:
    from validator.stages.static.resolution import Resolver


@dataclass(frozen=True)
class StaticContext:
    files: ModelFiles
    model_uri: str
    resolver: Resolver

    @property
    def lock(self) -> dict[str, str]:
        """Canonical name -> version, as resolved (within the runtime's constraints when they resolve)."""
        return self.resolver.lock
