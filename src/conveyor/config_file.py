"""Reading the configuration file: YAML without surprises, validated as a whole.

`load_config(path)` reads the YAML, applies `CONVEYOR_*` environment overrides and
returns a frozen `Config`, or raises `ConfigError` listing every problem with its key
path (`services.redis3.build.repos[1]: unknown repo 'dyliu'`), all in one run.
"""

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from conveyor.config_checks import cross_reference_problems
from conveyor.settings import Config, EnvOverrides, format_loc


class ConfigError(Exception):
    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: invalid configuration\n" + "\n".join(self.problems))


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a config that says a thing twice is an
    error. Every such key is noted (not only the first), so one run reports them all."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            loader.duplicates.append(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return dict(loader.construct_pairs(node, deep=True))


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _load_yaml(text: str) -> tuple[Any, list[str]]:
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


def _pydantic_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = format_loc(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}" if loc else msg)
    return problems


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Relative data_dir and SQLite paths are relative to the config file, not the cwd."""
    data_dir = Path(str(raw.get("data_dir", ".conveyor")))
    raw["data_dir"] = data_dir if data_dir.is_absolute() else base / data_dir
    url = raw.get("database_url")
    if isinstance(url, str) and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        raw["database_url"] = f"sqlite:///{base / url.removeprefix('sqlite:///')}"


def parse_config(text: str, source: str = "<config>", base: Path | None = None) -> Config:
    """Validate the YAML `text`; paths in it are relative to `base`."""
    try:
        raw, duplicates = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the file must hold a mapping of keys (public_url, repos, …)"])
    overrides = EnvOverrides()
    for key in ("database_url", "public_url", "broker_url"):
        value = getattr(overrides, key)
        if value is not None:
            raw[key] = value
    _resolve_paths(raw, (base or Path.cwd()).resolve())
    cfg, problems, set_aside = _validate(raw)
    if cfg is not None:
        # What refers to a part set aside as broken is not reported again.
        across = cross_reference_problems(cfg)
        problems += [p for p in across if not p.endswith(tuple(set_aside))]
    if duplicates or problems or cfg is None:
        raise ConfigError(source, duplicates + problems)
    return cfg


_NAMED = {"repos": "repo", "services": "service", "envs": "env", "workflows": "workflow"}


def _validate(raw: dict[str, Any]) -> tuple[Config | None, list[str], list[str]]:
    """The config, what is wrong with its values, and how the parts set aside would be
    referred to ("unknown service 'x'"). What is wrong is set aside and the rest checked
    again, so the checks across parts run in the same pass: one run of `check-config`
    lists every problem."""
    try:
        return Config.model_validate(raw), [], []
    except ValidationError as exc:
        problems = _pydantic_problems(exc)
        errors = exc.errors()
    data = copy.deepcopy(raw)
    set_aside: list[str] = []
    for _ in range(50):  # each round removes at least one broken part
        for err in errors:
            loc = err["loc"][:-1] if err["type"] == "missing" else err["loc"]
            _remove(data, loc)
            if len(loc) >= 2 and loc[0] in _NAMED:
                set_aside.append(f"unknown {_NAMED[str(loc[0])]} {loc[1]!r}")
            if loc and isinstance(loc[-1], int):
                break  # the next errors' indices in that list have moved: check again
        try:
            return Config.model_validate(data), problems, set_aside
        except ValidationError as exc:
            errors = exc.errors()
    return None, problems, set_aside


def _remove(data: Any, loc: tuple[int | str, ...]) -> None:
    """Delete the part of `data` at `loc`, if it is there."""
    if not loc:
        return
    for part in loc[:-1]:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(data, dict):
        data.pop(loc[-1], None)
    elif isinstance(data, list) and isinstance(loc[-1], int) and loc[-1] < len(data):
        del data[loc[-1]]


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    cfg = parse_config(text, source=str(path), base=path.parent)
    cfg._source = path.resolve()
    return cfg
