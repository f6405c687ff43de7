"""Base classes for configuration sections, apart from the sections themselves so
that any module (alarm rules, plugins) can define a section without import cycles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from .config import GatewayConfig


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are frozen,
    and a float must be finite. TOML has ``inf`` and ``nan``: ``stale_after_s =
    inf`` would switch the stuck-bus watchdog off, a ``nan`` limit would never
    compare true. Every section (plugins' too) derives from this class, so one
    setting here rejects them in every float field, in lists and tables too."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PluginSection(StrictModel):
    """Base for plugin sections; ``enabled = false`` keeps a configured plugin off."""

    enabled: bool = True

    def cross_check(self, gateway: GatewayConfig) -> list[Problem]:
        """Problems between this section and the rest of the file that only
        matter while the plugin is on (a name the protocol cannot carry, two
        names its objects would confuse), each with the key path it concerns,
        so ``check-config`` reports them rather than the plugin failing at
        start. Called for an enabled section once the core config is valid."""
        return []


@dataclass(frozen=True)
class Problem:
    """One thing wrong: ``path`` is the key path in ``file``, which is the
    file being validated unless set (a file the configuration names, such
    as a register-override file, reports its problems under its own name)."""

    path: str
    message: str
    file: str | None = None

    def render(self, file: str) -> str:
        return f"{self.file or file}: {self.path}: expected {self.message}"
