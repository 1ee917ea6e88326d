"""The main job in one call: segment the bundled sample with the built-in model and show how good it is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atriumseg.pipeline.analysis.metrics import case_metrics
from atriumseg.pipeline.analysis.overlay import overlay_png
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.io.volumes import read_image
from atriumseg.pipeline.io.writing import write_image

SAMPLE = "sample_la_023"


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote and measured."""

    mask: Path
    overlay: Path
    dice: float
    hd95_mm: float
    volume_ml: float
    true_volume_ml: float


def sample_paths() -> tuple[Path, Path]:
    """(image, label) of the bundled sample, an MSD Task02 case held out from training (CC-BY-SA 4.0)."""
    folder = Path(__file__).resolve().parent / "data"
    return folder / f"{SAMPLE}_image.nii.gz", folder / f"{SAMPLE}_label.nii.gz"


def run_demo(output: Path, segmenter: Segmenter) -> DemoResult:
    """Segment the sample into ``output`` (replacing an earlier demo's files) and compare with its label."""
    image_path, label_path = sample_paths()
    volume, label = read_image(image_path), read_image(label_path)
    mask = segmenter(volume.tensor)[0].numpy()
    truth = label.tensor[0].numpy() > 0.5
    affine = volume.tensor.affine.numpy()
    metrics = case_metrics(mask, truth, affine)
    mask_path = write_image(volume.geometry.image(mask), Path(output) / f"{SAMPLE}_mask.nii.gz", overwrite=True)
    title = (
        f"{SAMPLE}: Dice {metrics.dice:.3f}, HD95 {metrics.hd95_mm:.1f} mm, "
        f"LA volume {metrics.predicted_ml:.1f} mL (reference {metrics.true_ml:.1f} mL)"
    )
    overlay = overlay_png(
        volume.tensor[0].numpy().astype(np.float32), affine, mask, Path(output) / f"{SAMPLE}_overlay.png",
        truth=truth.astype(np.uint8), title=title,
    )
    return DemoResult(mask_path, overlay, metrics.dice, metrics.hd95_mm, metrics.predicted_ml, metrics.true_ml)
