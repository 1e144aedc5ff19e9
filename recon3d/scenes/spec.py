"""Scene specifications: the dataclasses behind ``scenes/*.yaml``.

World frame: z up, metres. Cameras follow :mod:`recon3d.geometry` (OpenCV frame, COLMAP
pixel centres).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from recon3d.core import config as cfg
from recon3d.core.errors import UserError


@dataclass
class TextureSpec:
    """A procedural texture, drawn once per object into a square image and mapped onto its surface."""

    seed: int = 0
    """Random seed of the pattern (same seed, same texture)."""
    tile: float = 2.0
    """World size in metres that one copy of the texture image covers (it repeats beyond)."""
    resolution: int = 1024
    """Texture image side in texels."""
    kind: Literal["shapes", "checker", "noise", "plain"] = "shapes"
    """'shapes': random filled shapes over noise (feature-rich); 'checker'; 'noise'; 'plain' (one colour)."""
    color: list[float] = field(default_factory=lambda: [0.7, 0.7, 0.7])
    """Base RGB colour in [0, 1] ('plain' uses only this)."""
    density: float = 1.0
    """Relative number of shapes for 'shapes'."""
    contrast: float = 1.0
    """Pattern contrast around the base colour (1: as drawn; 0.1: faint, for low-texture scenes)."""


@dataclass
class ObjectSpec:
    """One textured primitive."""

    type: Literal["plane", "box", "sphere"]
    """Primitive: a finite 'plane' (rectangle), an oriented 'box' or a 'sphere'."""
    center: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    """Centre in world coordinates (metres)."""
    size: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    """Plane: [width, height]; box: [sx, sy, sz] edge lengths."""
    normal: list[float] = field(default_factory=lambda: [0.0, 0.0, 1.0])
    """Plane normal (the plane's width axis is horizontal when possible)."""
    yaw_deg: float = 0.0
    """Rotation about the world z axis (boxes) or about the normal (planes), degrees."""
    radius: float = 0.5
    """Sphere radius in metres."""
    texture: TextureSpec = field(default_factory=TextureSpec)
    """Surface texture."""


@dataclass
class IntrinsicsSpec:
    """A camera: pinhole intrinsics and optional OpenCV distortion."""

    width: int = 640
    """Image width in pixels."""
    height: int = 480
    """Image height in pixels."""
    fx: float = 500.0
    """Focal length in pixels along x."""
    fy: float = 500.0
    """Focal length in pixels along y."""
    cx: Optional[float] = None
    """Principal point x (COLMAP convention; default width / 2)."""
    cy: Optional[float] = None
    """Principal point y (default height / 2)."""
    dist: list[float] = field(default_factory=list)
    """OpenCV distortion k1, k2, p1, p2, k3 (empty: none)."""


@dataclass
class ViewsSpec:
    """Where the cameras are."""

    type: Literal["ring", "grid", "board"] = "ring"
    """'ring': on a circle around target; 'grid': rows facing a wall; 'board': poses facing a board (see layout)."""
    count: int = 24
    """Number of views (for 'grid': rows x columns must equal it)."""
    radius: float = 6.0
    """Ring radius (m), or distance to the wall for 'grid', or mean distance to the board."""
    height: float = 2.5
    """Camera height above target for 'ring'; vertical spacing of rows for 'grid'."""
    target: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.5])
    """The point cameras look at (ring) or the wall centre (grid)."""
    arc_deg: float = 360.0
    """'ring': the arc the views span, degrees (360: a full ring, evenly spaced; less: an arc whose
    first and last views sit at its ends)."""
    rows: int = 2
    """Rows of a 'grid'."""
    spacing: float = 0.6
    """Horizontal spacing between grid views (m)."""
    jitter_deg: float = 3.0
    """Random rotation jitter of each view (degrees)."""
    jitter_m: float = 0.05
    """Random position jitter of each view (m)."""
    layout: Literal["cover", "random"] = "cover"
    """'board' views: 'cover' pushes the board, view after view, into the image's corners, edges and
    centre, tilted by tilt_deg (what calibration guides ask of real photos; the corners reach the
    whole sensor); 'random': random directions with the board near the image centre (edges stay empty)."""
    tilt_deg: list[float] = field(default_factory=lambda: [30.0, 45.0])
    """'board' views with layout 'cover': [min, max] angle between the board and the image plane, degrees."""


@dataclass
class LightSpec:
    """Lambertian shading: ambient plus one directional light."""

    direction: list[float] = field(default_factory=lambda: [0.4, 0.3, 1.0])
    """Direction towards the light (world)."""
    ambient: float = 0.45
    """Ambient term."""
    diffuse: float = 0.55
    """Directional term."""


@dataclass
class BoardSpec:
    """A calibration checkerboard."""

    cols: int = 9
    """Inner corners along the board's x axis."""
    rows: int = 6
    """Inner corners along the board's y axis."""
    square: float = 0.025
    """Square side in metres."""
    margin: float = 1.0
    """White margin around the squares, in squares."""


@dataclass
class RigSpec:
    """A stereo rig: the right camera relative to the left."""

    baseline: float = 0.12
    """Distance between the camera centres (m), along the left camera's +x."""
    rotation_deg: list[float] = field(default_factory=lambda: [0.3, -1.0, 0.2])
    """Right camera's rotation relative to the left, as XYZ Euler angles in degrees."""
    pairs: int = 6
    """Number of stereo pairs of the scene."""
    calib_views: int = 14
    """Number of checkerboard pairs for calibrating the rig."""
    calib_distance: float = 0.6
    """Mean distance from the rig to the calibration board (m)."""


@dataclass
class SceneSpec:
    """A synthetic scene: geometry, textures, light, cameras, and what to write."""

    name: str
    """Scene name (the YAML file's stem)."""
    kind: Literal["multiview", "stereo", "checkerboard"] = "multiview"
    """'multiview': photo folder + COLMAP GT; 'stereo': rig pairs; 'checkerboard': calibration views."""
    description: str = ""
    """One line saying what the scene is for."""
    seed: int = 0
    """Seed for everything random (view jitter, point sampling)."""
    camera: IntrinsicsSpec = field(default_factory=IntrinsicsSpec)
    """The camera (all views share it)."""
    objects: list[ObjectSpec] = field(default_factory=list)
    """Textured primitives."""
    views: ViewsSpec = field(default_factory=ViewsSpec)
    """Camera placement."""
    light: LightSpec = field(default_factory=LightSpec)
    """Lighting."""
    background: list[float] = field(default_factory=lambda: [0.55, 0.62, 0.72])
    """RGB colour where rays hit nothing."""
    supersample: int = 2
    """Rays per pixel side (2 = 4 rays per pixel) for anti-aliased colour; depth uses pixel centres."""
    points: int = 3000
    """Ground-truth 3D points to sample on visible surfaces (multiview)."""
    board: Optional[BoardSpec] = None
    """The checkerboard (checkerboard and stereo scenes)."""
    rig: Optional[RigSpec] = None
    """The stereo rig (stereo scenes)."""
    image_format: Literal["png", "jpg"] = "png"
    """File format of the rendered photos."""
    noise: float = 0.0
    """Sensor noise: standard deviation of Gaussian noise added to each pixel's colour in [0, 1]
    (seeded per view; ground truth is unaffected)."""


SCENES_DIR = Path(__file__).resolve().parents[2] / "scenes"
"""Top-level folder of the shipped scene specs (``scenes/*.yaml``)."""


def _spec_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent / "specs"  # installed copy (wheel)
    return [d for d in (SCENES_DIR, here) if d.is_dir()]


def list_scenes() -> dict[str, Path]:
    """Shipped scene names and their YAML files."""
    found: dict[str, Path] = {}
    for d in _spec_dirs():
        for p in sorted(d.glob("*.yaml")):
            found.setdefault(p.stem, p)
    return found


def load_spec(name_or_path: str | Path) -> SceneSpec:
    """Load a scene by shipped name (``orbit``) or from a YAML path; errors are one line."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        scenes = list_scenes()
        if text not in scenes:
            raise UserError(f"unknown scene {text!r}; shipped scenes: {', '.join(scenes)} (or give a path to a .yaml spec)")
        path = scenes[text]
    data = cfg.load_yaml(path)
    data.setdefault("name", path.stem)
    spec = cfg.from_dict(SceneSpec, data, where=str(path))
    if spec.kind in ("checkerboard", "stereo") and spec.board is None:
        spec.board = BoardSpec()
    if spec.kind == "stereo" and spec.rig is None:
        spec.rig = RigSpec()
    return spec
