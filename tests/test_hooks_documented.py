"""Every hook in hookspecs.py has its own section in docs/plugin_hooks.md."""

import inspect
import re
from pathlib import Path

from btms_gateway.core import hookspecs

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
