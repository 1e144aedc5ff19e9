"""Colour maps and legends: points coloured by a scalar (reprojection error) and the bar that explains them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_VALUE_RGB = np.array([128, 128, 128], dtype=np.uint8)
"""Colour of points without a value (e.g. no observation)."""

CAMERA_RGB = (40, 90, 220)
"""Frustums of the model's cameras."""
SELECTED_RGB = (240, 120, 0)
"""Frustum of the camera the user clicked."""
GT_CAMERA_RGB = (30, 170, 60)
"""Frustums of ground-truth cameras."""


def _lut(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colour map."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255 + 0.5).astype(np.uint8)


def colorize(values: np.ndarray, vmin: float, vmax: float, cmap: str = "turbo") -> np.ndarray:
    """Colours of scalars, ``(N,) -> (N, 3)`` uint8; NaN gets :data:`NO_VALUE_RGB`.

    Values are clipped to ``[vmin, vmax]`` before mapping.
    """
    values = np.asarray(values, np.float64)
    lut = _lut(cmap)
    span = vmax - vmin if vmax > vmin else 1.0
    t = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / span, 0.0, 1.0)
    out = lut[np.round(t * 255).astype(np.int64)]
    out[~np.isfinite(values)] = NO_VALUE_RGB
    return out


def colorbar_image(width: int = 256, height: int = 14, cmap: str = "turbo") -> np.ndarray:
    """A horizontal colour bar, ``(height, width, 3)`` uint8, low values on the left."""
    lut = _lut(cmap)
    row = lut[np.round(np.linspace(0, 255, width)).astype(np.int64)]
    return np.ascontiguousarray(np.broadcast_to(row[None], (height, width, 3)))


@dataclass
class Legend:
    """How a scalar maps to colour, for the legend panel."""

    vmin: float
    vmax: float
    label: str
    """What the values are, with their unit."""
    note: str
    """How the range was chosen and what grey means."""

    def markdown(self) -> str:
        return (f"**{self.label}**: {self.vmin:.2f} (left) → {self.vmax:.2f} (right)  \n"
                f"<small>{self.note}</small>")


def error_legend(errors: np.ndarray, label: str = "reprojection error, px") -> Legend:
    """Colour range for per-point errors: 0 to their 95th percentile (robust to a few outliers)."""
    errors = np.asarray(errors, np.float64)
    finite = errors[np.isfinite(errors)]
    vmax = float(np.percentile(finite, 95)) if len(finite) else 1.0
    vmax = vmax if vmax > 1e-6 else max(float(finite.max()) if len(finite) else 0.0, 1e-3)
    missing = int(len(errors) - len(finite))
    note = (f"range 0 to the 95th percentile; mean {finite.mean():.3f} px, max {finite.max():.3f} px"
            if len(finite) else "no observations")
    if missing:
        note += f"; {missing} points without observations are grey"
    return Legend(0.0, vmax, label, note)
