"""Segmenting many inputs: each case ends ``ok``, ``skipped`` or ``failed`` with its reason, never a crash."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm.auto import tqdm

from atriumseg.pipeline.inference import Segmenter
from atriumseg.pipeline.io import IMAGE_SUFFIXES, ImageReadError, output_path, read_image, write_image

log = logging.getLogger(__name__)

OK, SKIPPED, FAILED = "ok", "skipped", "failed"


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one input."""

    input: str
    output: str = ""
    status: str = OK
    reason: str = ""
    seconds: float = 0.0
    volume_ml: float = math.nan
    voxels: int = 0
    flags: tuple[str, ...] = field(default_factory=tuple)


def _is_dicom_folder(path: Path) -> bool:
    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))


def discover(inputs: list[Path]) -> tuple[list[Path], list[CaseResult]]:
    """Expand files and folders into cases; stray files inside folders are reported as skipped.

    A folder holding DICOM files is one case; otherwise its image files and sub-folders are
    searched. A path named explicitly that is missing or not an image stays a case, so that
    it fails with its reason.
    """
    cases: list[Path] = []
    skipped: list[CaseResult] = []

    def visit(folder: Path) -> None:
        if _is_dicom_folder(folder):
            cases.append(folder)
            return
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                visit(entry)
            elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                cases.append(entry)
            else:
                skipped.append(CaseResult(input=str(entry), status=SKIPPED, reason="not an image file"))

    for path in map(Path, inputs):
        if path.is_dir():
            visit(path)
        else:
            cases.append(path)
    return cases, skipped


def segment_case(
    segmenter: Segmenter,
    path: Path,
    output_dir: Path,
    fmt: str = "nii.gz",
    overwrite: bool = False,
    assume_orientation: str | None = None,
) -> CaseResult:
    """Segment one input and write its mask; every expected problem becomes a ``failed`` result."""
    started = time.perf_counter()
    target = output_path(path, output_dir, fmt)
    if target.exists() and not overwrite:
        return CaseResult(str(path), str(target), SKIPPED, "output exists (use --overwrite to replace it)")
    try:
        volume = read_image(path)
        mask = segmenter(volume.tensor, assume_orientation=assume_orientation)[0].numpy()
        write_image(volume.geometry.image(mask), target, overwrite=overwrite)
    except (ImageReadError, FileExistsError) as err:
        return CaseResult(str(path), "", FAILED, str(err), time.perf_counter() - started)
    except (RuntimeError, ValueError, OSError, MemoryError) as err:
        return CaseResult(str(path), "", FAILED, f"{path}: {type(err).__name__}: {err}", time.perf_counter() - started)
    voxels = int(mask.sum())
    voxel_ml = float(np.prod(np.linalg.norm(volume.tensor.affine.numpy()[:3, :3], axis=0))) / 1000.0
    flags = ("empty mask",) if voxels == 0 else ()
    return CaseResult(str(path), str(target), OK, "", time.perf_counter() - started, voxels * voxel_ml, voxels, flags)


def segment_batch(
    segmenter: Segmenter,
    inputs: list[Path],
    output_dir: Path,
    fmt: str = "nii.gz",
    overwrite: bool = False,
    assume_orientation: str | None = None,
    show_progress: bool = True,
) -> list[CaseResult]:
    """Segment every case found in ``inputs`` into ``output_dir``, logging one line per case."""
    cases, results = discover(inputs)
    for result in results:
        log.info("skipped %s: %s", result.input, result.reason)
    for path in tqdm(cases, desc="segmenting", unit="case", disable=not show_progress):
        result = segment_case(segmenter, path, output_dir, fmt, overwrite, assume_orientation)
        if result.status == OK:
            log.info("ok %s -> %s (%.1f s, %.1f mL)", path, result.output, result.seconds, result.volume_ml)
        elif result.status == SKIPPED:
            log.info("skipped %s: %s", path, result.reason)
        else:
            log.error("failed %s", result.reason)
        results.append(result)
    return results
