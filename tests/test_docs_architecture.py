"""docs/architecture.md names every module the packages hold, and only those:
the page had drifted to 14 of 37 core modules and cited files that were gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs/architecture.md"


def packages() -> list[Path]:
    """core/ and its subpackages, each plugin and each protocol package."""
    below = [
        d
        for top in ("core", "plugins", "protocols")
        for d in sorted((ROOT / top).iterdir())
        if (d / "__init__.py").is_file()
    ]
    return [ROOT / "core", *below]


def test_every_module_and_subpackage_is_named() -> None:
    text = PAGE.read_text(encoding="utf-8")
    missing = [
        str(path.relative_to(ROOT))
        for package in packages()
        for path in sorted(package.iterdir())
        if (path.suffix == ".py" and path.name != "__init__.py" and f"`{path.name}`" not in text)
        or ((path / "__init__.py").is_file() and f"`{path.name}/`" not in text)
    ]
    assert missing == []


def test_every_core_module_named_exists() -> None:
    """The core's table lists files by name: each must be there."""
    text = PAGE.read_text(encoding="utf-8")
    table = text[text.index("**core/**") : text.index("**protocols/**")]
    named = set(re.findall(r"`(\w+\.py)`", table))
    existing = {p.name for p in (ROOT / "core").rglob("*.py")}
    assert named and named <= existing, named - existing
