"""Shared builders for the tests: synthetic datasets on disk and a quickly trained tiny model."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from scipy.spatial.transform import Rotation

from atriumseg.models.card import Architecture, ModelCard, Preprocessing
from atriumseg.models.checkpoint import save_model
from atriumseg.models.unet import UNet
from atriumseg.pipeline.training.trainer import TrainConfig, train
from atriumseg.synthetic import SyntheticCase, make_affine, synthetic_case, world_coordinates

SHAPE = (48, 48, 40)


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """Save ``array`` as NIfTI with both qform and sform set to ``affine``."""
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, 1)
    image.set_sform(affine, 1)
    nib.save(image, path)
    return path


def itk_image(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image of an (x, y, z) array whose geometry is the RAS ``affine``."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    return image


def write_itk(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """Save as NRRD or MHA (by suffix) with SimpleITK."""
    sitk.WriteImage(itk_image(array, affine), str(path))
    return path


def write_dicom_series(
    folder: Path, array: np.ndarray, affine: np.ndarray, uid: str = "1.2.826.0.1.3680043.2.1125.1",
    prefix: str = "slice_",
) -> Path:
    """Save an int16 DICOM MR series, one file ``PREFIXkkk.dcm`` per slice of the third axis."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.Cast(itk_image(array, affine), sitk.sitkInt16)
    direction = image.GetDirection()
    tags = {
        "0008|0060": "MR",
        "0008|0008": "DERIVED\\SECONDARY",
        "0020|000e": uid,
        "0008|103e": "synthetic atrium",
        "0020|0037": "\\".join(str(direction[i]) for i in (0, 3, 6, 1, 4, 7)),
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_k = image[:, :, k]
        for tag, value in tags.items():
            slice_k.SetMetaData(tag, value)
        slice_k.SetMetaData("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))))
        slice_k.SetMetaData("0020|0013", str(k + 1))
        slice_k.SetMetaData("0008|0018", f"{uid}.{k + 1}")
        writer.SetFileName(str(folder / f"{prefix}{k:03d}.dcm"))
        writer.Execute(slice_k)
    return folder


def write_msd_dataset(
    root: Path, seeds: list[int], name: str = "Synthetic", gain: float = 1.0, offset: float = 0.0
) -> Path:
    """An MSD-layout dataset of synthetic RAS cases named ``case_SEED``, intensities ``gain * x + offset``."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for seed in seeds:
        case = synthetic_case(SHAPE, make_affine(SHAPE), seed=seed)
        write_nifti(root / "imagesTr" / f"case_{seed:03d}.nii.gz", gain * case.image + offset, case.affine)
        write_nifti(root / "labelsTr" / f"case_{seed:03d}.nii.gz", case.label, case.affine)
        training.append({"image": f"./imagesTr/case_{seed:03d}.nii.gz", "label": f"./labelsTr/case_{seed:03d}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"name": name, "reference": "atriumseg tests", "training": training}))
    return root


def tiny_config(dataset: Path, output: Path, **overrides: object) -> TrainConfig:
    """A training run small enough for a test: a narrow, shallow U-Net on 48-voxel slices."""
    settings = dict(
        datasets=(dataset,), output=output, width=16, depth=3, context=0, spacing=(1.5, 1.5), slice_spacing=0.0,
        patch=32,
        epochs=12, steps_per_epoch=25, volumes_per_step=4, slices_per_volume=4, learning_rate=5e-3,
        warmup_steps=10, val_cases=("case_103",), val_every=4, workers=0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


# A rotated ellipsoid in world space, and grids that store it differently (measurement and mesh tests).
SEMI_AXES = np.array([20.0, 14.0, 10.0])
CENTRE = np.array([3.0, -5.0, 7.0])
ROTATION = Rotation.from_euler("xyz", (10, -25, 30), degrees=True).as_matrix()
# (id, voxel size in mm, axis codes, grid rotation in degrees)
ELLIPSOID_GRIDS = [
    ("ras-1mm", (1.0, 1.0, 1.0), "RAS", (0, 0, 0)),
    ("lps", (1.0, 1.2, 0.9), "LPS", (0, 0, 0)),
    ("oblique", (1.2, 1.2, 1.2), "RAS", (20, -12, 15)),
    ("anisotropic", (0.8, 1.1, 2.0), "PIR", (0, 8, 0)),
    ("flipped-anisotropic", (0.8, 1.1, 2.0), "LAS", (0, 0, 0)),
]


def ellipsoid_mask(spacing, codes, rotation) -> tuple[np.ndarray, np.ndarray]:
    """The ellipsoid sampled on a 52 mm wide grid whose centre is 1.5 mm away from the ellipsoid's."""
    shape = tuple(int(np.ceil(52 / s)) for s in spacing)
    affine = make_affine(shape, spacing, codes, rotation, CENTRE + np.array([1.3, -0.7, 0.4]))
    local = (world_coordinates(shape, affine) - CENTRE) @ ROTATION
    return (((local / SEMI_AXES) ** 2).sum(-1) <= 1).astype(np.uint8), affine


__all__ = [
    "STANDIN_CARD", "standin_model", "standin_network", "CENTRE", "ELLIPSOID_GRIDS", "ROTATION", "SEMI_AXES",
    "SHAPE", "ellipsoid_mask", "SyntheticCase", "dice", "itk_image", "tiny_config", "train", "write_dicom_series",
    "write_itk", "SERIES_GRID", "SERIES_SPACING",
    "SERIES_UID", "series_ground_truth", "frame_points", "write_series", "placed_frames",
    "write_msd_dataset", "write_nifti", "load_tool",
]

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def load_tool(name: str) -> ModuleType:
    """The script ``tools/NAME.py`` as a module (tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# A stand-in for a trained model: a real UNet whose weights make its output a known function of the input.
STANDIN_CARD = ModelCard(
    architecture=Architecture(in_channels=3, width=4, depth=3),
    preprocessing=Preprocessing(plane="sagittal", spacing=(1.5, 1.5), slice_spacing=0.0, context=1, min_slice_size=0),
)
STANDIN_LEVEL = 0.8  # scaled intensity above which the stand-in calls a pixel atrium


def standin_network(card: ModelCard = STANDIN_CARD, level: float = STANDIN_LEVEL, neighbour: int = 0) -> UNet:
    """A UNet of ``card``'s shape whose logit at a pixel is ``200 * relu(x - level) - 1`` of the centre channel there
    (``neighbour`` 1: of the next slice's channel, so its mask is the anatomy moved one slice back along the plane's
    anatomical axis, and an axis read the wrong way round shows).

    Only one channel is non-zero on the path through the first encoder block, the skip and the last decoder
    block; every deeper weight is zero. The output at a pixel depends on that pixel (of one slice) alone, so cropping,
    focusing and restoring are exact, and the atrium of :func:`atriumseg.synthetic.synthetic_case` (its
    brightest structure) is what it finds.
    """
    arch = card.architecture
    network = UNet(arch.in_channels, arch.width, arch.depth)
    with torch.no_grad():
        for p in network.parameters():
            p.zero_()
        first, second = network.inc[0], network.inc[2]
        first.weight[0, card.preprocessing.context + neighbour, 1, 1] = 1.0
        first.bias[0] = -level
        second.weight[0, 0, 1, 1] = 1.0
        last = network.ups[-1].conv
        last[0].weight[0, 0, 1, 1] = 1.0  # channel 0 of the concatenation is the skip's channel 0
        last[2].weight[0, 0, 1, 1] = 1.0
        network.outc.weight[0, 0] = 200.0
        network.outc.bias[0] = -1.0
    return network


def standin_model(folder: Path, card: ModelCard = STANDIN_CARD, level: float = STANDIN_LEVEL) -> Path:
    """Save the stand-in network as a model folder, as ``--model`` takes it."""
    save_model(standin_network(card, level), card, folder)
    return folder


STANDIN_FOLDS = {0: ["case_100", "case_101"], 1: ["case_102", "case_103"]}  # validation cases of each fold


def standin_folds(folder: Path, dataset: Path) -> list[Path]:
    """The stand-in network as the two fold models of a 2-fold cross-validation of ``dataset`` (the synthetic MSD
    dataset of cases 100-103), each validating on its ``STANDIN_FOLDS`` cases: fold models without training, told
    apart by their masks (fold 1 calls dimmer pixels atrium), so a case scored by the wrong fold shows."""
    data = [{"dataset": dataset.name, "root": str(dataset), "header_orientation_fix": None}]
    folds = []
    for k, cases in STANDIN_FOLDS.items():
        split = {dataset.name: {"train": STANDIN_FOLDS[1 - k], "validation": cases}}
        provenance = {"data": data, "split": split, "config": {"folds": 2, "fold": k}}
        card = dataclasses.replace(STANDIN_CARD, provenance=provenance)
        folds.append(standin_model(folder / f"fold{k}", card, level=STANDIN_LEVEL - 0.2 * k))
    return folds


# A complete synthetic MR series (every tag a DICOM SEG and the report need), its image a world-space ellipsoid.
SERIES_GRID = (40, 36, 12)  # columns, rows, slices
SERIES_SPACING = (0.9, 0.9, 2.5)  # between columns, between rows, between slices (mm)
SERIES_UID = "1.2.826.0.1.3680043.8.498.1"
SERIES_SEMI_AXES = np.array([11.0, 8.0, 6.0])
SERIES_ELLIPSOID_ROTATION = Rotation.from_euler("xyz", (15, -20, 35), degrees=True).as_matrix()


def series_ground_truth(lps: np.ndarray) -> np.ndarray:
    """A rotated ellipsoid in world (LPS mm) space, 1-2 mm off the grids' centre."""
    local = (lps - np.array([11.1, -20.8, 35.6])) @ SERIES_ELLIPSOID_ROTATION
    return ((local / SERIES_SEMI_AXES) ** 2).sum(-1) <= 1


def frame_points(position, row_cosine, column_cosine, pixel_spacing, rows: int, columns: int) -> np.ndarray:
    """LPS coordinates (rows, columns, 3) of every pixel centre of a DICOM frame."""
    r, c = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    return (
        np.asarray(position, float)
        + (c * float(pixel_spacing[1]))[..., None] * np.asarray(row_cosine, float)
        + (r * float(pixel_spacing[0]))[..., None] * np.asarray(column_cosine, float)
    )


def write_series(
    folder: Path, row_cosine, column_cosine, spacing=SERIES_SPACING, reverse: bool = False, drop: tuple[str, ...] = (),
    **tags: object,
) -> Path:
    """An MR series on ``SERIES_GRID`` centred at (10, -20, 35) LPS, one file per slice, the image being the ground
    truth.

    Slices step along row x column; with ``reverse`` the file names and InstanceNumbers run the other way.
    Keyword ``tags`` override the patient's and study's; ``drop`` leaves attributes out.
    """
    folder.mkdir(parents=True)
    row, col = np.asarray(row_cosine, float), np.asarray(column_cosine, float)
    normal = np.cross(row, col)
    columns, rows, depth = SERIES_GRID
    centre = np.array([10.0, -20.0, 35.0])
    extent = (columns - 1) * spacing[0] * row + (rows - 1) * spacing[1] * col + (depth - 1) * spacing[2] * normal
    first = centre - extent / 2
    study, frame_of_reference = generate_uid(), generate_uid()
    values = dict(
        PatientName="Synthetic^Atrium", PatientID="PAT-0042", PatientBirthDate="19700101", PatientSex="F",
        PatientSize="1.75", PatientWeight="70", StudyDate="20250102", StudyTime="101500", AccessionNumber="ACC-7",
        StudyID="S1", SeriesDescription="cine sax", SeriesNumber=7,
    )
    values.update(tags)
    for k in range(depth):
        position = first + k * spacing[2] * normal
        index = depth - 1 - k if reverse else k
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, SERIES_UID, frame_of_reference
        ds.Modality, ds.ImageType, ds.InstanceNumber = "MR", ["ORIGINAL", "PRIMARY", "M"], index + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row, *col)]
        ds.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[0]:g}"]
        ds.SliceThickness = f"{spacing[2]:g}"
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        truth = series_ground_truth(frame_points(position, row, col, spacing[1::-1], rows, columns))
        ds.PixelData = (100 + 800 * truth).astype("<u2").tobytes()
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        for keyword in drop:
            delattr(ds, keyword)
        ds.save_as(folder / f"slice_{index:03d}.dcm", enforce_file_format=True)
    return folder


def placed_frames(seg: Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each SEG frame's LPS pixel centres (by its own position and the shared orientation) and its pixels."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    cosines = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    pixel_spacing = shared.PixelMeasuresSequence[0].PixelSpacing
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    return [
        (frame_points(item.PlanePositionSequence[0].ImagePositionPatient, cosines[:3], cosines[3:], pixel_spacing,
                      seg.Rows, seg.Columns), pixels[i])
        for i, item in enumerate(seg.PerFrameFunctionalGroupsSequence)
    ]


def seg_on_grid(seg: Dataset, affine: np.ndarray, shape: tuple[int, int, int] = SERIES_GRID) -> np.ndarray:
    """A SEG's frames placed by their own position and orientation on the voxel grid of a NIfTI ``affine``."""
    placed = np.zeros(shape, np.uint8)
    to_voxel = np.linalg.inv(affine)
    for lps, pixels in placed_frames(seg):
        ijk = (lps * np.array([-1.0, -1.0, 1.0])) @ to_voxel[:3, :3].T + to_voxel[:3, 3]
        index = np.round(ijk).astype(int)
        assert np.abs(ijk - index).max() < 1e-3, "a SEG frame is off the series' grid"
        placed[index[..., 0], index[..., 1], index[..., 2]] = pixels
    return placed


def segment_cli(inputs: list[Path], out: Path, model: Path, *options: str) -> int:
    """``atriumseg segment INPUTS --output OUT --model MODEL --quiet OPTIONS``; the exit code."""
    from atriumseg.cli import main

    return main(["segment", *map(str, inputs), "--output", str(out), "--model", str(model), "--quiet", *options])


def report_rows(out: Path) -> dict[str, dict[str, str]]:
    """The rows of ``out/report.csv`` by case name."""
    with open(out / "report.csv", newline="", encoding="utf-8") as fh:
        return {row["case"]: row for row in csv.DictReader(fh)}
