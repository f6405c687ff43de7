"""Every hook in hookspecs.py has its own section in docs/plugin_hooks.md, and
every name of the public API (core/api.py) its entry under "Public API"."""

import inspect
import re
from pathlib import Path

from btms_gateway.core import api, hookspecs

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugin_hooks.md"


def hook_names() -> list[str]:
    return [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "btms_gateway_spec")
    ]


def test_there_are_hooks():
    assert {
        "startup",
        "shutdown",
        "string_reading",
        "alarm_event",
        "register_commands",
        "register_config_sections",
        "register_device_profiles",
    } <= set(hook_names())


def test_every_hook_has_a_section_with_its_signature():
    headings = re.findall(r"^## (\w+)\((.*)\)$", DOC.read_text(), flags=re.M)
    documented = {name: args for name, args in headings}
    for name in hook_names():
        assert name in documented, f"hook {name} has no '## {name}(...)' section in {DOC.name}"
        params = list(inspect.signature(getattr(hookspecs, name)).parameters)
        assert documented[name] == ", ".join(params), f"{name}: documented signature differs"


def test_no_section_for_a_hook_that_does_not_exist():
    headings = re.findall(r"^## (\w+)\(", DOC.read_text(), flags=re.M)
    assert set(headings) <= set(hook_names())


def public_api_section() -> str:
    text = DOC.read_text()
    start = text.index("\n## Public API\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_every_public_api_name_has_an_entry():
    """A name in ``api.__all__`` without its row in docs/plugin_hooks.md's
    "Public API" fails here: what is public is documented."""
    rows = set(re.findall(r"^\| `(\w+)` \|", public_api_section(), flags=re.M))
    missing = [name for name in api.__all__ if name not in rows]
    assert not missing, f"documented nowhere under 'Public API' in {DOC.name}: {missing}"


def test_the_public_api_section_names_nothing_that_is_not_public():
    rows = set(re.findall(r"^\| `(\w+)` \|", public_api_section(), flags=re.M))
    assert rows <= set(api.__all__)
    assert "Nothing else is stable" in public_api_section()


def test_every_public_name_is_importable_from_the_api():
    assert all(hasattr(api, name) for name in api.__all__)
