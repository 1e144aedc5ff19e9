"""Photos in: decode every photo up front (Pillow, so truncated files are caught), apply the
EXIF orientation, drop exact duplicates, explain every skipped file, and ingest the rest into
``WS/images`` under their own names (hard links where possible; rotated photos written upright).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


# ------------------------------------------------------------------------------------ images
@dataclass
class InputImage:
    """A photo that passed the checks."""

    source: Path
    """Where it was read from."""
    name: str
    """Its name in the workspace (the file name)."""
    width: int
    """Width after EXIF orientation."""
    height: int
    """Height after EXIF orientation."""
    digest: str
    """SHA-1 of the file."""
    transpose: bool = False
    """True when the EXIF orientation says the pixels must be rotated or flipped to stand upright."""
    exif_camera: str = ""
    """EXIF make, model and focal length ('' without EXIF): photos that share it share a camera."""


@dataclass
class ImageScan:
    """Result of :func:`scan_images`."""

    images: list[InputImage]
    """Usable photos in name order."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(file name, reason) for every photo left out."""


def sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scan_images(folder: Path | str, progress: Callable | None = None) -> ImageScan:
    """Decode-check every photo of ``folder`` and decide which ones SfM uses.

    A photo is skipped (with a reason) when it cannot be decoded completely (e.g. a truncated
    JPEG), is smaller than 16 pixels, or has the same bytes as an earlier photo.

    Args:
        folder: folder of photos (files with an image extension, not recursive).
        progress: optional tqdm-like wrapper.
    Returns:
        :class:`ImageScan`. Raises :class:`UserError` when the folder holds no image files.
    """
    from PIL import Image, ImageFile, UnidentifiedImageError

    from recon3d.io.images import link_target, list_images

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    dangling: list[Path] = []
    paths = list_images(folder, dangling)
    wrap = progress or (lambda it, **kw: it)
    good: list[InputImage] = []
    skipped: list[tuple[str, str]] = [(p.name, f"a link to a missing file ({link_target(p)}); restore its target "
                                               "(e.g. `git annex get`, `dvc pull`) or remove the link")
                                      for p in dangling]
    seen: dict[str, str] = {}
    for path in wrap(paths, desc="checking images", unit="img"):
        try:
            with Image.open(path) as im:
                im.load()
                exif = im.getexif()
                orientation = exif.get(0x0112, 1)
                sub = exif.get_ifd(0x8769) if exif else {}
                exif_camera = "" if not exif or not (exif.get(0x010F) or exif.get(0x0110)) else \
                    f"{exif.get(0x010F, '')}|{exif.get(0x0110, '')}|{sub.get(0x920A, '')}"
                w, h = im.size
        except UnidentifiedImageError:
            skipped.append((path.name, "not an image Pillow can read"))
            continue
        except (OSError, SyntaxError, ValueError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            skipped.append((path.name, f"broken or truncated file ({msg})"))
            continue
        except Image.DecompressionBombError:
            skipped.append((path.name, "too many pixels"))
            continue
        transpose = orientation not in (None, 0, 1)
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        if min(w, h) < 16:
            skipped.append((path.name, f"too small ({w}x{h} pixels)"))
            continue
        digest = sha1_file(path)
        if digest in seen:
            skipped.append((path.name, f"identical to {seen[digest]}"))
            continue
        seen[digest] = path.name
        # a link (git-annex, DVC, by hand; relative or absolute) is read through: its target is the photo
        good.append(InputImage(path.resolve() if path.is_symlink() else path, path.name, w, h, digest, transpose, str(exif_camera).strip()))
    return ImageScan(good, skipped)


def ingest_images(images: list[InputImage], dest: Path) -> None:
    """Put the photos into ``dest`` under their names (hard link, else copy; upright when rotated).

    Files already in ``dest`` with the same content are left alone; others in ``dest`` are removed.
    """
    from PIL import Image, ImageOps

    dest.mkdir(parents=True, exist_ok=True)
    wanted = {im.name for im in images}
    for p in dest.iterdir():
        if p.name not in wanted and (p.is_file() or p.is_symlink()):
            p.unlink()
    for im in images:
        target = dest / im.name
        if target.exists() and target.resolve() == im.source.resolve():
            continue
        fd, tmp_name = tempfile.mkstemp(prefix=f".{im.name}.", suffix=f".tmp{Path(im.name).suffix}", dir=dest)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            if im.transpose:
                with Image.open(im.source) as src:
                    exif = src.getexif()
                    upright = ImageOps.exif_transpose(src)
                    exif[0x0112] = 1
                    kwargs = {"exif": exif.tobytes()} if exif else {}
                    if (src.format or "").upper() == "JPEG":
                        kwargs["quality"] = 95
                    upright.save(tmp, format=src.format, **kwargs)
            else:
                tmp.unlink()
                try:  # os.link would link a symbolic link itself (dangling inside dest when relative)
                    os.link(im.source.resolve(), tmp)
                except OSError:
                    shutil.copy2(im.source.resolve(), tmp)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
