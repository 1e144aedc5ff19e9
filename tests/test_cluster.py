"""SfM through a real two-node Ray cluster on this machine (``recon3d sfm --cluster ADDRESS``).

One cluster for the module (a head and one more node, one CPU each, ``ray.cluster_utils.Cluster``),
twelve views of the orbit scene. The cluster run must equal the single-machine run (features,
verified pairs, registered photos, poses); workers killed by pid during extraction and matching
and a driver killed during matching must not change the result; bad addresses and bad nodes are
one line and exit 2 before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recon3d.cli import main
from recon3d.core.cluster import ClusterOptions
from recon3d.core.workspace import Workspace
from recon3d.sfm.config import SfmConfig
from recon3d.sfm.match import pair_stats
from recon3d.sfm.pipeline import run_sfm

REPO = Path(__file__).resolve().parents[1]
VIEWS = [f"view_{i:03d}.png" for i in range(12)]  # neighbours 15 degrees apart
FLAGS = ["--max-features", "2048"]


def _config() -> SfmConfig:
    config = SfmConfig()
    config.extraction.max_num_features = 2048
    return config


@pytest.fixture(scope="module")
def photos(orbit_scene, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cluster") / "photos"
    out.mkdir()
    for name in VIEWS:
        shutil.copy(orbit_scene / "images" / name, out / name)
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node and one more node on this machine, one CPU each."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 << 20,
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1, object_store_memory=80 << 20)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="module")
def single(photos, tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("single") / "ws")
    return ws, run_sfm(ws, photos, _config()).report


@pytest.fixture(scope="module")
def clustered(photos, ray_cluster, tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("clustered") / "ws")
    # photos shipped through the object store here; the CLI runs below read them from the shared path
    return ws, run_sfm(ws, photos, _config(), cluster=ClusterOptions(ray_cluster.address, ship_images=True)).report


def _same_database(a: Path, b: Path) -> None:
    sa, sb = pair_stats(a), pair_stats(b)
    assert sa.names == sb.names
    np.testing.assert_array_equal(sa.keypoints, sb.keypoints)
    np.testing.assert_array_equal(sa.matches, sb.matches)
    np.testing.assert_array_equal(sa.inliers, sb.inliers)


def test_sift_of_a_downscaled_photo_equals_pycolmap_extraction(orbit_scene, tmp_path):
    """The workers' SIFT (a Bitmap downscaled as COLMAP does, keypoints scaled back) gives pycolmap's own
    features bit for bit; 640x480 at most 333 px is 333x250 (249.75 rounded, not truncated)."""
    import pycolmap

    from recon3d.sfm.cluster import sift_of_bitmap
    from recon3d.sfm.extract import extraction_options

    config = _config().extraction
    config.max_image_size = 333
    ext = extraction_options(config, num_threads=1)
    db_path, names = tmp_path / "database.db", VIEWS[:2]
    pycolmap.Database.open(db_path).close()
    reader = pycolmap.ImageReaderOptions()
    pycolmap.import_images(db_path, orbit_scene / "images", pycolmap.CameraMode.SINGLE, names, reader)
    pycolmap.extract_features(db_path, orbit_scene / "images", names, pycolmap.CameraMode.SINGLE, reader, ext,
                              pycolmap.Device.cpu)
    extractor = pycolmap.FeatureExtractor.create(ext, pycolmap.Device.cpu)
    db = pycolmap.Database.open(db_path)
    try:
        for im in db.read_all_images():
            bitmap = pycolmap.Bitmap.read(str(orbit_scene / "images" / im.name), False)
            kp, desc = sift_of_bitmap(extractor, bitmap, ext.eff_max_image_size())
            assert (bitmap.width, bitmap.height) == (333, 250)
            np.testing.assert_array_equal(kp, db.read_keypoints(im.image_id))
            np.testing.assert_array_equal(desc.data, db.read_descriptors(im.image_id).data)
    finally:
        db.close()


def _rotations(ws: Workspace) -> dict[str, np.ndarray]:
    import pycolmap

    rec = pycolmap.Reconstruction(str(ws.model))
    return {im.name: im.cam_from_world().rotation.matrix() for im in rec.images.values() if im.has_pose}


def test_cluster_run_equals_single_machine(single, clustered):
    (ws1, rep1), (ws2, rep2) = single, clustered
    _same_database(ws1.database, ws2.database)
    r1, r2 = _rotations(ws1), _rotations(ws2)
    assert sorted(r1) == sorted(r2) and len(r1) >= 8
    ref = sorted(r1)[0]
    worst = 0.0
    for name in r1:  # relative rotations: free of the models' gauge
        d = (r1[name] @ r1[ref].T) @ (r2[name] @ r2[ref].T).T
        worst = max(worst, float(np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1, 1)))))
    assert worst < 0.005
    info = rep2["cluster"]
    assert info["nodes_used"] == 2 and len(info["nodes"]) == 2
    assert all(n["tasks"].get("extract", 0) + n["tasks"].get("match", 0) > 0 for n in info["nodes"])
    assert info["retries"] == 0 and info["ship_images"] and "cluster" not in rep1
    saved = json.loads((ws2.reports / "sfm.json").read_text())
    assert saved["cluster"]["nodes_used"] == 2


def test_retrieval_queries_on_the_cluster_equal_one_machine(single, ray_cluster, tmp_path):
    """--matching retrieval with a cluster: the vocabulary tree is trained and indexed on the driver, the
    per-photo queries run as tasks on both nodes (4 blocks of 3 photos); the pairs are the single-machine
    retrieval pairs, and matching them on the cluster gives the single-machine matches of those pairs."""
    import pycolmap

    from recon3d.core.cluster import connect
    from recon3d.sfm.cluster import match_on_cluster
    from recon3d.sfm.config import MatchingConfig
    from recon3d.sfm.retrieval import retrieval_pairs

    ws1 = single[0]
    ref, _ = retrieval_pairs(ws1.database, 4)
    database = tmp_path / "database.db"
    shutil.copy(ws1.database, database)
    con = sqlite3.connect(database)
    con.execute("DELETE FROM matches")
    con.execute("DELETE FROM two_view_geometries")
    con.commit()
    con.close()
    with connect(ClusterOptions(ray_cluster.address)) as session:
        m = match_on_cluster(session, database, MatchingConfig(pairing="retrieval", retrieval_num_images=4))
        nodes = [n for n in session.summary()["nodes"] if n["tasks"].get("retrieve")]
    con = sqlite3.connect(database)
    got = sorted(divmod(pair_id, 2147483647) for (pair_id,) in con.execute("SELECT pair_id FROM matches"))
    con.close()
    assert got == ref and len(VIEWS) * 2 <= len(ref) < len(VIEWS) * (len(VIEWS) - 1) // 2
    assert m["mode"] == "retrieval" and m["pairs"] == len(ref)
    info = m["retrieval"]
    assert info["queries"] == len(VIEWS) and info["blocks"] == 4 and info["queried_on_driver"] == 0
    assert len(nodes) == 2  # the queries ran on both nodes
    a, b = pair_stats(ws1.database), pair_stats(database)
    db = pycolmap.Database.open(database)
    index = {im.image_id: a.names.index(im.name) for im in db.read_all_images()}
    db.close()
    picked = np.zeros_like(a.matches, dtype=bool)
    for i, j in ref:
        picked[index[i], index[j]] = picked[index[j], index[i]] = True
    np.testing.assert_array_equal(b.matches, np.where(picked, a.matches, 0))
    np.testing.assert_array_equal(b.inliers, np.where(picked, a.inliers, 0))


def _ray_workers(cluster, title: str) -> list[int]:
    """Pids of this cluster's worker processes now running a task ``title`` (their process title)."""
    session = Path(cluster.head_node.get_session_dir_path()).name
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not cmd.startswith(f"ray::{title}"):
                continue
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            parent = Path(f"/proc/{ppid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if session in parent:
            out.append(int(proc.name))
    return out


def _driver(photos: Path, ws: Path, address: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "recon3d", "sfm", str(photos), "-o", str(ws), *FLAGS,
                             "--cluster", address], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(pred, proc: subprocess.Popen, what: str, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()[1][-2000:]}"
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_workers_are_retried(photos, ray_cluster, single, tmp_path):
    ws = Workspace(tmp_path / "ws")
    proc = _driver(photos, ws.root, ray_cluster.address)
    try:
        for title in ("extract_shard", "match_block"):
            pid = _wait_for(lambda: _ray_workers(ray_cluster, title), proc, f"a {title} task")[0]
            os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    report = json.loads((ws.reports / "sfm.json").read_text())
    assert report["cluster"]["retries"] >= 2 and report["cluster"]["failures"] == []
    assert report["features"]["skipped"] == [] and report["matching"]["skipped_pairs"] == []
    _same_database(single[0].database, ws.database)
    assert sorted(_rotations(ws)) == sorted(_rotations(single[0]))


def _matched_pairs(database: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.1)
        try:
            return con.execute("SELECT count(*) FROM matches").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_killed_driver_resumes_from_finished_blocks(photos, ray_cluster, single, tmp_path):
    ws = Workspace(tmp_path / "ws")
    proc = _driver(photos, ws.root, ray_cluster.address)
    try:
        _wait_for(lambda: _matched_pairs(ws.database) > 0, proc, "the first matched block")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    done = _matched_pairs(ws.database)
    total = len(VIEWS) * (len(VIEWS) - 1) // 2
    assert 0 < done < total
    report = run_sfm(ws, photos, _config(), cluster=ClusterOptions(ray_cluster.address)).report
    assert report["features"]["reused"] == len(VIEWS) and report["features"]["extracted"] == 0
    assert report["matching"]["reused_pairs"] == done
    _same_database(single[0].database, ws.database)


HOOK = """
import importlib.abc, importlib.util, sys


class _Recon3dHook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "recon3d":
            return None
        if MISSING:
            raise ModuleNotFoundError("No module named 'recon3d'", name="recon3d")
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec("recon3d")
        finally:
            sys.meta_path.insert(0, self)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.__version__ = "0.0.1"

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Recon3dHook())
"""
"""sitecustomize.py of a node whose workers have no recon3d (MISSING) or version 0.0.1 (the driver's
folder is on the workers' sys.path, so shadowing the package by PYTHONPATH is not enough)."""


def _node_without_recon3d(root: Path, missing: bool) -> Path:
    root.mkdir(parents=True)
    (root / "sitecustomize.py").write_text(f"MISSING = {missing}\n" + HOOK)
    return root


@pytest.mark.parametrize("case", ["unreachable", "not_an_address", "old_recon3d", "no_recon3d"])
def test_bad_cluster_is_one_line_before_any_output(case, photos, ray_cluster, tmp_path, capsys):
    node = None
    address = {"unreachable": "127.0.0.1:9", "not_an_address": "somewhere"}.get(case, ray_cluster.address)
    if case in ("old_recon3d", "no_recon3d"):  # one more node whose workers see another recon3d, or none
        fake = _node_without_recon3d(tmp_path / "site", missing=case == "no_recon3d")
        node = ray_cluster.add_node(num_cpus=1, object_store_memory=80 << 20,
                                    env_vars={"PYTHONPATH": str(fake)})
        ray_cluster.wait_for_nodes()
    try:
        rc = main(["sfm", str(photos), "-o", str(tmp_path / "ws"), *FLAGS, "--cluster", address])
    finally:
        if node is not None:
            ray_cluster.remove_node(node)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    lines = [ln for ln in err if "error" in ln]
    assert len(lines) == 1 and "Traceback" not in "\n".join(err), err
    expect = {"unreachable": "cannot reach", "not_an_address": "not an address", "old_recon3d": "0.0.1",
              "no_recon3d": "cannot import recon3d"}[case]
    assert expect in lines[0]
    assert not (tmp_path / "ws").exists()


def test_stereo_depth_maps_on_the_cluster(orbit_ws, ray_cluster, tmp_path, capsys):
    """`recon3d stereo WS --pairs auto --cluster ADDRESS`: one task per pair, the same depth maps as here."""
    flags = ["--pairs", "auto", "--max-pairs", "6", "--scale", "0.25", "--voxel-size", "0.06"]
    other = Workspace(tmp_path / "other")
    shutil.copytree(orbit_ws.root, other.root)
    assert main(["stereo", str(orbit_ws.root), *flags]) == 0
    assert main(["stereo", str(other.root), *flags, "--cluster", ray_cluster.address]) == 0
    report = json.loads((other.stereo / "report.json").read_text())
    assert sum(n["tasks"].get("depth", 0) for n in report["cluster"]["nodes"]) == report["pairs"] == 6
    assert report["cluster"]["nodes_used"] == 2
    for path in sorted((orbit_ws.stereo / "depth").glob("*.npy")):
        np.testing.assert_array_equal(np.load(path), np.load(other.stereo / "depth" / path.name))
    assert len(list((other.stereo / "depth").glob("*.npy"))) == 6


def test_failed_items_are_tried_once_more_then_skipped(ray_cluster):
    """run_jobs: a failed task's items get one more task each; an item that fails twice is given up, once."""
    import ray

    from recon3d.core.cluster import Job, connect, run_jobs

    def flaky(items: list[str]) -> dict:  # nested: pickled by value, the workers need not import this test
        import os

        import ray

        for item in items:
            if item == "dies":
                os._exit(1)  # the worker process dies
            if item == "bad":
                raise ValueError("cannot read this one")
        return {"node": ray.get_runtime_context().get_node_id(), "seconds": 0.0}

    with connect(ClusterOptions(ray_cluster.address)) as session:
        task = ray.remote(num_cpus=1, max_retries=0)(flaky)
        done, given_up = [], []
        jobs = [Job(["a", "bad"]), Job(["b"]), Job(["dies", "c"])]
        run_jobs(session, "test", jobs, lambda job: task.remote(job.items),
                 lambda job, out: done.extend(job.items) or [], lambda item, why: given_up.append((item, why)))
    assert sorted(done) == ["a", "b", "c"]
    assert sorted(item for item, _ in given_up) == ["bad", "dies"]
    assert "cannot read this one" in dict(given_up)["bad"]
    assert session.retries == 4 and len(session.failures) == 2
