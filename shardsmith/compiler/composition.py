"""Hydra's side of the config: where config files are found, overrides as users write them, and
Hydra's errors turned into one line that names the key and says what was expected.

Configs outside the package: ``--config-dir DIR`` adds ``DIR`` to the search path (as Hydra's own
flag does) and ``--config-name NAME`` picks the primary config; ``hydra.searchpath=[file:///DIR]``
adds directories whose groups (``DIR/pipeline/NAME.yaml``) ``pipeline=NAME`` then finds.

A single value where the schema wants a list (``output.format=parquet``) is read as a list of one.

>>> normalize_overrides(["output.format=parquet", "source.paths=[a, b]", "name=x"])
['output.format=[parquet]', 'source.paths=[a, b]', 'name=x']
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import warnings

from omegaconf import open_dict
from omegaconf.errors import ConfigKeyError, ConfigTypeError, OmegaConfBaseException, ValidationError

from shardsmith.errors import ConfigError, did_you_mean

# Keys whose schema type is a list: a single value given for one of them becomes a list of one.
LIST_KEYS = ("source.paths", "output.format", "plugins")
_TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "String": "a string", "Boolean": "true or false"}
_SCALAR_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def compose_omegaconf(main_dir: str, overrides: list[str], config_name: str = "config", extra_dir: str | None = None):
    """Compose the tree at ``main_dir`` (plus ``extra_dir``, as ``--config-dir`` adds it) with
    ``overrides``; the composed OmegaConf config without its ``hydra`` node. Errors: ConfigError."""
    with _initialized(main_dir, extra_dir) as hydra:
        cfg = _compose(hydra, overrides, config_name, for_run=False)
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


@contextlib.contextmanager
def hydra_for_run(main_dir: str, overrides: list[str], config_name: str, extra_dir: str | None, task_name: str):
    """Hydra set up as ``@hydra.main`` sets it up, and the config composed as its run composes it
    (the ``hydra`` node kept, Hydra's own logging configured): ``(hydra, cfg)``, for as long as the
    context lasts. Errors: ConfigError."""
    with _initialized(main_dir, extra_dir, task_name) as hydra:
        yield hydra, _compose(hydra, overrides, config_name, for_run=True)


def _compose(hydra, overrides: list[str], config_name: str, for_run: bool):
    from hydra.errors import HydraException  # lazy: workers import the compiler and never compose
    from hydra.types import RunMode  # lazy: as above

    overrides = normalize_overrides(overrides)
    check_syntax(overrides)
    check_search_path(overrides)
    try:
        with warnings.catch_warnings():
            # A missing hydra.searchpath entry is checked above; Hydra would only warn about it.
            warnings.filterwarnings("ignore", message=".* is not available", category=UserWarning)
            return hydra.compose_config(config_name=config_name, overrides=overrides, run_mode=RunMode.RUN,
                                        from_shell=for_run, with_log_configuration=for_run)
    except (HydraException, OmegaConfBaseException) as exc:
        raise hydra_error(exc) from None


@contextlib.contextmanager
def _initialized(main_dir: str, extra_dir: str | None, task_name: str = "shardsmith"):
    """Hydra set up as ``@hydra.main`` sets it up for ``--config-dir``: the package's tree first,
    the extra directory before the structured configs; Hydra's global state restored after."""
    from hydra._internal.hydra import Hydra  # lazy: as in _compose
    from hydra._internal.utils import create_config_search_path  # lazy: as above
    from hydra.core.config_search_path import SearchPathQuery  # lazy: as above
    from hydra.core.global_hydra import GlobalHydra  # lazy: as above
    from hydra.errors import HydraException  # lazy: as above
    from hydra.initialize import get_gh_backup, restore_gh_from_backup  # lazy: as above

    search_path = create_config_search_path(main_dir)
    if extra_dir is not None:
        search_path.prepend("command-line", f"file://{config_dir_arg(extra_dir)}", SearchPathQuery(provider="schema"))
    backup = get_gh_backup()
    try:
        GlobalHydra.instance().clear()
        try:
            hydra = Hydra.create_main_hydra2(task_name=task_name, config_search_path=search_path)
        except (HydraException, OmegaConfBaseException) as exc:
            raise hydra_error(exc) from None
        yield hydra
    finally:
        restore_gh_from_backup(backup)


def config_dir_arg(path: str, key: str = "--config-dir") -> str:
    """``--config-dir``'s directory as an absolute path; it must exist."""
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(full):
        raise ConfigError(f"no such config directory '{path}'", key)
    return full


def normalize_overrides(overrides: list[str]) -> list[str]:
    """Overrides with a single value for a list key written as a list of one (a sweep's values
    each as a list of one: ``output.format=parquet,webdataset`` -> ``[parquet],[webdataset]``)."""
    return [_as_list(o) for o in overrides]


def _as_list(override: str) -> str:
    head, sep, value = override.partition("=")
    if not sep or head.lstrip("+") not in LIST_KEYS or value.strip().startswith("[") or not value.strip():
        return override
    if "(" in value or "'" in value or '"' in value or "$" in value:
        return override  # a sweep function, a quoted or interpolated value: Hydra's to read
    return f"{head}=" + ",".join(f"[{v.strip()}]" for v in value.split(","))


def check_syntax(overrides: list[str]) -> None:
    """Each override must parse (Hydra's parser names no override when one of many does not)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser  # lazy: as in _compose
    from hydra.errors import HydraException  # lazy: as above

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_override(o)
        except HydraException as exc:
            raise ConfigError(f"cannot parse this override ({_first_line([exc])}): write key=value, +key=value or ~key",
                              o) from None


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """The override lists that a sweep (``-m``) must pass to be checked before its first job: every
    value of every swept key once, the other swept keys at their first value (as many lists as
    values, not as jobs). Sweeps that cannot be listed (``interval``, ``glob``) are left out.

    >>> sweep_variants(["a=1,2", "b=x", "c=3,4"])
    [['a=1', 'b=x', 'c=3'], ['a=2', 'b=x', 'c=3'], ['a=1', 'b=x', 'c=4']]
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser  # lazy: as in _compose
    from hydra.errors import HydraException  # lazy: as above

    check_syntax(overrides)
    choices = []
    for o in OverridesParser.create().parse_overrides(overrides):
        try:  # a swept key's overrides as Hydra's basic sweeper writes them
            values = [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() \
                else [o.input_line]
        except HydraException:
            values = []
        choices.append(values)
    first = [c[0] for c in choices if c]
    variants = [first]
    for i, values in enumerate(c for c in choices if c):
        variants += [first[:i] + [v] + first[i + 1:] for v in values[1:]]
    return variants


def check_search_path(overrides: list[str]) -> None:
    """Every local ``hydra.searchpath`` entry must be a directory (Hydra would only warn)."""
    for o in overrides:
        head, _, value = o.partition("=")
        if head.lstrip("+") != "hydra.searchpath":
            continue
        for entry in (e.strip().strip("'\"") for e in value.strip().strip("[]").split(",")):
            if entry and not entry.startswith("pkg://"):
                path = entry[len("file://"):] if entry.startswith("file://") else entry
                if not os.path.isdir(path):
                    raise ConfigError(f"no such config directory '{entry}'", "hydra.searchpath")


def hydra_error(exc: BaseException) -> ConfigError:
    """One line for Hydra's exception: the OmegaConf cause that names the key if there is one,
    a config group's options for a missing config, else the first line of the message."""
    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for e in chain:
        if getattr(e, "missing_cfg_file", None):
            return _missing_config(e)
        if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None):
            return omegaconf_error(e)
    return ConfigError(_first_line(chain))


def _missing_config(exc) -> ConfigError:
    group, _, name = exc.missing_cfg_file.rpartition("/")
    options = [o for o in exc.options or () if o != "schema"]
    if not group:  # the primary config (--config-name)
        return ConfigError(f"no config '{name}' in the config search path (--config-dir adds a directory)",
                           "--config-name")
    listed = ", ".join(options) if options else "none"
    return ConfigError(f"no config '{name}' in group '{group}'{did_you_mean(name, options)}; available: {listed} "
                       f"(more with --config-dir DIR or hydra.searchpath=[file:///DIR])", group)


def omegaconf_error(exc) -> ConfigError:
    """OmegaConf's error as one line naming the key: an unknown key with a close name, or the
    value that does not fit the key's type."""
    key = getattr(exc, "full_key", None) or "config"
    text = _first_line([exc])
    if isinstance(exc, (ConfigKeyError, AttributeError)) and "not in" in text:
        fields = _fields(getattr(exc, "object_type", None))
        name = key.rsplit(".", 1)[-1]
        hint = did_you_mean(name, fields) or (f" (expected one of: {', '.join(fields)})" if fields else "")
        return ConfigError(f"unknown key{hint}", key)
    if isinstance(exc, (ValidationError, ConfigTypeError)):
        return ConfigError(_expected(text), key)
    return ConfigError(text, key)


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []


def _expected(text: str) -> str:
    """OmegaConf's type complaint as 'expected <what>, got <value>'."""
    m = re.match(r"Value '(.*)' of type '.*' could not be converted to (\w+)", text)
    if m:
        return f"expected {_TYPE_WORDS.get(m.group(2), m.group(2))}, got {m.group(1)!r}"
    m = re.match(r"Value '(.*)' is not a valid bool", text)
    if m:
        return f"expected true or false, got {m.group(1)!r}"
    m = re.match(r"Invalid value assigned: (\w+) is not a ListConfig", text)
    if m:
        return f"expected a list like [a, b], got a {_type_word(m.group(1))}"
    m = re.match(r"Cannot assign (\w+) to Dict", text) or re.match(r"Cannot merge DictConfig with (\w+)", text)
    if m:
        return f"expected a mapping like {{a: 1}}, got a {_type_word(m.group(1))}"
    m = re.match(r"Invalid type assigned: (\w+) is not a subclass of (\w+)\. value: (.*)", text)
    if m:  # a whole section (output=3) or a list's item (source.paths=[null]) of the wrong type
        got, want, value = m.groups()
        what = "a section of keys like {key: value}" if want.endswith("Config") else _SCALAR_WORDS.get(want, want)
        return f"expected {what}, got " + ("null" if got == "NoneType" else f"a {_type_word(got)} ({value})")
    if re.match(r"field '.*' is not Optional", text):
        return "expected a value, got null"
    return text


def _type_word(name: str) -> str:
    return {"str": "string", "int": "number", "float": "number", "bool": "boolean", "ListConfig": "list",
            "DictConfig": "mapping", "NoneType": "null"}.get(name, name)


def _first_line(chain) -> str:
    for e in chain:
        for line in str(e).splitlines():
            line = line.strip()
            if line and not line.startswith(("full_key:", "object_type", "reference_type", "See https://")):
                return line
    return type(chain[0]).__name__ if chain else "invalid config"
