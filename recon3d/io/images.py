"""Photo files: which files count as photos, and listing them.
"""

from __future__ import annotations

import os
from pathlib import Path

from recon3d.core.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


"""File extensions recon3d treats as photos (case-insensitive)."""


def dangling_links(folder: Path | str) -> list[Path]:
    """Symbolic links with a photo's extension directly inside ``folder`` whose target is missing."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_symlink() and not p.exists() and p.suffix.lower() in IMAGE_EXTENSIONS)


def link_target(path: Path) -> str:
    """What the symbolic link ``path`` points at, as written in the link."""
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def list_images(folder: Path | str, dangling: list[Path] | None = None) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (links to photos count as photos).

    A link whose target is missing is appended to ``dangling`` when a list is given (the caller
    explains it), else it is a :class:`UserError` naming it: never silently left out.
    Raises :class:`UserError` when the folder is missing or holds no images.
    """
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{folder}: no such folder; give a folder of photos")
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder; give a folder of photos")
    broken = dangling_links(folder)
    if broken and dangling is None:
        raise UserError(f"{broken[0]}: a link to a missing file ({link_target(broken[0])})"
                        + (f" (and {len(broken) - 1} more)" if len(broken) > 1 else "")
                        + "; restore its target (e.g. `git annex get` / `dvc pull`) or remove the link")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        hint = f" ({len(broken)} link(s) to missing files, e.g. {broken[0].name})" if broken else ""
        raise UserError(f"{folder}: no images found{hint} (looked for {', '.join(IMAGE_EXTENSIONS)}); "
                        "point recon3d at a folder of photos")
    if dangling is not None:
        dangling.extend(broken)
    return images
