"""Shared fixtures: synthetic scenes with exact ground truth, and the real photo sets.

Scenes are rendered once per test session. Set ``RECON3D_TEST_CACHE=/some/dir`` to keep
renders between runs (they are deterministic; a changed spec renders again).

Under pytest-xdist (``scripts/test.sh`` runs two workers) the expensive session fixtures (the
rendered scenes, the CPU splat run, the checkerboard calibration) are built once for all workers:
the first worker to need one builds it in a folder shared by the workers, under a file lock, and
the others wait for it and read it (:func:`shared_once`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from recon3d.core.workspace import Workspace
from recon3d.scenes import load_spec, render_scene_cached, scene_workspace

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return False


HEAVY_FIRST = ["test_sfm_registration.py", "test_sfm.py", "test_splat.py", "test_calibrate.py", "test_soak.py",
               "test_viewer_browser.py", "test_cluster.py", "test_nerf_train.py", "test_sfm_hierarchical.py",
               "test_splat_distributed.py", "test_viewer_live.py"]
"""Test files run first, longest first (measured in CI, 2 workers: each 80-400 s), so that the two xdist
workers finish together; the rest in name order. scripts/test.sh passes --no-loadscope-reorder: xdist
otherwise orders the files by their number of tests, which left the 96-view hierarchical ring and the
soak for last on one worker."""


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order within a rank
    if not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


def shared_once(tmp_path_factory, name: str, build, folder: Path | None = None) -> Path:
    """``build(folder)`` once per test run, whatever the number of xdist workers; returns the folder.

    ``folder`` defaults to ``name`` in a folder all workers of this run share (one worker: its own
    temporary folder). The first caller builds under a file lock and leaves a ``.built`` mark there
    (for this run only: a kept ``RECON3D_TEST_CACHE`` is checked again by the next run); the others
    wait on the lock and find the mark. A build that failed leaves no mark: the next caller
    builds again (and fails the same way, in its own test).
    """
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    run = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"  # this run's, for all workers
    run.mkdir(parents=True, exist_ok=True)
    folder = folder or run / name
    mark = run / f".{name}.built"
    with FileLock(str(run / f".{name}.lock")):
        if not mark.exists():
            build(folder)
            mark.touch()
    return folder


def _rendered(tmp_path_factory, name: str) -> Path:
    cache = os.environ.get("RECON3D_TEST_CACHE")
    return shared_once(tmp_path_factory, f"scene-{name}", lambda root: render_scene_cached(load_spec(name), root),
                       Path(cache) / name if cache else None)


@pytest.fixture(scope="session")
def orbit_scene(tmp_path_factory) -> Path:
    """The rendered ``orbit`` scene (read-only: copy it before writing into it)."""
    return _rendered(tmp_path_factory, "orbit")


@pytest.fixture(scope="session")
def facade_scene(tmp_path_factory) -> Path:
    return _rendered(tmp_path_factory, "facade")


@pytest.fixture(scope="session")
def sparse_ring_scene(tmp_path_factory) -> Path:
    return _rendered(tmp_path_factory, "sparse_ring")


@pytest.fixture(scope="session")
def lowtex_scene(tmp_path_factory) -> Path:
    return _rendered(tmp_path_factory, "lowtex")


@pytest.fixture(scope="session")
def narrow_scene(tmp_path_factory) -> Path:
    return _rendered(tmp_path_factory, "narrow")


@pytest.fixture(scope="session")
def checkerboard_scene(tmp_path_factory) -> Path:
    return _rendered(tmp_path_factory, "checkerboard")


@pytest.fixture(scope="session")
def stereo_scene(tmp_path_factory) -> Path:
    return _rendered(tmp_path_factory, "stereo")


@pytest.fixture
def orbit_ws(orbit_scene, tmp_path) -> Workspace:
    """A private copy of the orbit scene as a workspace with the true model in ``sparse/0``
    (module-scoped fixtures make theirs with :func:`recon3d.scenes.scene_workspace`)."""
    return scene_workspace(orbit_scene, tmp_path / "orbit_ws")


@pytest.fixture(scope="session")
def splat_cpu_ws(orbit_scene, tmp_path_factory) -> Workspace:
    """orbit (160 x 120) trained on CPU by ``python -m recon3d train --method splat-cpu`` (the CPU
    acceptance run), once per session: the splat tests and the browser tests read it (do not write into it)."""
    import subprocess
    import sys

    def build(folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        ws = scene_workspace(orbit_scene, folder / "orbit")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.run([sys.executable, "-m", "recon3d", "train", str(ws.root), "--device", "cpu",
                               "--method", "splat-cpu"], env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "splat: done" in proc.stdout and "test PSNR" in proc.stdout

    ws = Workspace(shared_once(tmp_path_factory, "splat-cpu", build) / "orbit")
    return ws


@pytest.fixture(scope="session")
def checkerboard_camera_json(checkerboard_scene, tmp_path_factory) -> Path:
    """camera.json written by ``recon3d calibrate`` on the checkerboard scene (once per session)."""
    from recon3d.cli import main

    def build(folder: Path) -> None:
        rc = main(["calibrate", str(checkerboard_scene / "images"), "--board", "9x6", "--square", "0.025",
                   "-o", str(folder / "camera.json")])
        assert rc == 0

    out = shared_once(tmp_path_factory, "calib", build) / "camera.json"
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (the real photo sets); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real photo sets not found at {SHARED_DATA}")
    return SHARED_DATA


# ------------------------------------------------------------------------------------ viewer
@pytest.fixture
def splat_ws(orbit_ws) -> Workspace:
    """``orbit_ws`` plus ``splat/point_cloud.ply`` (the true points as splats) and a small ``reports/sfm.json``."""
    from helpers.viewer import add_splats_and_reports

    return add_splats_and_reports(orbit_ws)


@pytest.fixture
def gt_splats(orbit_ws):
    """Isotropic splats at ``orbit_ws``'s true points, with their colours (:class:`recon3d.io.gaussians_ply.Splats`)."""
    from helpers.viewer import gt_splats as make

    return make(orbit_ws)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through Playwright (skips when either is missing)."""
    from helpers.viewer import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package to run the browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the Python playwright package is not installed (pip install playwright; no browser download needed)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()
