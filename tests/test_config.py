"""Config dataclasses: docs, typed loading, YAML."""

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from recon3d.core.config import dump_yaml, field_docs, from_dict, load_yaml, to_dict
from recon3d.core.errors import UserError


@dataclass
class Inner:
    size: float = 1.0
    """Edge length in metres."""


@dataclass
class Outer:
    name: str = "x"
    """The name."""
    mode: Literal["a", "b"] = "a"
    """Which mode."""
    inner: Inner = field(default_factory=Inner)
    """A nested section."""
    items: list[Inner] = field(default_factory=list)
    """A list of sections."""
    opt: Optional[int] = None
    """Optional count."""


def test_field_docs():
    assert field_docs(Outer)["mode"] == "Which mode."
    assert field_docs(Inner) == {"size": "Edge length in metres."}


def test_round_trip():
    cfg = Outer(name="y", mode="b", inner=Inner(2.0), items=[Inner(3.0)], opt=4)
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data, match",
    [
        ({"nme": "x"}, "unknown key"),
        ({"mode": "c"}, "not one of"),
        ({"inner": {"size": "big"}}, r"inner\.size: expected a number"),
        ({"items": 3}, "expected a list"),
    ],
)
def test_errors_name_the_key(data, match):
    with pytest.raises(UserError, match=match):
        from_dict(Outer, data)


def test_dump_and_load_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(dump_yaml(Outer()))
    assert from_dict(Outer, load_yaml(p)) == Outer()
    (tmp_path / "bad.yaml").write_text("a: [")
    with pytest.raises(UserError, match="invalid YAML at line"):
        load_yaml(tmp_path / "bad.yaml")
