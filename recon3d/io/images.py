"""Photo files: which files count as photos, and listing them.
"""

from __future__ import annotations

from pathlib import Path

from recon3d.core.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


"""File extensions recon3d treats as photos (case-insensitive)."""


def list_images(folder: Path | str) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name.

    Raises :class:`UserError` when the folder is missing or holds no images.
    """
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{folder}: no such folder; give a folder of photos")
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder; give a folder of photos")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise UserError(f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}); point recon3d at a folder of photos")
    return images
