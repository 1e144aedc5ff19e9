"""The Python half of ``scripts/gpu_bundle.sh`` and ``scripts/gpu_check.sh`` (stdlib only).

    python3 scripts/gpu_kit.py bundle DIR [--python 3.12] [--platform manylinux_2_28_x86_64] [--image cuda|bare|FILE]
    python3 scripts/gpu_kit.py size DIR                   # MiB of the wheels in DIR
    python3 scripts/gpu_kit.py requirements DIR           # what gpu_check.sh installs from DIR

``bundle`` resolves recon3d's dependencies (``pyproject.toml``; plus pytest from the ``dev`` extra) for
the given Python version and platform with pip's own resolver, as if torch were already installed (a
stand-in torch wheel with no dependencies takes its place: the GPU machine has its CUDA torch), leaves
out what the GPU checks never import (open3d: only the stereo fusion, the mesh export and the viewer's
point clouds use it; playwright: browser tests) and what the target image already holds (``--image``:
``cuda`` = the package list ``scripts/gpu_image_packages.txt``, ``bare`` = nothing, or a file of
names), then downloads exactly those wheels (``pip download --no-deps --only-binary=:all:``), builds
recon3d's own wheel, and writes ``DIR/requirements.txt`` (what to install) and ``DIR/MANIFEST.txt``
(target, what was left out and why, sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LEFT_OUT = {
    "torch": "the GPU machine's own CUDA build of torch is used (recon3d pins torch==2.13.0 for CPU "
             "installs; it is installed with --no-deps)",
    "open3d-cpu": "not imported by the GPU checks (stereo fusion, mesh export and the viewer's point "
                  "clouds only)",
    "playwright": "browser tests only (not marked cuda)",
}
EXTRA = ["pytest>=7"]  # gpu_check.sh runs `pytest -m cuda`
PLATFORMS = ["manylinux_2_{}_x86_64".format(n) for n in (17, 24, 27, 28, 31, 34, 35)] + [
    "manylinux2014_x86_64", "manylinux1_x86_64", "manylinux_2_5_x86_64"]


def norm(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def req_name(req: str) -> str:
    return norm(re.split(r"[\s<>=!~;\[]", req.strip(), maxsplit=1)[0])


def project_requirements() -> list[str]:
    """``[project] dependencies`` of pyproject.toml (parsed without tomllib, for Python 3.10)."""
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M)
    if block is None:
        raise SystemExit("gpu_bundle: no [project] dependencies in pyproject.toml")
    return re.findall(r'"([^"]+)"', block.group(1))


def image_packages(image: str) -> set[str]:
    if image == "bare":
        return set()
    path = REPO / "scripts" / "gpu_image_packages.txt" if image == "cuda" else Path(image)
    if not path.is_file():
        raise SystemExit(f"gpu_bundle: --image {image}: no such file; give 'cuda', 'bare' or a file of package names")
    return {norm(line.split("#")[0].strip()) for line in path.read_text().splitlines() if line.split("#")[0].strip()}


def pip_env() -> dict:
    """The environment for pip: no config files and no extra find-links (only the package index)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def target_args(python: str, platforms: list[str]) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    for p in platforms:
        args += ["--platform", p]
    return args


def stub_torch(folder: Path) -> Path:
    """A wheel ``torch 2.13.0+stub`` with no dependencies (sorts above 2.13.0, so the resolver takes it)."""
    wheel = folder / "torch-2.13.0+stub-py3-none-any.whl"
    info = "torch-2.13.0+stub.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0+stub\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: gpu_kit\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return wheel


def resolve(reqs: list[str], python: str, platforms: list[str]) -> list[tuple[str, str]]:
    """(name, version) of every distribution ``reqs`` need on the target, torch excluded."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stub_torch(tmp)
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
               "--report", str(tmp / "report.json"), "--target", str(tmp / "t"), "--find-links", str(tmp),
               *target_args(python, platforms), "torch==2.13.0", *reqs]
        proc = subprocess.run(cmd, env=pip_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"gpu_bundle: pip could not resolve the requirements for Python {python}:\n"
                             + proc.stderr.strip()[-2000:])
        report = json.loads((tmp / "report.json").read_text())
    return [(i["metadata"]["name"], i["metadata"]["version"]) for i in report["install"]
            if norm(i["metadata"]["name"]) != "torch"]


def wheels_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).glob("*.whl")) / 2**20


def bundle(args) -> int:
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    have = image_packages(args.image)
    reqs = [r for r in project_requirements() + EXTRA if req_name(r) not in LEFT_OUT]
    print(f"gpu_bundle: resolving {len(reqs)} requirements for CPython {args.python} on {args.platform}")
    pins = resolve(reqs, args.python, [args.platform] + [p for p in PLATFORMS if p != args.platform])
    fetch = [(n, v) for n, v in pins if norm(n) not in have]
    skipped = sorted(f"{n}=={v}" for n, v in pins if norm(n) in have)
    print(f"gpu_bundle: {len(pins)} distributions needed; {len(skipped)} already in the image ({args.image}); "
          f"downloading {len(fetch)}")
    if fetch:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(out),
               *target_args(args.python, [args.platform] + [p for p in PLATFORMS if p != args.platform]),
               *[f"{n}=={v}" for n, v in fetch]]
        proc = subprocess.run(cmd, env=pip_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit("gpu_bundle: pip download failed:\n" + proc.stderr.strip()[-2000:])
    # recon3d itself, pure Python: built here, installed there with --no-deps
    build_wheel(out)
    (out / "requirements.txt").write_text("\n".join(reqs) + "\n")
    size = wheels_mib(out)
    lines = [f"recon3d GPU bundle: CPython {args.python}, {args.platform}, image profile '{args.image}'",
             f"size: {size:.1f} MiB in {len(list(out.glob('*.whl')))} wheels", "",
             "left out (not installed from this bundle):"]
    lines += [f"  {k}: {v}" for k, v in LEFT_OUT.items()]
    lines += [f"  {s}: already in the image" for s in skipped]
    lines += ["", "wheels:"] + [f"  {p.name} ({p.stat().st_size / 2**20:.1f} MiB)" for p in sorted(out.glob("*.whl"))]
    (out / "MANIFEST.txt").write_text("\n".join(lines) + "\n")
    for k, v in LEFT_OUT.items():
        print(f"gpu_bundle: left out {k}: {v}")
    print(f"gpu_bundle: {out}: {size:.1f} MiB (CPython {args.python}, {args.platform}, image '{args.image}')")
    return 0


def build_wheel(out: Path) -> None:
    """recon3d's wheel into ``out``, built from a copy of the sources (the checkout stays clean)."""
    import shutil

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(REPO / "recon3d", src / "recon3d", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(REPO / name, src / name)
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                               "-w", str(out), str(src)], env=pip_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit("gpu_bundle: building recon3d's wheel failed:\n" + proc.stderr.strip()[-2000:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bundle")
    b.add_argument("dir")
    b.add_argument("--python", default="3.12", help="target CPython version, e.g. 3.12")
    b.add_argument("--platform", default="manylinux_2_28_x86_64")
    b.add_argument("--image", default="cuda", help="'cuda' (scripts/gpu_image_packages.txt), 'bare' or a file")
    s = sub.add_parser("size")
    s.add_argument("dir")
    r = sub.add_parser("requirements")
    r.add_argument("dir")
    args = parser.parse_args()
    if args.cmd == "bundle":
        if not re.fullmatch(r"3\.\d+", args.python):
            raise SystemExit(f"gpu_bundle: --python {args.python}: give a version like 3.12")
        return bundle(args)
    if args.cmd == "size":
        print(f"{wheels_mib(Path(args.dir)):.1f}")
        return 0
    print((Path(args.dir) / "requirements.txt").read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
