"""Datasets in the Medical Segmentation Decathlon layout, with header fixes known to the project."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from atriumseg.geometry import validate_axcodes
from atriumseg.pipeline.io.names import case_name, is_nifti

# Datasets whose released headers are known to lie about anatomy, keyed by dataset.json's
# (name, reference); the value is the true orientation of the stored voxel axes.
KNOWN_ORIENTATIONS: dict[tuple[str, str], str] = {
    ("LeftAtrium", "King's College London"): "ASL",  # MSD Task02_Heart: headers claim RAS
}


@dataclass(frozen=True)
class LabelledCase:
    """One case of a training dataset: an image and its label; named as inference names the image
    (:func:`~atriumseg.pipeline.io.names.case_name`), so a case keeps one name from training to reports."""

    name: str
    image: Path
    label: Path


@dataclass(frozen=True)
class MSDDataset:
    """A dataset folder in the MSD layout; ``orientation`` is the declared true frame, or None to trust headers.

    ``reference`` and ``licence`` are dataset.json's, carried onto the card of a model trained on it.
    """

    root: Path
    name: str
    cases: tuple[LabelledCase, ...]
    orientation: str | None
    reference: str = ""
    licence: str = ""

    def select(self, names: list[str]) -> list[LabelledCase]:
        """The cases named in ``names``, in that order; unknown names raise a ValueError."""
        by_name = {c.name: c for c in self.cases}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ValueError(f"cases {missing} are not in {self.root} (it has {sorted(by_name)})")
        return [by_name[n] for n in names]


def check_label_grid(case: LabelledCase) -> None:
    """Refuse (:class:`ValueError`) a label whose grid (shape, voxel-to-world affine) is not its image's: training
    resamples each by its own header, so a label placed elsewhere would be learnt as the atrium silently (the
    headers alone are read; NIfTI, the MSD layout's format, only)."""
    if not (is_nifti(case.image) and is_nifti(case.label)):
        return
    image, label = nib.load(case.image), nib.load(case.label)
    if image.shape[:3] != label.shape[:3]:
        raise ValueError(f"{case.name}: image {image.shape[:3]} != label {label.shape[:3]}; labels must share "
                         "their image's grid")
    if not np.allclose(image.affine, label.affine, atol=1e-3):
        raise ValueError(f"{case.name}: the label's affine differs from the image's (same shape, other position, "
                         "orientation or voxel size); labels must share their image's grid")


def load_msd_dataset(root: Path, orientation: str | None = "known") -> MSDDataset:
    """Read ``dataset.json``; ``orientation='known'`` applies a header fix only where the project knows one."""
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{root}: no dataset.json; expected the MSD layout (dataset.json, imagesTr/, labelsTr/)"
        )
    meta = json.loads(meta_path.read_text())
    cases = []
    for item in meta.get("training", []):
        image, label = root / item["image"], root / item["label"]
        if not image.is_file() or not label.is_file():
            raise FileNotFoundError(f"{root}: dataset.json lists {item['image']} / {item['label']}, which are missing")
        cases.append(LabelledCase(name=case_name(image), image=image, label=label))
        check_label_grid(cases[-1])
    if not cases:
        raise ValueError(f"{meta_path}: lists no training cases")
    if orientation == "known":
        orientation = KNOWN_ORIENTATIONS.get((meta.get("name", ""), meta.get("reference", "")))
    elif orientation is not None:
        orientation = validate_axcodes(orientation)
    return MSDDataset(
        root=root, name=meta.get("name", root.name), cases=tuple(cases), orientation=orientation,
        reference=str(meta.get("reference", "")), licence=str(meta.get("licence", "")),
    )


def kfold_split(names: list[str], folds: int, fold: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic (train, validation) names for fold ``fold`` of ``folds``."""
    if not 0 <= fold < folds or folds < 2:
        raise ValueError(f"need 0 <= fold < folds and folds >= 2, got fold={fold}, folds={folds}")
    shuffled = sorted(names)
    random.Random(seed).shuffle(shuffled)
    val = sorted(shuffled[fold::folds])
    return [n for n in sorted(names) if n not in val], val
