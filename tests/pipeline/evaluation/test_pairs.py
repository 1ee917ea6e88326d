"""Pairing images with labels by case name."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from atriumseg.pipeline.evaluation.pairs import pair_cases


def _folders(tmp_path: Path, images: list[str], labels: list[str]) -> tuple[Path, Path]:
    for folder, names in (("img", images), ("lab", labels)):
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_bytes(b"")
    return tmp_path / "img", tmp_path / "lab"


def test_pairs_by_case_name_across_formats_and_leaves_strays_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    images, labels = _folders(
        tmp_path, ["a.nii.gz", "b.nrrd", "c.nii.gz", "notes.txt"], ["a.nii.gz", "b.nii.gz", "d.nii.gz", "notes.txt"]
    )
    with caplog.at_level(logging.WARNING):
        pairs = pair_cases(images, labels)
    found = [(name, image.name, label.name) for name, image, label in pairs]
    assert found == [("a", "a.nii.gz", "a.nii.gz"), ("b", "b.nrrd", "b.nii.gz")]
    assert "1 image(s) in" in caplog.text and "are left out: c" in caplog.text  # an image without its label
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        pair_cases(images, labels, ["a"])
    assert caplog.text == "", "the cases named are all there: nothing else to say"


def test_cases_keep_only_the_named_pairs(tmp_path: Path) -> None:
    images, labels = _folders(tmp_path, ["a.nii.gz", "b.nii.gz"], ["a.nii.gz", "b.nii.gz"])
    assert [n for n, _, _ in pair_cases(images, labels, ["b"])] == ["b"]


@pytest.mark.parametrize(
    ("images", "labels", "cases", "message"),
    [
        (["a.nii.gz"], ["a.nii.gz"], ["a", "zz"], r"cases \['zz'\] have no image and label pair"),
        (["a.nii.gz"], ["b.nii.gz"], None, "no image in .* has a label of the same name"),
    ],
)
def test_missing_pairs_are_refused_with_the_names(tmp_path: Path, images, labels, cases, message) -> None:
    with pytest.raises(ValueError, match=message):
        pair_cases(*_folders(tmp_path, images, labels), cases)
