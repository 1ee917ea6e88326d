"""Build ``.gpu/``: what the GPU check carries to a lent GPU machine, which reaches no package registry.

That machine's image (the device tool's KINDS.md) has Python 3.12 with a CUDA build of torch, numpy,
scipy, scikit-image, safetensors, tqdm, matplotlib, pillow and pytest, but none of MONAI, nibabel,
isal, SimpleITK, trimesh, pydicom or highdicom. This downloads their CPython 3.12 manylinux wheels
(the versions pinned below, those CI tests with), unpacks them into one folder and packs it as
``.gpu/site.tar.xz`` (xz: SimpleITK's 53 MB wheel alone would not fit the 64 MiB a call carries), and
writes the 256x256x130 case with its label as a one-case MSD dataset in ``.gpu/data/`` (stored as
int16 when its voxels are whole numbers in range, so the values are unchanged and the file smaller).
Run it here, where pip reaches the registry, before the ``run`` call that names ``.gpu`` in ``carry``:

    python -m benchmarks.gpu_bundle [--data ../shared/data/Task02_Heart_cropped] [--case la_003]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from benchmarks.common import DEFAULT_DATA, ROOT, save_nifti, setup_logging

log = logging.getLogger("benchmarks.gpu_bundle")

BUNDLE = ROOT / ".gpu"
SITE_ARCHIVE = BUNDLE / "site.tar.xz"
BUNDLE_DATA = BUNDLE / "data"
CARRY_LIMIT = 64 * 2**20  # what one call of the run tool carries: working tree and carried paths together
MISSING_THERE = ("monai==1.6.1", "nibabel==5.4.2", "isal==1.9.1", "SimpleITK==2.5.7", "trimesh==5.2.0",
                 "pydicom==3.0.2", "highdicom==0.28.2")
TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
          *(f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                                        "manylinux2014_x86_64", "manylinux1_x86_64"))]


def pack_site(archive: Path = SITE_ARCHIVE) -> Path:
    """Install the missing packages for the GPU machine's Python into a folder and pack it with xz."""
    with tempfile.TemporaryDirectory(prefix="atriumseg-site-") as tmp:
        site = Path(tmp) / "site"
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target",
                   str(site), *TARGET, *MISSING_THERE]
        subprocess.run(command, check=True)
        log.info("packing %s (xz, a few minutes)", archive)
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:xz", preset=9) as tar:
            for entry in sorted(site.iterdir()):
                if entry.name != "bin":
                    tar.add(entry, arcname=entry.name)
    return archive


def copy_case(data: Path, case: str, target: Path = BUNDLE_DATA) -> Path:
    """``case``'s image and label from the MSD folder ``data`` as a one-case MSD dataset (same name and
    reference, so training applies the same header fix)."""
    meta = json.loads((data / "dataset.json").read_text())
    entry = next((e for e in meta["training"] if Path(e["image"]).name == f"{case}.nii.gz"), None)
    if entry is None:
        raise ValueError(f"{data / 'dataset.json'} lists no case {case!r}; pass --case with one of its cases")
    for kind in ("image", "label"):
        source = nib.load(data / entry[kind])
        voxels = np.asarray(source.dataobj)
        whole = np.all(voxels == np.round(voxels)) and voxels.min() >= -(2**15) and voxels.max() < 2**15
        stored = voxels.astype(np.int16 if kind == "image" else np.uint8) if whole else voxels
        (target / f"{kind}sTr").mkdir(parents=True, exist_ok=True)
        save_nifti(stored, source.affine, target / entry[kind])
    (target / "dataset.json").write_text(json.dumps({**meta, "numTraining": 1, "training": [entry]}, indent=1))
    return target


def travel_size() -> int:
    """Bytes one ``run`` call sends with ``carry`` [".gpu"]: tracked and untracked-not-ignored files, and .gpu."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    files = [ROOT / name for name in listed if name and (ROOT / name).is_file()]
    files += [p for p in BUNDLE.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_bundle", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MSD folder holding the case")
    parser.add_argument("--case", default="la_003", help="the 256x256x130 case (default la_003)")
    parser.add_argument("--keep-site", action="store_true", help="reuse an existing .gpu/site.tar.xz")
    args = parser.parse_args(argv)
    setup_logging()
    log.info("wrote %s", copy_case(args.data, args.case))
    if not (args.keep_site and SITE_ARCHIVE.is_file()):
        log.info("wrote %s", pack_site())
    size = travel_size()
    log.info("one run call would carry %.1f MiB (limit %.0f MiB)", size / 2**20, CARRY_LIMIT / 2**20)
    if size > CARRY_LIMIT:
        raise SystemExit(f"{size / 2**20:.1f} MiB would travel, over the {CARRY_LIMIT / 2**20:.0f} MiB a run call "
                         "carries: leave untracked files out of the working tree or ignore them, then rerun")


if __name__ == "__main__":
    main()
