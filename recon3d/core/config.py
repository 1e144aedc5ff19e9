"""Config dataclasses: field docs, dict/YAML round trips, and saving the resolved config.

Every stage's config is a dataclass with a docstring string under each field (as in
nerfstudio); :func:`field_docs` reads them so CLI help and saved YAML carry the same
text. :func:`save_config` writes the resolved config beside a stage's output.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

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
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from None


def replace(cfg: T, **changes: Any) -> T:
    """Copy of a config with some fields changed (``None`` values are ignored)."""
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})


def dump_yaml(cfg: Any) -> str:
    """YAML text of a config, each top-level field preceded by its doc as a comment."""
    data = to_dict(cfg)
    docs = field_docs(type(cfg)) if dataclasses.is_dataclass(cfg) else {}
    lines = [f"# {type(cfg).__name__} (resolved by recon3d)"]
    for key, value in data.items():
        if key in docs:
            lines.append(f"# {key}: {docs[key]}")
        flow = None if isinstance(value, (dict, list)) and value else False
        lines.append(yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=flow, width=100).rstrip())
    return "\n".join(lines) + "\n"


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
