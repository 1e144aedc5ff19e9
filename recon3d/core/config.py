"""Config dataclasses: field docs, dict/YAML round trips, the command line, the resolved config.

Every stage's config is a dataclass with a docstring string under each field (as in
nerfstudio); :func:`field_docs` reads them so CLI help and saved YAML carry the same
text. :func:`save_config` writes the resolved config beside a stage's output.

The command line is generated from the fields (:func:`add_config_arguments`): one flag per
field (``flag`` metadata of :func:`option` keeps a historical name, otherwise ``--section.name``),
help from its docstring, choices from ``Literal``, type and range from the annotation and
metadata, plus ``--config FILE.yaml`` (a saved resolved config) and ``--set key.sub=value``.
:func:`config_from_args` builds the config back; precedence is
defaults < ``--config`` < explicit flags < ``--set``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from recon3d.core.atomic import atomic_write_text
from recon3d.core.atomic import (
    to_dict as to_dict,  # one converter for configs and plain data
)
from recon3d.core.errors import UserError

T = TypeVar("T")


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass, ``{field name: doc}``."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(getattr(nxt, "value", None), ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except (UserError, TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise UserError(f"{where}: value {value!r} fits none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        return [_convert(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 5e-3 (no dot) as text
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected text, got {value!r}")
        return value
    if tp is Path:
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from a plain dict, checking names and types.

    Unknown keys and wrong types raise :class:`UserError` naming the key path.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    for f in dataclasses.fields(cls):
        if f.name in kwargs:
            value = kwargs[f.name]
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                check_range(f, item, f"{where}.{f.name}" + (f"[{i}]" if isinstance(value, list) else ""))
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from None


def replace(cfg: T, **changes: Any) -> T:
    """Copy of a config with some fields changed (``None`` values are ignored)."""
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})


def dump_yaml(cfg: Any) -> str:
    """YAML text of a config, each field (nested sections' too) preceded by its doc as a comment."""
    lines = [f"# {type(cfg).__name__} (resolved by recon3d)"]
    if dataclasses.is_dataclass(cfg):
        _yaml_lines(cfg, "", lines)
    else:
        lines.append(yaml.safe_dump(to_dict(cfg), sort_keys=False, width=100).rstrip())
    return "\n".join(lines) + "\n"


def _yaml_lines(cfg: Any, pad: str, lines: list[str]) -> None:
    docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in docs:
            lines.append(f"{pad}# {f.name}: {docs[f.name]}")
        if dataclasses.is_dataclass(value) and dataclasses.fields(value):
            lines.append(f"{pad}{f.name}:")
            _yaml_lines(value, pad + "  ", lines)
            continue
        data = to_dict(value)
        flow = None if isinstance(data, (dict, list)) and data else False
        text = yaml.safe_dump({f.name: data}, sort_keys=False, default_flow_style=flow, width=100).rstrip()
        lines.extend(pad + line for line in text.splitlines())


def save_config(cfg: Any, path: Path) -> Path:
    """Write the resolved config as YAML at ``path`` atomically; returns the path."""

    return atomic_write_text(Path(path), dump_yaml(cfg))


def load_yaml(path: Path) -> dict:
    """Read a YAML mapping with one-line errors for missing files and bad syntax."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; give the path of a YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path}: invalid YAML{at}: {getattr(exc, 'problem', exc)}; fix the file and retry") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file; give a YAML file") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a YAML mapping at the top level")
    return data


# ------------------------------------------------------------------------------ command line
def option(default: Any = dataclasses.MISSING, *, flag: str | None = None, min: float | None = None,
           max: float | None = None, metavar: str | None = None, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with command-line metadata.

    Args:
        default: the default value (or ``default_factory``).
        flag: the option name on the command line (e.g. ``--max-features``); default ``--section.name``.
        min, max: the valid range (inclusive), checked on the command line, in ``--set`` and in YAML.
        metavar: how ``--help`` names the value.
    """
    meta = {k: v for k, v in (("flag", flag), ("min", min), ("max", max), ("metavar", metavar)) if v is not None}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def check_range(f: dataclasses.Field, value: Any, where: str) -> None:
    """:class:`UserError` when ``value`` lies outside the ``min``/``max`` metadata of field ``f``."""
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if value != value and (lo is not None or hi is not None):
        raise UserError(f"{where}: nan is not a number; give a value")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f"at least {lo}" if hi is None else (f"at most {hi}" if lo is None else f"between {lo} and {hi}")
        raise UserError(f"{where}: {value} is out of range; use a value {span}")


def validate(config: Any, where: str = "") -> Any:
    """Check every field of a (nested) config dataclass against its declared range and choices.

    The ``min``/``max`` metadata of :func:`option` (also on each number of a list field) and the
    values of a ``Literal`` annotation are the one statement of what a field accepts; the command
    line, ``--set`` and YAML check them as they parse, and every stage calls this first, so a config
    built in Python is checked before any work too. Returns ``config``.

    Raises:
        UserError: one line naming the first field out of range, e.g. ``steps: -5 is out of range; ...``.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, name = getattr(config, f.name), where + f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, name + ".")
            continue
        tp = _flag_type(hints[f.name])
        if typing.get_origin(tp) is typing.Literal and value not in typing.get_args(tp):
            raise UserError(f"{name}: {value!r} is not one of {', '.join(map(repr, typing.get_args(tp)))}")
        for i, item in enumerate(value if isinstance(value, (list, tuple)) else [value]):
            check_range(f, item, name if not isinstance(value, (list, tuple)) else f"{name}[{i}]")
    return config


def _flag_type(tp: Any) -> Any:
    """The annotation without ``Optional``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def _ranged(conv: Callable, f: dataclasses.Field, flag: str) -> Callable:
    def parse(text: str):
        try:
            value = conv(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if conv is int else 'a number'}, got {text!r}") from None
        try:
            check_range(f, value, flag)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
        return value
    parse.__name__ = conv.__name__
    return parse


def _yaml_mapping(text: str) -> dict:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"invalid YAML: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML mapping such as '{{key: 1}}', got {text!r}")
    return value


DEST = "config:"
"""Prefix of the argparse ``dest`` of generated flags (``config:section.field``)."""


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, title: str = "options",
                         overrides: bool = True, skip: tuple[str, ...] = (), **override_help: str) -> None:
    """Add one flag per field of config dataclass ``cls`` (nested dataclasses: one group each).

    Flags default to "not given", so :func:`config_from_args` can tell explicit flags from
    defaults. With ``overrides``, also adds ``--config`` and ``--set`` (:func:`add_override_arguments`,
    which ``override_help`` goes to). ``skip``: dotted fields or sections that get no flag here
    (a command's own flag sets them, or another config's flags already do; ``--set`` still can).
    """
    _add_fields(parser, cls, "", title, None, tuple(skip))
    if overrides:
        add_override_arguments(parser, **override_help)


def _add_fields(parser: argparse.ArgumentParser, cls: type, prefix: str, title: str, description: str | None,
                skip: tuple[str, ...] = ()) -> None:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    group = parser.add_argument_group(title, description)
    nested = []
    for f in dataclasses.fields(cls):
        tp = _flag_type(hints[f.name])
        path = prefix + f.name
        if path in skip:
            continue
        if dataclasses.is_dataclass(tp):
            nested.append((f, tp, path))
            continue
        flag = f.metadata.get("flag") or "--" + path.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        doc = docs.get(f.name, "").replace("%", "%%")
        shown = f"{default:g}" if isinstance(default, float) else ("''" if default == "" else default)
        kw: dict[str, Any] = {"dest": DEST + path, "default": argparse.SUPPRESS,
                              "help": f"{doc} (default: {shown})".strip()}
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is typing.Literal:
            choices = list(typing.get_args(tp))
            kw.update(choices=choices, type=type(choices[0]))
        elif tp in (int, float):
            kw.update(type=_ranged(tp, f, flag), metavar="N" if tp is int else "X")
        elif tp in (str, Path):
            kw.update(type=str, metavar="TEXT")
        elif tp is dict or typing.get_origin(tp) is dict:
            kw.update(type=_yaml_mapping, metavar="YAML")
        else:
            continue  # lists and other shapes: --set only
        if "metavar" in f.metadata:
            kw["metavar"] = f.metadata["metavar"]
        group.add_argument(flag, **kw)
    for f, tp, path in nested:
        _add_fields(parser, tp, path + ".", path, docs.get(f.name), skip)


def add_override_arguments(parser: argparse.ArgumentParser, example: str = "key=value",
                           saved: str = "the config.yaml a run wrote beside its output") -> None:
    """``--config FILE.yaml`` and ``--set KEY=VALUE`` (repeatable); read them with :func:`config_from_args`.

    Args:
        example: a ``--set`` example for the help.
        saved: what ``--config`` reads, for the help.
    """
    g = parser.add_argument_group("config files and overrides",
                                  "precedence: defaults < --config < explicit flags < --set")
    g.add_argument("--config", type=Path, metavar="FILE.yaml", dest=DEST + "file",
                   help=f"start from a saved config ({saved}), e.g. to repeat a run")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest=DEST + "set",
                   help=f"set any config field (repeatable; value in YAML; nested fields dotted), e.g. --set {example}")


def config_from_args(cls_or_base: Any, args: argparse.Namespace) -> Any:
    """The config from parsed arguments: defaults < ``--config`` < explicit flags < ``--set``.

    Args:
        cls_or_base: the config class (its defaults), or a config instance to start from (a preset).
        args: from a parser set up by :func:`add_config_arguments` / :func:`add_override_arguments`.
    """
    values = vars(args)
    flags = {k[len(DEST):]: v for k, v in values.items()
             if k.startswith(DEST) and k not in (DEST + "file", DEST + "set")}
    return build_config(cls_or_base, values.get(DEST + "file"), flags, values.get(DEST + "set") or [])


def build_config(cls_or_base: Any, config_file: Path | str | None = None, flags: dict[str, Any] | None = None,
                 sets: list[str] = ()) -> Any:
    """A config from defaults (or a base config), a YAML file, ``{dotted path: value}`` and ``KEY=VALUE`` pairs."""
    cls = cls_or_base if isinstance(cls_or_base, type) else type(cls_or_base)
    data = to_dict(cls() if isinstance(cls_or_base, type) else cls_or_base)
    if config_file is not None:
        data = _merge(data, load_yaml(Path(config_file)))
        from_dict(cls, data, where=str(config_file))  # name the file in any error
    for path, value in (flags or {}).items():
        _set_path(cls, data, path, value, f"--{path}")
    for pair in sets:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise UserError(f"--set {key}: the value {text!r} is not valid YAML") from None
        _set_path(cls, data, key.strip(), value, f"--set {key.strip()}")
    return from_dict(cls, data, where="config")


def apply_overrides(config: T, pairs: list[str]) -> T:
    """``config`` with ``KEY=VALUE`` overrides (values parsed as YAML) applied; unknown keys are errors."""
    return build_config(config, sets=pairs)


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_path(cls: type, data: dict, key: str, value: Any, where: str) -> None:
    """Set ``data[a][b]... = value`` for a dotted ``key`` of config class ``cls``; a dict field takes
    the rest of the key as one entry (``mapping.pycolmap_options.mapper.init_max_error``)."""
    parts = key.split(".")
    tp, node = cls, data
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(tp)]
        if part not in names:
            section = ".".join(parts[:i]) or "the config"
            raise UserError(f"{where}: unknown field {part!r} in {section}; fields: {', '.join(names)}")
        ftp = _flag_type(typing.get_type_hints(tp)[part])
        if i == len(parts) - 1:
            node[part] = value
            return
        if dataclasses.is_dataclass(ftp):
            if not isinstance(node.get(part), dict):
                node[part] = {}
            tp, node = ftp, node[part]
        elif ftp is dict or typing.get_origin(ftp) is dict:
            node[part] = {**(node.get(part) or {}), ".".join(parts[i + 1:]): value}
            return
        else:
            raise UserError(f"{where}: {'.'.join(parts[:i + 1])} is a setting, not a section")
