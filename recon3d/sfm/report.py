"""The SfM report: ``reports/sfm.json``, ``reports/sfm.md``, plots, and the terminal summary.

Plots (PNG, in ``WS/reports/``): ``sfm_reprojection_per_image.png`` (mean reprojection error of
each registered photo), ``sfm_track_length.png`` (how many photos see each 3D point),
``sfm_observations_per_image.png`` (3D points seen by each photo) and ``sfm_matches_graph.png``
(verified inliers of every photo pair: the matches graph as a matrix).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon3d.core.atomic import atomic_path, atomic_write_json, atomic_write_text
from recon3d.core.config import to_dict
from recon3d.core.workspace import Workspace

PLOTS = {
    "reprojection": "sfm_reprojection_per_image.png",
    "track_length": "sfm_track_length.png",
    "observations": "sfm_observations_per_image.png",
    "matches_graph": "sfm_matches_graph.png",
}
"""Plot file names in ``WS/reports/``."""


def _model_stats(rec, index: int) -> tuple[dict, dict[str, dict], np.ndarray]:
    from recon3d.geometry.reprojection import reprojection_errors, reprojection_summary
    from recon3d.io.colmap import model_from_reconstruction

    model = model_from_reconstruction(rec)
    errs = reprojection_errors(model)
    rp = reprojection_summary(errs)
    per_image = {}
    for im in model.images.values():
        e = errs.get(im.name, np.zeros(0))
        per_image[im.name] = {"model": index, "observations": int(len(e)),
                              "reprojection_px": float(np.mean(e)) if len(e) else None}
    track = np.array([p.track.length() for p in rec.points3D.values()], dtype=np.int64)
    cams = [{"camera_id": int(cid), "model": cam.model.name, "width": int(cam.width), "height": int(cam.height),
             "params": [float(p) for p in cam.params]} for cid, cam in rec.cameras.items()]
    stats = {
        "path": f"sparse/{index}",
        "registered": int(rec.num_reg_images()),
        "points": int(rec.num_points3D()),
        "observations": int(rp["observations"]),
        "mean_track_length": float(track.mean()) if len(track) else 0.0,
        "reprojection_px": {k: rp[k] for k in ("mean", "median", "p95")},
        "cameras": cams,
    }
    return stats, per_image, track


def build_report(ws: Workspace, config, scan, feat: dict, matches: dict, models: list, refine_reports: list,
                 unregistered: list[dict], timings: dict[str, float]) -> dict:
    """The content of ``reports/sfm.json`` (see :func:`recon3d.sfm.run_sfm`)."""
    model_stats, per_image = [], {}
    for k, rec in enumerate(models):
        stats, pim, _ = _model_stats(rec, k)
        stats["refinement"] = refine_reports[k] if k < len(refine_reports) else {}
        model_stats.append(stats)
        for name, v in pim.items():
            per_image.setdefault(name, v)
    used = len(scan.images)
    return {
        "workspace": str(ws.root),
        "mapper": config.mapping.mapper,
        "images": {"input": used + len(scan.skipped), "used": used,
                   "skipped": [{"name": n, "reason": r} for n, r in scan.skipped]},
        "registered": model_stats[0]["registered"] if model_stats else 0,
        "registered_any_model": len(per_image),
        "models": model_stats,
        "unregistered": list(unregistered),
        "features": feat,
        "matching": matches,
        "per_image": dict(sorted(per_image.items())),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "plots": {k: str(ws.reports / v) for k, v in PLOTS.items()},
        "config": to_dict(config),
    }


def _camera_text(cam: dict) -> str:
    names = {"SIMPLE_PINHOLE": "f cx cy", "PINHOLE": "fx fy cx cy", "SIMPLE_RADIAL": "f cx cy k",
             "RADIAL": "f cx cy k1 k2", "OPENCV": "fx fy cx cy k1 k2 p1 p2"}
    labels = names.get(cam["model"], "").split()
    vals = cam["params"]
    if len(labels) == len(vals):
        body = " ".join(f"{l}={v:.4g}" if abs(v) < 10 else f"{l}={v:.1f}" for l, v in zip(labels, vals))
    else:
        body = " ".join(f"{v:.4g}" for v in vals)
    return f"{cam['model']} {cam['width']}x{cam['height']} {body}"


def _pp_text(model: dict) -> str:
    cal = model.get("refinement", {}).get("calibration", [])
    if cal:
        kept = sum(1 for c in cal if c["kept"])
        return "; calibration refined" if kept == len(cal) else ("; calibration kept" if not kept else
                                                                 f"; calibration refined for {kept}/{len(cal)} cameras")
    pps = model.get("refinement", {}).get("principal_point", [])
    if not pps:
        return ""
    kept = sum(1 for p in pps if p["kept"])
    if len(pps) == 1:
        p = pps[0]
        if p["kept"]:
            return f"; principal point refined to ({p['refined'][0]:.1f}, {p['refined'][1]:.1f})"
        why = p["reason"].split(": ", 1)[-1].split(" (")[0]
        return f"; principal point left at ({p['before'][0]:.1f}, {p['before'][1]:.1f}): {why}"
    return f"; principal point refined for {kept}/{len(pps)} cameras"


def format_summary(report: dict, ws: Workspace) -> str:
    """The five lines printed at the end of ``recon3d sfm``."""
    models = report.get("models", [])
    m0 = models[0] if models else None
    used = report["images"]["used"]
    more = f" (+{report['registered_any_model'] - m0['registered']} only in {len(models) - 1} separate model(s), " \
        "not counted)" if m0 and len(models) > 1 else ""
    lines = [f"sfm: {report['registered']}/{used} photos registered in {ws.model}{more}, "
             f"{m0['points'] if m0 else 0} points, mean track length {m0['mean_track_length'] if m0 else 0:.2f}"]
    rp = m0["reprojection_px"] if m0 else {}
    lines.append(f"  reprojection error: mean {rp.get('mean') or 0:.3f} px per observation, median {rp.get('median') or 0:.3f} px, "
                 f"p95 {rp.get('p95') or 0:.3f} px")
    reused = report.get("features", {}).get("reused_database")
    if reused:
        lines.append(f"  features: reused {reused['reused']} photos' features from {ws.database} (made by another tool "
                     f"or options), {reused['keypoints']} keypoints; {report['features'].get('extracted', 0)} extracted")
    cams = m0["cameras"] if m0 else []
    cam_line = _camera_text(cams[0]) if len(cams) == 1 else f"{len(cams)} cameras"
    lines.append(f"  camera: {cam_line}{_pp_text(m0) if m0 else ''}")
    if m0:
        from recon3d.sfm.focal import focal_warning

        warn = focal_warning(m0.get("refinement", {}).get("focal", []))
        if warn:
            lines.append(f"  {warn}")
    un = report.get("unregistered", [])
    skipped = report["images"]["skipped"]
    if un:
        first = un[0]
        lines.append(f"  unregistered: {len(un)} ({first['name']}, {first.get('step', '?')}: {first['reason']}"
                     + ("; see the report for the rest" if len(un) > 1 else "") + ")")
    else:
        lines.append("  unregistered: none" + (f" ({len(skipped)} file(s) skipped as unreadable or duplicate)" if skipped else ""))
    if report.get("cluster"):
        from recon3d.core.cluster import summary_line

        lines.append("  " + summary_line(report["cluster"]))
    lines.append(f"  report: {ws.reports / 'sfm.md'} (plots beside it); {report['timings_s'].get('total', 0):.1f} s")
    return "\n".join(lines)


def _markdown(report: dict, ws: Workspace) -> str:
    lines = [f"# SfM report: {ws.root}", ""]
    lines += ["```", format_summary(report, ws), "```", ""]
    lines += ["## Models", "", "| model | photos | points | observations | track length | reproj. mean / median / p95 (px) |",
              "|---|---|---|---|---|---|"]
    for m in report["models"]:
        rp = m["reprojection_px"]
        lines.append(f"| {m['path']} | {m['registered']} | {m['points']} | {m['observations']} | "
                     f"{m['mean_track_length']:.2f} | {rp['mean']:.3f} / {rp['median']:.3f} / {rp['p95']:.3f} |")
    lines += ["", "## Cameras", ""]
    for m in report["models"]:
        for cam in m["cameras"]:
            lines.append(f"- {m['path']} camera {cam['camera_id']}: {_camera_text(cam)}")
        for p in m.get("refinement", {}).get("principal_point", []):
            lines.append(f"  - principal point of camera {p['camera_id']}: {p['reason']}")
        for p in m.get("refinement", {}).get("calibration", []):
            lines.append(f"  - calibration of camera {p['camera_id']}: {p['reason']}")
        for p in m.get("refinement", {}).get("focal", []):
            lines.append(f"  - focal length of camera {p['camera_id']}: {p['reason']}")
    for key, note in report.get("notes", {}).items():
        lines.append(f"- note ({key}): " + "; ".join(f"{k} {v}" for k, v in note.items()))
    lines += ["", "## Unregistered photos", ""]
    lines += [f"- `{u['name']}` ({u.get('step', '?')}): {u['reason']}" + (f"; would help: {u['help']}" if u.get("help") else "")
              for u in report["unregistered"]] or ["none"]
    policy = report.get("policy") or {}
    if policy:
        lines += ["", "## Registration policy", "", f"- model in sparse/0 from the {policy.get('mapper')} mapper: "
                  f"{policy.get('why')}"]
        if "second_pass" in policy:
            sp = policy["second_pass"]
            lines.append(f"- second registration pass: {sp['before']} -> {sp['after']} photos "
                         f"({sp.get('placed', sp['after'])} placed); {sp['decision']}")
        if "inconsistent" in policy:
            bad = policy["inconsistent"]
            lines.append("- two-view consistency check: " + (
                f"{len(bad)} photo(s) deregistered, their poses contradicted by most of their verified matches: "
                + ", ".join(f"`{n}`" for n in sorted(bad)) if bad else
                "every registered photo agrees with its verified matches"))
        if policy.get("merged"):
            lines.append(f"- {policy['merged']} smaller model(s) merged: their photos are all in sparse/0")
    if report["images"]["skipped"]:
        lines += ["", "## Skipped files", ""]
        lines += [f"- `{s['name']}`: {s['reason']}" for s in report["images"]["skipped"]]
    mt = report["matching"]
    lines += ["", "## Features and matching", "",
              f"- features: {report['features'].get('keypoints')} keypoints in {report['features'].get('images')} photos, "
              f"{report['features'].get('cameras')} camera(s)",
              f"- pairs ({mt.get('mode')}): {mt.get('pairs')} selected, {mt.get('verified_pairs')} verified, "
              f"{mt.get('inlier_matches')} inlier matches",
              "", "## Timings (s)", ""]
    lines += [f"- {k}: {v:.1f}" for k, v in report["timings_s"].items()]
    lines += ["", "## Plots", ""]
    lines += [f"![{k}]({Path(v).name})" for k, v in report["plots"].items()]
    lines += ["", "## Per photo", "", "| photo | model | observations | reproj. (px) |", "|---|---|---|---|"]
    for name, v in report["per_image"].items():
        rp = "-" if v["reprojection_px"] is None else f"{v['reprojection_px']:.3f}"
        lines.append(f"| {name} | sparse/{v['model']} | {v['observations']} | {rp} |")
    return "\n".join(lines) + "\n"


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def write_plots(ws: Workspace, report: dict, models: list, stats) -> None:
    """The four PNG plots (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = report["per_image"]
    names = list(per)
    width = max(6.0, min(16.0, 0.25 * len(names) + 2))
    for key, field, ylabel in (("reprojection", "reprojection_px", "mean reprojection error (px)"),
                               ("observations", "observations", "3D points seen")):
        fig, ax = plt.subplots(figsize=(width, 3.6))
        vals = [per[n][field] or 0 for n in names]
        colors = [f"C{per[n]['model'] % 10}" for n in names]
        ax.bar(range(len(names)), vals, color=colors)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=90, fontsize=6 if len(names) > 40 else 8)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel} per photo (colour: model)")
        fig.tight_layout()
        _save(fig, ws.reports / PLOTS[key])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    track = np.array([p.track.length() for p in models[0].points3D.values()], dtype=np.int64) if models else np.zeros(0)
    if len(track):
        ax.hist(track, bins=np.arange(1.5, track.max() + 1.5), color="C0")
    ax.set_xlabel("track length (photos seeing the point)")
    ax.set_ylabel("3D points")
    ax.set_title(f"track lengths, {ws.model.name and 'sparse/0'} (mean {track.mean() if len(track) else 0:.2f})")
    fig.tight_layout()
    _save(fig, ws.reports / PLOTS["track_length"])
    n = len(stats.names)
    size = max(5.0, min(14.0, 0.2 * n + 3))
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    mat = np.log10(1 + stats.inliers.astype(float))
    im = ax.imshow(mat, cmap="viridis", interpolation="nearest")
    reg = {u["name"] for u in report["unregistered"]}
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    fs = 5 if n > 40 else 7
    ax.set_xticklabels(stats.names, rotation=90, fontsize=fs)
    ax.set_yticklabels(stats.names, fontsize=fs)
    for lbl in list(ax.get_xticklabels()) + list(ax.get_yticklabels()):
        if lbl.get_text() in reg:
            lbl.set_color("red")
    fig.colorbar(im, ax=ax, label="log10(1 + verified inliers)")
    ax.set_title("matches graph: verified inliers per photo pair (red: unregistered)")
    fig.tight_layout()
    _save(fig, ws.reports / PLOTS["matches_graph"])


def write_report(ws: Workspace, report: dict, models: list, stats) -> None:
    """Write ``reports/sfm.json``, ``reports/sfm.md`` and the plots."""
    ws.reports.mkdir(parents=True, exist_ok=True)
    write_plots(ws, report, models, stats)
    atomic_write_text(ws.reports / "sfm.md", _markdown(report, ws))
    atomic_write_json(ws.reports / "sfm.json", report)
