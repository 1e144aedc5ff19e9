"""The package layout: dependencies point one way (see :mod:`layout_check` for the rules).

The real ``recon3d/`` must obey every rule; tiny fake packages written to ``tmp_path`` show that the
checker reports each kind of violation (and no false cycle for a package re-exporting its modules).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from layout_check import LAYERS, MAX_LINES, check_package, scan  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def make_package(root: Path, files: dict[str, str]) -> Path:
    """Write a package ``root/pkg`` from ``{relative path: source}``; ``__init__.py`` files are added."""
    pkg = root / "pkg"
    for rel, source in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    for folder in [pkg, *(p for p in pkg.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    return pkg


def kinds(violations: list[str]) -> list[str]:
    return sorted({v.split(":", 1)[0] for v in violations})


# ------------------------------------------------------------------------------ the real tree
def test_recon3d_obeys_the_layout():
    violations = check_package(REPO / "recon3d")
    assert violations == [], "\n".join(violations)


def test_the_scan_sees_the_real_imports():
    """Guard against a checker that passes because it finds nothing: known edges of the real tree."""
    modules = scan(REPO / "recon3d")
    imports = {name: {target for target, _ in m.imports} for name, m in modules.items()}
    assert "recon3d.geometry.reprojection" in imports["recon3d.sfm.report"]  # function-local import
    assert "recon3d.geometry.reprojection" in imports["recon3d.evaluate.report"]
    assert "recon3d.io.cameras" in imports["recon3d.calibrate.undistort"]
    assert "recon3d.geometry" in imports["recon3d.geometry.camera"]  # `from recon3d import geometry`
    assert sum(len(v) for v in imports.values()) > 300


def test_layers_name_every_stage_in_order():
    assert LAYERS.index("core") < LAYERS.index("geometry") < LAYERS.index("io") < LAYERS.index("sfm")
    assert LAYERS.index("sfm") < LAYERS.index("evaluate") < LAYERS.index("splat") < LAYERS.index("nerf")
    assert LAYERS.index("nerf") < LAYERS.index("render") < LAYERS.index("viewer") < LAYERS.index("pipeline")
    assert LAYERS[-1] == "cli"
    present = {p.name for p in (REPO / "recon3d").iterdir() if (p / "__init__.py").is_file()}
    present |= {p.stem for p in (REPO / "recon3d").glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert present <= set(LAYERS)


# ------------------------------------------------------------------------------ fake packages
def test_a_clean_fake_package_has_no_violation(tmp_path):
    """Relative imports, function-local imports, `from pkg import module`, and a package `__init__`
    that re-exports its own modules (which import each other through it): no violation, no cycle."""
    pkg = make_package(tmp_path, {
        "core/errors.py": "class UserError(Exception):\n    pass\n",
        "geometry/__init__.py": "from pkg.geometry.transforms import rotate\n",
        "geometry/transforms.py": "def rotate(x):\n    return x\n",
        "geometry/camera.py": "from pkg import geometry\nfrom .transforms import rotate\n",
        "io/cameras.py": "from ..core.errors import UserError\nfrom pkg.geometry import camera\n",
        "sfm/__init__.py": "from pkg.sfm.pipeline import run\n",
        "sfm/pipeline.py": "from pkg.sfm import report\n\ndef run():\n    from pkg.io import cameras\n",
        "sfm/report.py": "import pkg.geometry.camera\n",
        "splat/train.py": "from pkg.sfm import run\n",
        "nerf/train.py": "from pkg.sfm.pipeline import run\n",
        "render/path.py": "from pkg.nerf import train\nfrom pkg.splat import train as t2\n",
        "pipeline.py": "from pkg.render import path\nfrom pkg import __version__\n",
        "cli/run.py": "import pkg.pipeline\n",
        "__main__.py": "from pkg.cli import run\n",
        "__init__.py": "__version__ = '0'\n",
    })
    assert check_package(pkg) == []


def test_a_cycle_is_reported(tmp_path):
    """The acceptance example: two modules of one stage importing each other, one inside a function."""
    pkg = make_package(tmp_path, {
        "sfm/a.py": "from pkg.sfm.b import g\n\ndef f():\n    return g()\n",
        "sfm/b.py": "def g():\n    from pkg.sfm.a import f\n    return f\n",
    })
    violations = check_package(pkg)
    assert kinds(violations) == ["cycle"]
    assert "pkg.sfm.a -> pkg.sfm.b -> pkg.sfm.a" in violations[0]


def test_a_longer_cycle_with_relative_imports_is_reported(tmp_path):
    pkg = make_package(tmp_path, {
        "io/a.py": "from . import b\n",
        "io/b.py": "from .c import x\n",
        "io/c.py": "x = 1\n\ndef f():\n    from .a import b\n",
    })
    violations = check_package(pkg)
    assert kinds(violations) == ["cycle"]
    assert all(m in violations[0] for m in ("pkg.io.a", "pkg.io.b", "pkg.io.c"))


def test_a_cycle_through_a_package_init_is_reported(tmp_path):
    """Importing `pkg.sfm.feat.plain` from outside `pkg.sfm.feat` runs `feat/__init__.py` first: its imports count."""
    pkg = make_package(tmp_path, {
        "sfm/feat/__init__.py": "from pkg.sfm.feat.run import go\n",
        "sfm/feat/run.py": "def go():\n    pass\n",
        "sfm/feat/plain.py": "z = 1\n",
        "sfm/user.py": "from pkg.sfm.feat.plain import z\n",
    })
    assert check_package(pkg) == []
    (pkg / "sfm" / "feat" / "run.py").write_text("def go():\n    from pkg.sfm.user import z\n")
    violations = check_package(pkg)
    assert kinds(violations) == ["cycle"]
    assert "pkg.sfm.feat -> pkg.sfm.feat.run -> pkg.sfm.user -> pkg.sfm.feat" in violations[0]


def test_a_stage_importing_a_later_stage_is_reported(tmp_path):
    pkg = make_package(tmp_path, {
        "evaluate/report.py": "def f():\n    pass\n",
        "sfm/mapping.py": "def f():\n    from ..evaluate import report\n",  # function-local, relative
        "io/dataset.py": "from pkg import sfm\n",  # a subpackage imported from the root
    })
    violations = check_package(pkg)
    assert kinds(violations) == ["layer"]
    assert any("pkg.sfm.mapping (line 2) imports pkg.evaluate.report" in v for v in violations)
    assert any("pkg.io.dataset (line 1) imports pkg.sfm" in v for v in violations)


def test_the_layers_yet_to_come_are_ordered(tmp_path):
    """`render/` and `pipeline.py` (being added elsewhere) have their place: lower ones may not use them."""
    pkg = make_package(tmp_path, {
        "render/frames.py": "from pkg import pipeline\n",
        "pipeline.py": "x = 1\n",
        "viewer/app.py": "from pkg.cli import main\n",
        "cli/main.py": "main = 1\n",
    })
    violations = check_package(pkg)
    assert kinds(violations) == ["layer"] and len(violations) == 2


@pytest.mark.parametrize("src, dst", [("splat", "nerf"), ("nerf", "splat")])
def test_a_backend_importing_the_other_is_reported(tmp_path, src, dst):
    pkg = make_package(tmp_path, {
        f"{dst}/model.py": "x = 1\n",
        f"{src}/train.py": f"import pkg.{dst}.model\n",
    })
    violations = check_package(pkg)
    assert kinds(violations) == ["backend"]


def test_geometry_importing_core_is_reported(tmp_path):
    pkg = make_package(tmp_path, {
        "core/errors.py": "class UserError(Exception):\n    pass\n",
        "core/atomic.py": "def write(path):\n    pass\n",
        "geometry/camera.py": "from pkg.core.errors import UserError\n\ndef save():\n    from pkg.core import atomic\n",
    })
    violations = check_package(pkg)
    assert kinds(violations) == ["pure"] and len(violations) == 2


def test_core_importing_another_layer_or_the_root_is_reported(tmp_path):
    pkg = make_package(tmp_path, {
        "__init__.py": "__version__ = '0'\n",
        "geometry/t.py": "x = 1\n",
        "core/config.py": "from pkg.geometry.t import x\n\ndef v():\n    from pkg import __version__\n",
    })
    violations = check_package(pkg)
    assert kinds(violations) == ["pure"] and len(violations) == 2


def test_a_module_over_the_limit_is_reported(tmp_path):
    pkg = make_package(tmp_path, {
        "io/long.py": "x = 1\n" * (MAX_LINES + 1),
        "io/fits.py": "x = 1\n" * MAX_LINES,
    })
    violations = check_package(pkg)
    assert kinds(violations) == ["size"] and len(violations) == 1 and "pkg.io.long" in violations[0]


def test_an_underscored_name_imported_across_modules_is_reported(tmp_path):
    pkg = make_package(tmp_path, {
        "core/atomic.py": "def _tmp():\n    pass\n\ndef write():\n    return _tmp()\n",
        "io/a.py": "from pkg.core.atomic import _tmp\n",
        "io/b.py": "from pkg.core import atomic\n\ndef f():\n    return atomic._tmp()\n",
        "io/c.py": "from pkg.core.atomic import write\nfrom pkg import __version__\n",  # fine: public, dunder
    })
    violations = check_package(pkg)
    assert kinds(violations) == ["private"] and len(violations) == 2
    assert any(v.startswith("private: pkg.io.a") for v in violations)
    assert any(v.startswith("private: pkg.io.b") for v in violations)


def test_a_subpackage_outside_the_layers_is_reported(tmp_path):
    pkg = make_package(tmp_path, {"extras/thing.py": "x = 1\n"})
    assert kinds(check_package(pkg)) == ["unknown"]


def test_an_import_of_a_module_that_is_not_there_is_reported(tmp_path):
    """A stale path left by a move, in a function no test calls."""
    pkg = make_package(tmp_path, {
        "geometry/camera.py": "x = 1\n",
        "sfm/run.py": "def f():\n    from pkg.camera import Camera\n    from pkg.geometry.camera import x\n",
    })
    violations = check_package(pkg)
    assert violations == ["missing: pkg.sfm.run (line 2) imports pkg.camera, which does not exist"]
