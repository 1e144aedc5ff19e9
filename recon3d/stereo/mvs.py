"""Stereo from an SfM workspace: depth maps of selected pairs fused into a mesh and a point cloud.

``recon3d stereo WS --pairs auto`` reads ``WS/sparse/0`` and ``WS/images`` and writes::

    WS/stereo/depth/<image>.npy      float32 z-depth (m) of the image's rectified camera, NaN where invalid
    WS/stereo/disparity/<image>.png  coloured disparity of the pair (before the consistency filter)
    WS/stereo/pairs/<image>.json     the pair: partner, rectified K and cam_from_world, ranges, density
    WS/stereo/fused.ply              coloured surface points of the TSDF volume (the mesh's vertices)
    WS/stereo/mesh.ply               coloured TSDF mesh
    WS/stereo/report.json, report.md what was done (and, when WS/gt exists, accuracy and completeness)
    WS/stereo/config.yaml            the resolved settings

Per-pair outputs are checkpoints: an interrupted run resumes with the pairs it has not done; a
finished run is skipped unless ``overwrite``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from recon3d.core.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from recon3d.core.config import to_dict, validate
from recon3d.core.errors import UserError
from recon3d.core.workspace import StageResult, Workspace, config_hash
from recon3d.io.colmap import read_model
from recon3d.stereo.config import FusionConfig as FusionConfig
from recon3d.stereo.depth import colorize_disparity, depth_from_disparity
from recon3d.stereo.disparity import SGBMConfig, compute_disparity
from recon3d.stereo.fusion import (
    DepthFrame,
    consistency_filter,
    mesh_ply_bytes,
    tsdf_fuse,
)
from recon3d.stereo.rectify import check_horizontal, load_image, rectify_pair
from recon3d.stereo.sfm_pairs import PairChoice, disparity_range, pair_rig, select_pairs

STAGE = "stereo"


def rectified_depth(ws: Workspace, model, pair: PairChoice,
                     config: FusionConfig) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """Depth of one pair at ``config.scale``: (info, depth, disparity, RGB image)."""
    rig = pair_rig(model, pair)
    rect = rig.rectify(alpha=-1)  # keep the original focal length (alpha 0 zooms in on convergent pairs)
    check_horizontal(rect, f"{pair.left_name}/{pair.right_name}")
    left = load_image(ws.images / pair.left_name)
    right = load_image(ws.images / pair.right_name)
    h, w = left.shape[:2]
    if (w, h) != (rig.left.width, rig.left.height):
        raise UserError(f"{ws.images / pair.left_name}: is {w}x{h} but the model's camera is "
                        f"{rig.left.width}x{rig.left.height}; the images must be the ones the model was made from")
    rp = rectify_pair(rig, rect, left, right)
    s = config.scale
    size = (max(16, round(w * s)), max(16, round(h * s)))
    s = size[0] / w
    if s < 1:
        lft = cv2.resize(rp.left, size, interpolation=cv2.INTER_AREA)
        rgt = cv2.resize(rp.right, size, interpolation=cv2.INTER_AREA)
        valid = cv2.resize(rp.left_valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    else:
        lft, rgt, valid = rp.left, rp.right, rp.left_valid
    lo, hi, zmax = disparity_range(model, pair, rect, scale=s)
    lo = max(lo, 0)
    sg = SGBMConfig(**{**to_dict(config.sgbm), "min_disparity": lo, "max_disparity": hi, "downscale": 1.0})
    t0 = time.perf_counter()
    disp = compute_disparity(lft, rgt, sg, valid)
    seconds = time.perf_counter() - t0
    K = rp.camera.scaled(s).K
    depth = depth_from_disparity(disp, K[0, 0], rect.baseline)
    depth[depth > 1.5 * zmax] = np.nan
    pose = rect.R1 @ model.images[pair.left_id].cam_from_world
    info = {"left": pair.left_name, "right": pair.right_name, "baseline_ratio": pair.baseline_ratio,
            "angle_deg": pair.angle_deg, "shared_points": pair.shared_points, "width": size[0], "height": size[1],
            "K": K.tolist(), "cam_from_world": pose.tolist(), "baseline": rect.baseline,
            "disparity_range": [lo, hi], "max_depth": 1.5 * zmax, "density": float(np.isfinite(depth).mean()),
            "match_seconds": seconds}
    return info, depth, disp, cv2.cvtColor(lft, cv2.COLOR_BGR2RGB)


def auto_voxel_size(frames: list[DepthFrame]) -> float:
    """1.5 pixel footprints at the median depth of all depth maps (metres)."""
    med = float(np.nanmedian(np.concatenate([f.depth[np.isfinite(f.depth)][::7] for f in frames])))
    focal = float(np.median([f.K[0, 0] for f in frames]))
    return 1.5 * med / focal


def stereo_workspace(config: FusionConfig, ws: Workspace, overwrite: bool = False, progress=None,
                     cluster=None) -> StageResult:
    """The stage: depth maps of auto-selected pairs, consistency filter, TSDF fusion, report.

    Args:
        config: settings.
        ws: a workspace with ``sparse/0`` and ``images/``.
        overwrite: recompute everything even if finished.
        progress: optional ``tqdm``-like wrapper.
        cluster: optional :class:`recon3d.core.cluster.ClusterOptions`: one Ray task per pair's depth map
            (the workers read ``WS/images`` from the same path; the model goes through the object store); fusion stays here.
    Returns:
        :class:`StageResult` with outputs ``mesh``, ``points`` and ``report``; its ``data`` is the
        report (the content of ``WS/stereo/report.json``).
    """
    validate(config)
    ws.require_model()
    if not 0 < config.scale <= 1:
        raise UserError(f"scale {config.scale}: give a factor in (0, 1], e.g. 0.5")
    from recon3d.core.cluster import connect, resolve

    options = resolve(cluster)
    session = connect(options) if options is not None else None  # a bad address fails before any output
    try:
        return _stage(config, ws, overwrite, progress, session)
    finally:
        if session is not None:
            session.close()


def _stage(config: FusionConfig, ws: Workspace, overwrite: bool, progress, session) -> StageResult:
    out = ws.stereo
    with ws.stage(STAGE, config, overwrite, check=lambda _: (out / "report.json").is_file()) as run:
        if run.skipped:
            report = json.loads((out / "report.json").read_text())
            return StageResult(run.previous_outputs, skipped=True, summary=format_summary(report, ws, skipped=True),
                               data=report)
        report = _fuse(config, ws, overwrite, progress, session)
        run.outputs = {"mesh": out / "mesh.ply", "points": out / "fused.ply", "report": out / "report.json"}
    return StageResult(run.outputs, skipped=False, summary=format_summary(report, ws), data=report)


def format_summary(report: dict, ws: Workspace, skipped: bool = False) -> str:
    """The terminal summary of a stereo workspace report."""
    from recon3d.core.progress import summary

    rows = [("pairs", report["pairs"]),
            ("valid depth", f"{100 * report['mean_density']:.1f} % matched, "
                            f"{100 * report['mean_density_consistent']:.1f} % consistent"),
            ("TSDF voxel", f"{100 * report['voxel_size']:.1f} cm"),
            ("mesh", f"{report['mesh_vertices']} vertices, {report['mesh_triangles']} triangles"),
            ("time", f"depth {report['depth_seconds']:.1f} s, fusion {report['fusion_seconds']:.1f} s")]
    ev = report.get("evaluation")
    if ev:
        rows += [("accuracy", f"median {100 * ev['accuracy_median']:.1f} cm "
                              f"({100 * ev['accuracy_median'] / ev['scene_extent']:.2f} % of the scene extent)"),
                 ("completeness", f"{100 * ev['completeness']:.1f} % of GT points within "
                                  f"{100 * ev['threshold']:.1f} cm (1 % of the extent)")]
    rows += [("written", f"{ws.stereo}/{{depth/, mesh.ply, fused.ply, report.md}}")]
    title = f"stereo: {ws.root} (already done; --overwrite to redo)" if skipped else f"stereo: {ws.root}"
    return summary(title, rows)


def _fuse(config: FusionConfig, ws: Workspace, overwrite: bool, progress, session=None) -> dict:
    """Depth of every pair (resuming finished pairs), consistency filter, fusion, reports; returns the report."""
    out = ws.stereo
    model = read_model(ws.model)
    pairs = select_pairs(model, config.min_baseline_ratio, config.max_baseline_ratio, max_pairs=config.max_pairs)
    if not pairs:
        raise UserError(f"{ws.model}: no image pair with a usable baseline (baseline / depth in "
                        f"[{config.min_baseline_ratio}, {config.max_baseline_ratio}], side by side, sharing points); "
                        "photograph the scene from more positions")
    key = config_hash({"sgbm": config.sgbm, "scale": config.scale})  # what a pair's depth depends on
    t0 = time.perf_counter()
    frames, infos = [], []

    def resumable(pair: PairChoice) -> dict | None:
        stem = Path(pair.left_name).stem
        info_path = out / "pairs" / f"{stem}.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() and not overwrite else None
        poses = [model.images[i].cam_from_world.tolist() for i in (pair.left_id, pair.right_id)]
        if info is not None and info.get("config_hash") == key and info.get("right") == pair.right_name \
                and np.allclose(info.get("model_poses", 0), poses) and (out / "depth" / f"{stem}.npy").is_file():
            return info
        return None

    computed = None
    if session is not None:
        computed = _depth_on_cluster(session, ws, model, [p for p in pairs if resumable(p) is None], config)
    it = progress(pairs, desc="stereo pairs", unit="pair") if progress else pairs
    for pair in it:
        stem = Path(pair.left_name).stem
        depth_path = out / "depth" / f"{stem}.npy"
        info = resumable(pair)
        poses = [model.images[i].cam_from_world.tolist() for i in (pair.left_id, pair.right_id)]
        if info is not None:
            depth = np.load(depth_path)
            rgb = _rectified_rgb(ws, model, pair, info)
            frames.append(DepthFrame(depth, np.array(info["K"]), np.array(info["cam_from_world"]), rgb))
            infos.append(info)
            continue
        if computed is not None and pair.left_name not in computed:
            continue  # failed twice on the cluster (warned)
        info, depth, disp, rgb = computed.pop(pair.left_name) if computed else rectified_depth(ws, model, pair, config)
        info["config_hash"], info["model_poses"] = key, poses
        atomic_write_bytes(out / "disparity" / f"{stem}.png", cv2.imencode(".png", colorize_disparity(disp))[1].tobytes())
        atomic_write_bytes(depth_path, _npy_bytes(depth))
        atomic_write_json(out / "pairs" / f"{stem}.json", info)  # written last: the pair's checkpoint
        frames.append(DepthFrame(depth, np.array(info["K"]), np.array(info["cam_from_world"]), rgb))
        infos.append(info)
    depth_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    if config.consistency_neighbours > 0 and len(frames) > 1:
        filtered = consistency_filter(frames, config.consistency_neighbours, config.consistency_tol)
        for f, d, info in zip(frames, filtered, infos):
            info["density_consistent"] = float(np.isfinite(d).mean())
            f.depth = d
    if not any(np.isfinite(f.depth).any() for f in frames):
        raise UserError(f"{ws.root}: no depth survived matching and the consistency check; "
                        "check the model's poses or photograph the scene with more overlap")
    voxel = config.voxel_size or auto_voxel_size(frames)
    depth_max = max(info["max_depth"] for info in infos)
    fused = tsdf_fuse(frames, voxel, config.trunc_voxels, depth_max, config.weight_threshold, progress=progress)
    if len(fused.triangles) == 0:
        raise UserError(f"{ws.root}: the fused mesh is empty (no surface seen by {config.weight_threshold:g} depth "
                        "maps); lower --weight-threshold or use more pairs")
    from recon3d.stereo.depth import ply_bytes

    atomic_write_bytes(out / "fused.ply", ply_bytes(fused.vertices, np.round(fused.vertex_colors * 255)))
    atomic_write_bytes(out / "mesh.ply", mesh_ply_bytes(fused.vertices, fused.triangles, fused.vertex_colors))
    fuse_seconds = time.perf_counter() - t1

    report = {"pairs": len(infos), "scale": config.scale, "voxel_size": voxel, "depth_max": depth_max,
              "mesh_vertices": int(len(fused.vertices)), "mesh_triangles": int(len(fused.triangles)),
              "depth_seconds": depth_seconds, "fusion_seconds": fuse_seconds,
              "mean_density": float(np.mean([i["density"] for i in infos])),
              "mean_density_consistent": float(np.mean([i.get("density_consistent", i["density"]) for i in infos])),
              "pair_list": [{k: i[k] for k in ("left", "right", "baseline_ratio", "angle_deg", "density")} for i in infos]}
    if (ws.gt_model / "cameras.txt").is_file() or (ws.gt_model / "cameras.bin").is_file():
        if (ws.gt / "depth").is_dir():
            from recon3d.stereo.evaluate import GTViews, mesh_metrics

            try:  # a broken ground truth is said once, not scored as a table of NaN
                report["evaluation"] = mesh_metrics(fused.vertices, fused.triangles, GTViews.load(ws.gt))
            except UserError as exc:
                from recon3d.core.progress import note

                note(f"warning: mesh not evaluated: {exc}")
                report["evaluation_error"] = str(exc)
    if session is not None:
        report["cluster"] = session.summary()
    ws.save_config(config, out)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", report_markdown(report))
    return report


def _rectified_rgb(ws: Workspace, model, pair: PairChoice, info: dict) -> np.ndarray:
    """The rectified, scaled RGB image of a resumed pair (for colouring the fusion)."""
    rig = pair_rig(model, pair)
    rect = rig.rectify(alpha=-1)
    rp = rectify_pair(rig, rect, load_image(ws.images / pair.left_name), load_image(ws.images / pair.right_name))
    img = cv2.resize(rp.left, (info["width"], info["height"]), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def report_markdown(report: dict) -> str:
    """A short Markdown summary of a stereo workspace report."""
    lines = ["# Stereo fusion", "",
             f"- pairs: {report['pairs']} (depth at scale {report['scale']:g})",
             f"- valid depth per map: {100 * report['mean_density']:.1f} % matched, "
             f"{100 * report['mean_density_consistent']:.1f} % after the consistency check",
             f"- TSDF voxel: {100 * report['voxel_size']:.1f} cm, depth max {report['depth_max']:.1f} m",
             f"- mesh: {report['mesh_vertices']} vertices (also fused.ply), {report['mesh_triangles']} triangles",
             f"- time: depth {report['depth_seconds']:.1f} s, fusion {report['fusion_seconds']:.1f} s"]
    ev = report.get("evaluation")
    if ev:
        lines += ["", "## Against ground truth", "",
                  f"- scene extent (GT points' bounding-box diagonal): {ev['scene_extent']:.2f} m; "
                  f"threshold {100 * ev['threshold']:.1f} cm (1 %)",
                  f"- accuracy (mesh to true surface): median {100 * ev['accuracy_median']:.1f} cm, "
                  f"90th percentile {100 * ev['accuracy_p90']:.1f} cm, "
                  f"{100 * ev['accurate_fraction']:.1f} % within the threshold",
                  f"- completeness (GT points within the threshold of the mesh): {100 * ev['completeness']:.1f} %"]
    lines += ["", "| left | right | baseline / depth | angle | density |", "|---|---|---|---|---|"]
    for p in report["pair_list"]:
        lines.append(f"| {p['left']} | {p['right']} | {p['baseline_ratio']:.3f} | {p['angle_deg']:.1f}° | "
                     f"{100 * p['density']:.1f} % |")
    return "\n".join(lines) + "\n"


def pair_depth_task(root: str, model, pair: PairChoice, config: FusionConfig) -> dict:
    """Ray task: :func:`rectified_depth` of one pair of the workspace at ``root`` (images read there)."""
    from recon3d.core.cluster import node_id

    t0, c0 = time.perf_counter(), time.process_time()
    result = rectified_depth(Workspace(Path(root)), model, pair, config)
    return {"node": node_id(), "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "result": result}


def _depth_on_cluster(session, ws: Workspace, model, pairs: list[PairChoice], config: FusionConfig) -> dict:
    """Depth of ``pairs`` as one Ray task each: left name -> :func:`rectified_depth`'s tuple (pairs that
    failed twice are left out, with a warning)."""
    import ray

    from recon3d.core.cluster import Job, run_jobs
    from recon3d.core.progress import note

    model_ref = ray.put(model) if pairs else None
    task = ray.remote(num_cpus=1, max_retries=0)(pair_depth_task)
    done: dict = {}

    def on_result(job: Job, out: dict) -> list:
        done[job.items[0].left_name] = out["result"]
        return []

    def on_give_up(pair: PairChoice, reason: str) -> None:
        note(f"warning: skipping the stereo pair {pair.left_name} / {pair.right_name}: its depth failed twice on "
             f"the cluster ({reason})")

    run_jobs(session, "depth", [Job([p]) for p in pairs], lambda job: task.remote(str(ws.root), model_ref,
             job.items[0], config), on_result, on_give_up)
    return done
