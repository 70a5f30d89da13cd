"""YAML run configs -> a validated Config: a file may name a `base:` (loaded first, overridden key by key, one
level deep); dotted CLI overrides (`model.bins=[1,2,3,6]`) are applied last, their values parsed as YAML.
Every error is a `ConfigError` whose one-line message names the offending key or file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from study.config import SECTIONS, Config, ConfigError


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a field annotation; lists become tuples; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {list(value)!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string: accept plain numeric text
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {annotation!r}")


def _build_section(name: str, values: dict[str, Any]) -> Any:
    cls = SECTIONS[name]
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(sorted(known))})")
    kwargs = {key: _coerce(value, hints[key], f"{name}.{key}") for key, value in values.items()}
    section = cls(**kwargs)
    section.validate()
    return section


def from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a Config from a nested mapping of sections."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping of sections, got {type(data).__name__}")
    sections = {}
    for name, values in data.items():
        if name not in SECTIONS:
            raise ConfigError(f"{name}: unknown section (known: {', '.join(SECTIONS)})")
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"{name}: expected a mapping, got {type(values).__name__}")
        sections[name] = _build_section(name, values)
    for name in SECTIONS:
        sections.setdefault(name, _build_section(name, {}))
    cfg = Config(**sections)
    cfg.validate()
    return cfg


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Section-by-section, key-by-key override (one level deep: lists are replaced, not merged)."""
    out = {name: dict(values or {}) for name, values in base.items()}
    for name, values in override.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{name}: expected a mapping, got {type(values).__name__}")
        out.setdefault(name, {}).update(values)
    return out


def load_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """safe_load a YAML file that must hold a mapping; one-line errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping")
    return data


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Load a config file and its `base:` chain into one nested dict (not yet validated)."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: circular 'base:' reference")
    data = load_yaml_mapping(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a file path")
    return merge(read_yaml(path.parent / base, _seen + (path.resolve(),)), data)


def parse_override(text: str) -> tuple[str, str, Any]:
    """`section.key=value` -> (section, key, YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"{text}: override must look like section.key=value")
    dotted, raw = text.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{dotted}: override key must be section.key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"{dotted}: cannot parse value {raw!r}") from None
    return parts[0], parts[1], value


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    out = merge(data, {})
    for text in overrides:
        section, key, value = parse_override(text)
        out.setdefault(section, {})[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """YAML file (with its base chain) + dotted overrides -> validated Config."""
    data = read_yaml(path) if path is not None else {}
    return from_dict(apply_overrides(data, overrides))
