"""The files a configuration names besides itself that the gateway reads to
run: register-override files, TLS certificates and keys. A gateway restored
without them would not start (check-config requires each to exist), or
would read with another register map.

Which keys name such files: a string's ``register_overrides`` (core), and
every field of an installed plugin's section model (``register_config_sections``,
nested tables and arrays of tables included) marked
``Field(json_schema_extra={"backup": "file"})``. A path-typed key alone
does not qualify: a plugin's own output (the example JSON-lines logger's
``path``) is a path too, and restoring it would put an old log back. The
raw TOML is walked beside the models rather than validated, so a config
that does not validate on this machine (a missing override file is exactly
that) still yields what it names.

A relative path means what the code that opens it makes of it: a string's
``register_overrides`` is taken from the config file's folder
(config_load.with_resolved_paths); the plugins open theirs as given, from
the gateway's working directory, which a backup cannot know (the
service's is ``/``), so such a path is reported, not archived.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..config import GatewayConfig, StringConfig

#: the core's keys naming such a file, each resolved against the config file's
#: folder when relative (config_load.with_resolved_paths)
CORE_FILES = {(StringConfig, "register_overrides")}
#: how a plugin's settings model marks a field naming such a file
MARK = {"backup": "file"}


@dataclass(frozen=True)
class Reference:
    """One key naming a file: where the file is, if that can be known."""

    key: str  # "strings[1].register_overrides", "plugins.web.tls_keyfile"
    given: str  # the value as written
    #: the file, absolute and normalized; None: relative to the working directory
    path: Path | None


def named_files(
    config: Path, data: Mapping[str, Any], sections: Mapping[str, type[BaseModel]]
) -> list[Reference]:
    """Every file ``data`` (the parsed ``config``) names, in file order."""
    folder = Path(os.path.abspath(config)).parent
    found = list(_walk(GatewayConfig, {k: v for k, v in data.items() if k != "plugins"}, ""))
    plugins = data.get("plugins")
    if isinstance(plugins, Mapping):
        for name, section in plugins.items():
            model = sections.get(name)
            if model is not None:
                found.extend(_walk(model, section, f"plugins.{name}"))
    out = []
    for key, given, relative_to_config in found:
        path: Path | None = Path(given)
        if not Path(given).is_absolute():
            path = folder / given if relative_to_config else None
        out.append(Reference(key, given, None if path is None else normalized(path)))
    return out


def normalized(path: Path) -> Path:
    """``..`` and ``.`` resolved lexically (symbolic links are left as they are)."""
    return Path(os.path.normpath(path))


def installed_sections() -> dict[str, type[BaseModel]]:
    """The section models of the plugins installed here (as check-config uses)."""
    from ..config_load import ConfigError
    from ..plugin_manager import FailureLog, create_manager
    from ..registry import config_sections

    try:
        return config_sections(create_manager(), FailureLog())
    except ConfigError:  # two plugins claiming one section: check-config says so
        return {}


def _walk(annotation: Any, raw: Any, key: str) -> Iterator[tuple[str, str, bool]]:
    """(key, value, relative to the config's folder) of each file ``raw``
    names, read as ``annotation`` (a model, or a list or dict of them) describes it."""
    for kind in _alternatives(annotation):
        origin = typing.get_origin(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel) and isinstance(raw, Mapping):
            for name, field in kind.model_fields.items():
                raw_key = field.alias or name
                if raw_key not in raw:
                    continue
                where = f"{key}.{raw_key}" if key else raw_key
                core = (kind, name) in CORE_FILES
                if core or _marked(field.json_schema_extra):
                    yield from _values(raw[raw_key], where, relative_to_config=core)
                else:
                    yield from _walk(field.annotation, raw[raw_key], where)
            return
        if origin is list and isinstance(raw, list):
            item = (typing.get_args(kind) or (Any,))[0]
            for i, value in enumerate(raw):
                yield from _walk(item, value, f"{key}[{i}]")
            return
        if origin is dict and isinstance(raw, Mapping):
            item = (typing.get_args(kind) or (str, Any))[-1]
            for name, value in raw.items():
                yield from _walk(item, value, f"{key}.{name}")
            return


def _marked(extra: object) -> bool:
    return isinstance(extra, Mapping) and all(extra.get(k) == v for k, v in MARK.items())


def _values(raw: Any, key: str, relative_to_config: bool) -> Iterator[tuple[str, str, bool]]:
    """A marked key's file name, or each of a list of them."""
    if isinstance(raw, str):
        yield key, raw, relative_to_config
    elif isinstance(raw, list):
        for i, value in enumerate(raw):
            if isinstance(value, str):
                yield f"{key}[{i}]", value, relative_to_config


def _alternatives(annotation: Any) -> list[Any]:
    """The members of a union (``X | None``), the annotation itself otherwise;
    ``Annotated[X, ...]`` is X."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _alternatives(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _alternatives(arg)]
    return [annotation]


_KEY_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def value_at(data: Mapping[str, Any], key: str) -> Any:
    """The raw value at a key path as :func:`named_files` writes it, None if
    there is none (an archive's manifest is checked against its config so)."""
    current: Any = data
    for index, name in _KEY_PART.findall(key):
        if index and isinstance(current, list) and int(index) < len(current):
            current = current[int(index)]
        elif name and isinstance(current, Mapping) and name in current:
            current = current[name]
        else:
            return None
    return current
