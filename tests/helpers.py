"""Shared builders for the tests: synthetic datasets on disk and a quickly trained tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from atriumseg.pipeline.training import TrainConfig, train
from atriumseg.synthetic import SyntheticCase, make_affine, synthetic_case

SHAPE = (48, 48, 40)


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """Save ``array`` as NIfTI with both qform and sform set to ``affine``."""
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, 1)
    image.set_sform(affine, 1)
    nib.save(image, path)
    return path


def write_msd_dataset(root: Path, seeds: list[int], name: str = "Synthetic") -> Path:
    """An MSD-layout dataset of synthetic RAS cases named ``case_SEED``."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for seed in seeds:
        case = synthetic_case(SHAPE, make_affine(SHAPE), seed=seed)
        write_nifti(root / "imagesTr" / f"case_{seed:03d}.nii.gz", case.image, case.affine)
        write_nifti(root / "labelsTr" / f"case_{seed:03d}.nii.gz", case.label, case.affine)
        training.append({"image": f"./imagesTr/case_{seed:03d}.nii.gz", "label": f"./labelsTr/case_{seed:03d}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"name": name, "reference": "atriumseg tests", "training": training}))
    return root


def tiny_config(dataset: Path, output: Path, **overrides: object) -> TrainConfig:
    """A training run small enough for a test: a narrow, shallow U-Net on 48-voxel slices."""
    settings = dict(
        dataset=dataset, output=output, width=8, depth=3, context=0, spacing=(1.5, 1.5), patch=32,
        epochs=6, steps_per_epoch=25, volumes_per_step=4, slices_per_volume=4, learning_rate=5e-3,
        warmup_steps=10, val_cases=("case_103",), val_every=3, workers=0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


__all__ = ["SHAPE", "SyntheticCase", "dice", "tiny_config", "train", "write_msd_dataset", "write_nifti"]
