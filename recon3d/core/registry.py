"""The one registry of methods: what `recon3d train`, `recon3d render`, `recon3d export` and the viewer offer.

A *method* (``splat``, ``splat-mcmc``, ``splat-fast``, ``splat-cpu``, ``nerf``, ``nerf-fast``) names

* its **backend** (``splat`` or ``nerf``: the package and the workspace folder it writes),
* its **config** factory and its training **stage** (``recon3d train --method NAME``),
* its **renderer** (``recon3d render``, the viewer's render button): ``load_renderer(workspace,
  device="auto")`` returning ``render(cam_from_world (3, 4), K (3, 3), width, height) -> (H, W, 3) uint8``,
* its **exporters**: names of the formats of ``recon3d export`` (:data:`EXPORTERS`) that read its output.

Everything is a lazy ``"module:attribute"`` reference, so listing methods and formats imports no
backend (and no torch); :func:`available` checks, still without importing, that a method's backend
and its third-party requirements are installed.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from recon3d.core.errors import UserError

RenderFn = Callable[..., Any]
"""``render(cam_from_world (3, 4), K (3, 3) COLMAP convention, width, height) -> (H, W, 3) uint8``."""


@dataclass(frozen=True)
class Method:
    name: str
    """Name used on the command line."""
    backend: str
    """'splat' or 'nerf': the workspace folder the stage writes (``ws.splat`` / ``ws.nerf``)."""
    description: str
    """One line for `recon3d train --help`."""
    config: str
    """'module:function' returning the method's config dataclass."""
    stage: str
    """'module:function' with signature stage(config, workspace, monitor=None, overwrite=False) -> StageResult."""
    renderer: str | None = None
    """'module:function' load_renderer(workspace, device='auto') -> :data:`RenderFn` of the trained model."""
    exporters: tuple[str, ...] = ()
    """Names of the :data:`EXPORTERS` that write this method's trained output."""
    requires: tuple[str, ...] = ()
    """Top-level modules the backend needs besides recon3d (checked by :func:`available`)."""
    output: str | None = None
    """The file a finished training run leaves, relative to the workspace (what the renderer loads)."""


Preset = Method
"""The former name of :class:`Method` (same fields, same order)."""


@dataclass(frozen=True)
class Exporter:
    name: str
    """Name used with `recon3d export --format`."""
    function: str
    """'module:function' with signature export(workspace, output or None) -> Path."""
    description: str
    """One line for `recon3d export --help`."""
    backend: str | None = None
    """The backend whose trained output it reads; None: it reads the cameras and images only."""


METHODS: dict[str, Method] = {}
"""name -> :class:`Method`, in registration order (the order of the help texts)."""
PRESETS = METHODS
"""The former name of :data:`METHODS`."""
EXPORTERS: dict[str, Exporter] = {}
"""format name -> :class:`Exporter`."""


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def register_exporter(exporter: Exporter) -> Exporter:
    EXPORTERS[exporter.name] = exporter
    return exporter


def load_ref(ref: str) -> Callable[..., Any]:
    """The object a ``"module:attribute"`` reference names; a missing backend is a :class:`UserError`."""
    module, attr = ref.split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"backend {ref} is not available in this install ({exc})") from None


def module_exists(name: str) -> bool:
    """Whether module ``name`` can be found (its parent packages are imported, the module itself is not)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def get(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return METHODS[name]


def available(name: str) -> bool:
    """Whether method ``name``'s backend is installed: its stage module and requirements can be found.

    Nothing is imported but recon3d's (light) backend package; an unknown name is a :class:`UserError`.
    """
    method = get(name)
    refs = [method.config, method.stage] + ([method.renderer] if method.renderer else [])
    modules = {ref.split(":")[0] for ref in refs} | set(method.requires)
    return all(module_exists(m) for m in sorted(modules))


def make_config(name: str) -> Any:
    """A fresh config dataclass for method ``name``."""
    return load_ref(get(name).config)()


def stage_function(name: str) -> Callable[..., Any]:
    """The training stage function of method ``name``."""
    return load_ref(get(name).stage)


def renderable() -> list[str]:
    """Names of the methods that have a renderer (the choices of `recon3d render --method`)."""
    return [m.name for m in METHODS.values() if m.renderer]


def renderer(name: str) -> Callable[..., RenderFn]:
    """``load_renderer(workspace, device="auto") -> RenderFn`` of method ``name``'s trained model."""
    method = get(name)
    if not method.renderer:
        raise UserError(f"method {name!r} has no renderer; methods that render: {', '.join(renderable())}")
    return load_ref(method.renderer)


def get_exporter(fmt: str) -> Exporter:
    if fmt not in EXPORTERS:
        raise UserError(f"unknown export format {fmt!r}; available: {', '.join(EXPORTERS)}")
    return EXPORTERS[fmt]


def exporter(fmt: str) -> Callable[..., Any]:
    """``export(workspace, output or None) -> Path`` of format ``fmt``."""
    return load_ref(get_exporter(fmt).function)


def backends() -> list[str]:
    """The backends of the registered methods, in registration order."""
    return list(dict.fromkeys(m.backend for m in METHODS.values()))


def backend_renderer(backend: str) -> str | None:
    """The first registered method of ``backend`` that has a renderer (``None``: no such method)."""
    return next((m.name for m in METHODS.values() if m.backend == backend and m.renderer), None)


def trained_backends(root: Path | str) -> list[str]:
    """The backends whose trained model (a method's ``output``) is in the workspace folder ``root``."""
    root = Path(root)
    return [b for b in backends()
            if any(m.output and (root / m.output).is_file() for m in METHODS.values() if m.backend == b)]


# Formats of `recon3d export`
register_exporter(Exporter("splat-ply", "recon3d.splat.export:export_ply",
                           "Gaussian splats as a standard 3DGS point_cloud.ply (SH degree 3, zero-padded; --sh-degree)",
                           backend="splat"))
register_exporter(Exporter("ply-compressed", "recon3d.splat.export:export_compressed_ply",
                           "Gaussian splats as SuperSplat's compressed PLY (about 1/4 the size)", backend="splat"))
register_exporter(Exporter("splat", "recon3d.splat.export:export_splat",
                           "Gaussian splats as a compact .splat file (web viewers)", backend="splat"))
register_exporter(Exporter("colmap-3.8-db", "recon3d.io.colmap_db38:export_colmap38_db",
                           "database.db in COLMAP 3.8's schema (Debian's colmap; pycolmap 4 writes a newer one)"))
register_exporter(Exporter("nerfstudio", "recon3d.io.nerfstudio:export_nerfstudio",
                           "nerfstudio dataset: transforms.json + images"))


def _splat(name: str, description: str, config: str) -> Method:
    return register(Method(name, "splat", description, f"recon3d.splat.config:{config}", "recon3d.splat.train:train",
                           renderer="recon3d.splat.render:load_renderer",
                           exporters=("splat-ply", "ply-compressed", "splat"),
                           requires=("torch", "gsplat"), output="splat/point_cloud.ply"))


def _nerf(name: str, description: str, config: str) -> Method:
    return register(Method(name, "nerf", description, f"recon3d.nerf.config:{config}", "recon3d.nerf.train:train",
                           renderer="recon3d.nerf.render:load_renderer", requires=("torch",), output="nerf/model.pt"))


# Gaussian splatting (recon3d.splat)
_splat("splat", "3D Gaussian splatting, gsplat default densification (30k steps)", "preset_splat")
_splat("splat-mcmc", "3D Gaussian splatting with gsplat's MCMC strategy", "preset_splat_mcmc")
_splat("splat-fast", "short splatting run for previews and tests (few thousand steps)", "preset_splat_fast")
_splat("splat-cpu", "CPU preview: images at most 160 px, 500 steps (minutes on 2 cores)", "preset_splat_cpu")
# NeRF (recon3d.nerf)
_nerf("nerf", "nerfacto-style NeRF: hash grid, proposal sampling, contraction", "preset_nerf")
_nerf("nerf-fast", "short NeRF run for previews and tests", "preset_nerf_fast")
