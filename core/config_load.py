"""Loading the TOML file and reporting every problem in it at once.

Each problem reads ``FILE: key.path: what was expected, what was found`` so an
integrator can fix the whole file in one pass. Values of keys that look like
secrets (SNMPv3 keys, passwords, communities, tokens) are never echoed.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .config import GatewayConfig, PluginSection
from .config_base import Problem
from .config_cross import cross_check
from .profiles import DeviceProfile

SECRET_WORDS = ("password", "passphrase", "secret", "key", "community", "token")


class ConfigError(Exception):
    """Raised with every problem found; ``str()`` is the report a user sees."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(p.render(file) for p in problems))


@dataclass(frozen=True)
class LoadedConfig:
    """The validated file: the core model plus each enabled plugin's own model."""

    source: str
    gateway: GatewayConfig
    plugins: dict[str, BaseModel]

    def plugin(self, name: str) -> BaseModel | None:
        return self.plugins.get(name)

    def enabled_plugins(self) -> set[str]:
        return {n for n, m in self.plugins.items() if getattr(m, "enabled", True)}


def is_secret(path: tuple[Any, ...]) -> bool:
    return any(isinstance(p, str) and any(w in p.lower() for w in SECRET_WORDS) for p in path)


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _expected(err: Mapping[str, Any], loc: tuple[Any, ...], known: list[str]) -> str:
    kind = err["type"]
    found = "***" if is_secret(loc) else repr(err.get("input"))
    if kind == "missing":
        return "a value for this required key, found nothing"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"one of the known keys {sorted(known)}{hint}, found unknown key {loc[-1]!r}"
    msg: str = err["msg"]
    for prefix in ("Value error, ", "Input should be ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if "found" in msg:
        return msg
    if kind.startswith(("model_type", "dict_type")):
        return f"a table, found {found}"
    return f"{msg}, found {found}"


def problems_from(
    exc: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...] = ()
) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        known = _known_keys(model, loc[:-1]) if err["type"] == "extra_forbidden" else []
        out.append(Problem(format_path(prefix + loc), _expected(err, prefix + loc, known)))
    return out


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a table at ``loc`` accepts, to suggest the one a typo meant.
    Steps through lists (an index in ``loc``) and dicts of models (a free key)."""
    current: Any = model
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
        if _is_dict(field.annotation) and parts:
            parts.pop(0)  # the dict's own key (e.g. a string name), not a field
    return list(getattr(current, "model_fields", {}))


def _is_dict(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is dict


def _model_in(annotation: Any) -> Any:
    """The model class inside ``Model``, ``Model | None``, ``list[Model]`` or
    ``dict[str, Model]`` (the annotation itself when there is none)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def validate(
    data: dict[str, Any],
    source: str,
    sections: Mapping[str, type[BaseModel]],
    profiles: Mapping[str, DeviceProfile] | set[str] | None = None,
    transports: set[str] | None = None,
) -> LoadedConfig:
    """Validate a parsed document; raise ConfigError listing every problem.

    ``profiles`` and ``transports``: the device profiles and bus transports
    the installed plugins provide (not checked when None); profiles given as
    objects also check each string's settings (see :func:`profile_checks`)."""
    problems: list[Problem] = []
    cfg: GatewayConfig | None = None
    try:
        cfg = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(problems_from(exc, GatewayConfig))
    problems.extend(cross_check(data))
    if profiles is not None:
        for i, s in enumerate(data.get("strings") or []):
            profile = s.get("profile", "bmsm") if isinstance(s, dict) else None
            if isinstance(profile, str) and profile not in profiles:
                problems.append(
                    Problem(
                        f"strings[{i}].profile",
                        f"an installed device profile {sorted(profiles)}, found {profile!r}",
                    )
                )
    plugins: dict[str, BaseModel] = {}
    raw_plugins = data.get("plugins", {})
    if isinstance(raw_plugins, dict):
        for name, section in raw_plugins.items():
            model = sections.get(name)
            if model is None:
                problems.append(
                    Problem(
                        f"plugins.{name}",
                        f"a section of an installed plugin {sorted(sections)}, found {name!r}",
                    )
                )
                continue
            try:
                # plugins may check names against the core config (strings, UPS)
                context = {"gateway": cfg} if cfg is not None else None
                plugins[name] = model.model_validate(section, context=context)
            except ValidationError as exc:
                problems.extend(problems_from(exc, model, ("plugins", name)))
    if cfg is not None:
        if transports is not None:
            problems.extend(
                Problem(
                    f"buses[{i}].transport",
                    f"a bus transport an installed plugin provides {sorted(transports)}, "
                    f"found {bus.transport!r}",
                )
                for i, bus in enumerate(cfg.buses)
                if bus.transport not in transports
            )
        cfg = with_resolved_paths(cfg, source)
        problems.extend(plugin_cross_checks(cfg, plugins))
        if isinstance(profiles, Mapping):
            problems.extend(profile_checks(cfg, profiles))
    if problems or cfg is None:
        raise ConfigError(source, problems)
    return LoadedConfig(source=source, gateway=cfg.with_indexes(), plugins=plugins)


def with_resolved_paths(cfg: GatewayConfig, source: str) -> GatewayConfig:
    """Files the configuration names relative to itself (a string's
    ``register_overrides``) made absolute against the file's folder, so they
    mean the same whatever the working directory of the process."""
    base = Path(os.path.abspath(source)).parent
    strings = [
        s.model_copy(update={"register_overrides": base / s.register_overrides})
        if s.register_overrides is not None and not s.register_overrides.is_absolute()
        else s
        for s in cfg.strings
    ]
    return cfg.model_copy(update={"strings": strings})


def profile_checks(cfg: GatewayConfig, profiles: Mapping[str, DeviceProfile]) -> list[Problem]:
    """Each string's settings as its device profile sees them
    (``check_string``: a register-override file, and how it fits the rest of
    the file), each problem once (strings sharing a file share its problems).
    A string naming ``register_overrides`` for a profile that takes none is a
    problem of that key."""
    problems: list[Problem] = []
    for i, s in enumerate(cfg.strings):
        profile = profiles.get(s.profile)
        if profile is None:
            continue  # reported by validate()
        check = getattr(profile, "check_string", None)
        if check is None:
            if s.register_overrides is not None:
                problems.append(
                    Problem(
                        f"strings[{i}].register_overrides",
                        f"no register_overrides for profile {s.profile!r}, which has no "
                        f"register map to correct, found {str(s.register_overrides)!r}",
                    )
                )
            continue
        try:
            found = list(check(s, i, cfg))
        except Exception as exc:
            found = [
                Problem(
                    f"strings[{i}].profile",
                    f"profile {s.profile!r}'s own checks to pass, found them failing with "
                    f"{type(exc).__name__}: {exc}",
                )
            ]
        problems.extend(p for p in found if p not in problems)
    return problems


def plugin_cross_checks(cfg: GatewayConfig, plugins: Mapping[str, BaseModel]) -> list[Problem]:
    """Each enabled plugin's :meth:`PluginSection.cross_check` against the core
    config. A check that raises (a third-party plugin's bug) is reported as a
    problem of its section rather than a traceback."""
    problems: list[Problem] = []
    for name, section in plugins.items():
        if not isinstance(section, PluginSection) or not section.enabled:
            continue
        try:
            problems.extend(section.cross_check(cfg))
        except Exception as exc:
            problems.append(
                Problem(
                    f"plugins.{name}",
                    f"the plugin's own checks to pass, found them failing with "
                    f"{type(exc).__name__}: {exc}",
                )
            )
    return problems


def read_text(path: str | Path) -> str:
    """The file as text, or a ConfigError saying why it is not a config file:
    unreadable, binary, or text in an encoding other than UTF-8 (a UTF-16 file
    saved by a Windows editor). A UTF-8 byte-order mark is accepted."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            source, [Problem("(file)", f"a readable file, found {exc.strerror}")]
        ) from None
    not_text = "save it as UTF-8 text (TOML)"
    if b"\0" in raw:
        found = f"found NUL bytes: a binary or UTF-16 file; {not_text}"
        raise ConfigError(source, [Problem("(file)", f"UTF-8 text, {found}")])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source,
            [
                Problem(
                    "(file)",
                    f"UTF-8 text, found a byte that is not UTF-8 at offset {exc.start} "
                    f"(0x{raw[exc.start]:02x}): not UTF-8 text; {not_text}",
                )
            ],
        ) from None


def load(
    path: str | Path,
    sections: Mapping[str, type[BaseModel]],
    profiles: Mapping[str, DeviceProfile] | set[str] | None = None,
    transports: set[str] | None = None,
) -> LoadedConfig:
    source = str(path)
    text = read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [Problem("(syntax)", f"valid TOML, found {exc}")]) from None
    return validate(data, source, sections, profiles, transports)


__all__ = ["ConfigError", "LoadedConfig", "PluginSection", "Problem", "load", "validate"]
