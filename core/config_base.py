"""Base classes for configuration sections, apart from the sections themselves so
that any module (alarm rules, plugins) can define a section without import cycles."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PluginSection(StrictModel):
    """Base for plugin sections; ``enabled = false`` keeps a configured plugin off."""

    enabled: bool = True


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def render(self, file: str) -> str:
        return f"{file}: {self.path}: expected {self.message}"
