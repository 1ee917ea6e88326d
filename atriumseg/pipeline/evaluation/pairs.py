"""Which images have a reference label: pairs by case name across an image folder and a label folder."""

from __future__ import annotations

from pathlib import Path

from atriumseg.pipeline.io.volumes import IMAGE_SUFFIXES, case_name


def _images(folder: Path) -> list[Path]:
    return [p for p in sorted(Path(folder).iterdir()) if p.name.lower().endswith(IMAGE_SUFFIXES)]


def pair_cases(images: Path, labels: Path, cases: list[str] | None = None) -> list[tuple[str, Path, Path]]:
    """(name, image, label) for every image in ``images`` with a label of the same name in ``labels``.

    ``cases`` keeps only those names, and a name without a pair is refused with the list of such names.
    """
    label_by_name = {case_name(p): p for p in _images(labels)}
    pairs = [(case_name(p), p, label_by_name[case_name(p)]) for p in _images(images) if case_name(p) in label_by_name]
    if cases:
        missing = sorted(set(cases) - {name for name, _, _ in pairs})
        if missing:
            raise ValueError(f"cases {missing} have no image and label pair in {images} and {labels}")
        pairs = [p for p in pairs if p[0] in cases]
    if not pairs:
        raise ValueError(f"no image in {images} has a label of the same name in {labels}")
    return pairs
