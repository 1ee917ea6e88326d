"""Which images have a reference label: pairs by case name across an image folder and a label folder."""

from __future__ import annotations

import logging
from pathlib import Path

from atriumseg.pipeline.io.volumes import IMAGE_SUFFIXES, case_name
from atriumseg.pipeline.io.writing import not_a_folder

log = logging.getLogger(__name__)


def _images(folder: Path) -> list[Path]:
    """The image files in ``folder`` (not searched deeper), or a :class:`ValueError` when it is no folder."""
    problem = not_a_folder(folder)
    if problem:
        raise ValueError(f"{folder}: {problem}")
    return [p for p in sorted(Path(folder).iterdir()) if p.name.lower().endswith(IMAGE_SUFFIXES)]


def pair_cases(images: Path, labels: Path, cases: list[str] | None = None) -> list[tuple[str, Path, Path]]:
    """(name, image, label) for every image in ``images`` with a label of the same name in ``labels``; the images
    left without one are named in a warning.

    ``cases`` keeps only those names, and a name without a pair is refused with the list of such names.
    """
    label_by_name = {case_name(p): p for p in _images(labels)}
    found = [(case_name(p), p) for p in _images(images)]
    pairs = [(name, p, label_by_name[name]) for name, p in found if name in label_by_name]
    unlabelled = [name for name, _ in found if name not in label_by_name]
    if pairs and unlabelled and not cases:  # said, so that a case is never missing from the figures unnoticed
        log.warning("%d image(s) in %s have no label of the same name in %s and are left out: %s",
                    len(unlabelled), images, labels, ", ".join(unlabelled))
    if cases:
        missing = sorted(set(cases) - {name for name, _, _ in pairs})
        if missing:
            raise ValueError(f"cases {missing} have no image and label pair in {images} and {labels}")
        pairs = [p for p in pairs if p[0] in cases]
    if not pairs:
        raise ValueError(f"no image in {images} has a label of the same name in {labels}")
    return pairs
