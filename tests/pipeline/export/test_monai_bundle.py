"""The exported MONAI bundle: its files, its TorchScript, and MONAI's own tools running it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from dataclasses import replace
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import STANDIN_CARD, standin_network, write_nifti
from monai.bundle import ConfigWorkflow
from monai.data import load_net_with_metadata

import atriumseg
from atriumseg.demo import sample_paths
from atriumseg.models.card import Postprocessing
from atriumseg.models.checkpoint import default_model_path, load_card, load_model, save_model
from atriumseg.models.ensemble import assemble_ensemble, load_ensemble_card
from atriumseg.models.planes import PlaneEnsemble
from atriumseg.pipeline.export.bundle_configs import plane_ensemble_arguments
from atriumseg.pipeline.export.monai_bundle import (
    ENSEMBLE_SCRIPT_SOURCES,
    INTENSITY_SOURCE,
    SCRIPT_SOURCES,
    BundleExportError,
    export_monai_bundle,
)
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.synthetic import make_affine, synthetic_case

TS_TOLERANCE = 1e-5  # max |logit difference| between TorchScript and the eager network (float32, same kernels)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in model (an ensemble of two planes) exported once for this module."""
    return export_monai_bundle(tmp_path_factory.mktemp("export") / "left_atrium_mri")


@pytest.fixture
def bundle_imports(monkeypatch: pytest.MonkeyPatch):
    """Undo what running a bundle in this process does: its root on ``sys.path``, its ``scripts`` imported."""
    monkeypatch.setattr(sys, "path", list(sys.path))

    def forget() -> None:
        for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[name]

    forget()
    yield
    forget()


def built_in_members() -> list[torch.nn.Module]:
    """The built-in ensemble's networks, in the card's order (axial, coronal)."""
    folder = default_model_path()
    return [load_model(folder / name)[0] for name in load_ensemble_card(folder).members]


def test_the_built_in_bundle_holds_the_specified_files_and_every_members_weights(bundle: Path) -> None:
    for name in ("configs/metadata.json", "configs/inference.json", "models/model.pt", "models/model.ts",
                 "scripts/__init__.py", "scripts/unet.py", "scripts/planes.py", "docs/README.md", "LICENSE"):
        assert (bundle / name).is_file(), name
    state = torch.load(bundle / "models/model.pt", weights_only=True)
    members = built_in_members()
    assert len(state) == sum(len(network.state_dict()) for network in members)
    for index, network in enumerate(members):
        assert all(torch.equal(state[f"networks.{index}.{k}"], v) for k, v in network.state_dict().items()), index
    for package, name in ENSEMBLE_SCRIPT_SOURCES:
        assert (bundle / "scripts" / name).read_text() == resources.files(package).joinpath(name).read_text()
    readme, licence = (bundle / "docs/README.md").read_text(), (bundle / "LICENSE").read_text()
    assert "ships in `scripts/`" in readme and "atriumseg is\nnot needed" in readme and "$" not in readme
    assert "- LeftAtrium, cross-validated (5 folds, each case scored by the fold model that did not train on it): " \
           "mean Dice 0.9" in readme
    figures = load_ensemble_card(default_model_path()).provenance["cross_validation"]["per_dataset"]
    meta = json.loads((bundle / "configs/metadata.json").read_text())
    assert meta["eval_metrics"] == {f"cv_mean_dice_{name}": s["dice_mean"] for name, s in figures.items()}
    for text in (readme, licence):
        assert "CC-BY-SA 4.0" in text and "Medical Image Analysis 67" in text and "King's College London" in text
    assert "Apache License 2.0" in licence


def test_a_model_whose_card_states_no_licence_gets_none_made_up(model_folder: Path, tmp_path: Path) -> None:
    bundle = export_monai_bundle(tmp_path / "bundle", model_folder)
    licence, readme = (bundle / "LICENSE").read_text(), (bundle / "docs/README.md").read_text()
    assert "no licence is stated on this model's card" in licence and "CC-BY-SA" not in licence + readme
    assert "none stated on this model's card" in licence
    assert "no validation figures on this model's card" in readme


def test_a_model_that_keeps_every_component_is_documented_and_run_so(tmp_path: Path) -> None:
    card = replace(STANDIN_CARD, postprocessing=Postprocessing(largest_component=False))
    bundle = export_monai_bundle(tmp_path / "bundle", save_model(standin_network(), card, tmp_path / "model"))
    for text in ((bundle / "docs/README.md").read_text(), (bundle / "configs/inference.json").read_text()):
        assert "KeepLargestConnectedComponentd" not in text and "SaveImaged" in text


@pytest.mark.parametrize("shape", [(1, 1, 20, 24, 12), (2, 1, 9, 7, 30)])
def test_torchscript_gives_the_ensembles_logits(bundle: Path, shape: tuple[int, ...]) -> None:
    folder = default_model_path()
    cards = [load_card(folder / name) for name in load_ensemble_card(folder).members]
    eager = PlaneEnsemble(built_in_members(), **plane_ensemble_arguments(cards))
    scripted = torch.jit.load(str(bundle / "models/model.ts"), map_location="cpu")
    volume = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    with torch.no_grad():
        expected, got = eager(volume), scripted(volume)
    assert got.shape == shape
    error = float((got - expected).abs().max())
    assert error <= TS_TOLERANCE, f"TorchScript logits differ by {error} (tolerance {TS_TOLERANCE})"
    assert float(expected.std()) > 0.1  # real networks, not a constant


def test_torchscript_carries_both_configs(bundle: Path) -> None:
    """Where MONAI Deploy's bundle operator reads them: ``model/extra/{metadata,inference}.json`` in the zip."""
    names = zipfile.ZipFile(bundle / "models/model.ts").namelist()
    assert {"model/extra/metadata.json", "model/extra/inference.json"} <= set(names)
    _, meta, extra = load_net_with_metadata(str(bundle / "models/model.ts"), more_extra_files=["inference.json"])
    assert meta == json.loads((bundle / "configs/metadata.json").read_text())
    assert json.loads(extra["inference.json"]) == json.loads((bundle / "configs/inference.json").read_text())


def test_export_refuses_a_non_empty_folder_and_overwrite_keeps_other_files(model_folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(BundleExportError, match="not empty; choose an empty folder or pass overwrite=True") as err:
        export_monai_bundle(target, model_folder)
    assert str(err.value).endswith("(--overwrite)")
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    export_monai_bundle(target, model_folder, overwrite=True)
    assert (target / "notes.txt").read_text() == "mine" and (target / "models/model.ts").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"
    with pytest.raises(BundleExportError, match="not a folder"):
        export_monai_bundle(target / "notes.txt", model_folder)


def test_a_new_bundle_folder_has_the_permissions_of_any_new_folder(model_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    bundle = export_monai_bundle(tmp_path / "bundle", model_folder)  # others may read it, as the umask says
    assert stat.S_IMODE(bundle.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"


def standin_member(folder: Path, plane: str, slice_spacing: float = 1.5, min_size: int = 0) -> Path:
    """A stand-in model (``helpers.standin_network``) slicing in ``plane`` that reads the next slice's pixel instead of
    its own: its mask is the atrium shifted by one slice along its plane's axis, so planes tell apart."""
    pre = replace(STANDIN_CARD.preprocessing, plane=plane, slice_spacing=slice_spacing, min_slice_size=min_size)
    card = replace(STANDIN_CARD, preprocessing=pre, provenance={"licence": "CC0", "data": [
        {"dataset": f"synthetic-{plane}", "reference": "made up here", "licence": "CC0"}]})
    network = standin_network(card)
    with torch.no_grad():
        first = network.inc[0].weight
        first[0, pre.context + 1], first[0, pre.context] = first[0, pre.context].clone(), 0.0
    save_model(network, card, folder)
    return folder


@pytest.fixture
def fused(tmp_path: Path) -> Path:
    """Two stand-ins whose masks are the atrium shifted along x and along z; their mean passes 0.5 where either
    member's does (0.27 each outside), so the fused mask is the union of both shifts. The axial one pads its
    slices to 48 px."""
    return assemble_ensemble(tmp_path / "fused", {
        "sagittal": standin_member(tmp_path / "sagittal", "sagittal"),
        "axial": standin_member(tmp_path / "axial", "axial", min_size=48),
    })


def run_bundle(bundle: Path, image: Path, output: Path) -> nib.Nifti1Image:
    """MONAI's ``ConfigWorkflow`` running ``bundle`` on the folder of ``image``; the mask it writes."""
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs/inference.json"), meta_file=str(bundle / "configs/metadata.json"),
        workflow_type="infer", bundle_root=str(bundle), dataset_dir=str(image.parent),
        output_dir=str(output), device="$torch.device('cpu')",
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return nib.load(output / image.name.replace(".nii.gz", "_seg.nii.gz"))


def oblique_case(folder: Path) -> tuple[Path, tuple[int, ...], np.ndarray]:
    """A synthetic case on an oblique LPI grid, written to ``folder/case.nii.gz``: its path, shape and affine. Two
    corner voxels are NaN and infinite (scanners write such), which atriumseg reads as 0."""
    shape = (46, 41, 33)
    affine = make_affine(shape, spacing=(1.1, 1.3, 1.9), axcodes="LPI", rotation_deg=(12, -7, 25))
    case = synthetic_case(shape, affine=affine, seed=3)
    image = case.image.astype(np.float32)
    image[0, 0, 0], image[-1, 0, 0] = np.nan, np.inf
    folder.mkdir()
    return write_nifti(folder / "case.nii.gz", image, case.affine), shape, affine


def test_an_ensemble_bundle_holds_one_network_of_every_member(fused: Path, tmp_path: Path) -> None:
    bundle = export_monai_bundle(tmp_path / "bundle", fused)
    assert sorted(p.name for p in (bundle / "scripts").glob("*.py")) == [
        "__init__.py", "intensity.py", "planes.py", "unet.py"]  # the stand-ins have the built-in design's cap
    for package, name in (*ENSEMBLE_SCRIPT_SOURCES, INTENSITY_SOURCE):
        assert (bundle / "scripts" / name).read_text() == resources.files(package).joinpath(name).read_text()
    state = torch.load(bundle / "models/model.pt", weights_only=True)
    for index, name in enumerate(("sagittal", "axial")):
        network, _ = load_model(fused / name)
        for key, value in network.state_dict().items():
            assert torch.equal(state[f"networks.{index}.{key}"], value), (name, key)
    meta = json.loads((bundle / "configs/metadata.json").read_text())
    assert meta["atriumseg_card"]["ensemble"]["members"] == ["sagittal", "axial"]
    assert meta["atriumseg_card"]["members"]["axial"]["preprocessing"]["plane"] == "axial"
    assert [d["dataset"] for d in meta["datasets"]] == ["synthetic-sagittal", "synthetic-axial"]
    assert meta["licence"] == "CC0" and meta["network_data_format"]["inputs"]["image"]["num_channels"] == 1
    config = json.loads((bundle / "configs/inference.json").read_text())
    assert config["inferer"] == {"_target_": "SimpleInferer"}
    net = config["network_def"]
    assert (net["slice_dims"], net["contexts"], net["min_sizes"], net["divisors"]) == ([0, 2], [1, 1], [0, 48], [4, 4])
    steps = [step["_target_"] for step in config["preprocessing"]["transforms"]]
    assert steps[-1] == "ScaleIntensityRangePercentilesd"  # padding and stacking happen per member, in the network
    readme = (bundle / "docs/README.md").read_text()
    assert "scripts.planes.PlaneEnsemble" in readme and "$" not in readme
    assert "axial: 1 neighbour(s) each side, slices padded to 48 px" in readme
    scripted = torch.jit.load(str(bundle / "models/model.ts"), map_location="cpu")
    volume = torch.rand(1, 1, 8, 12, 16, generator=torch.Generator().manual_seed(4))
    eager = PlaneEnsemble([load_model(fused / n)[0] for n in ("sagittal", "axial")], [0, 2], [1, 1], [0, 48], [4, 4])
    with torch.no_grad():
        torch.testing.assert_close(scripted(volume), eager(volume), atol=TS_TOLERANCE, rtol=0)


def test_an_ensemble_bundle_gives_the_segmenters_mask(fused: Path, tmp_path: Path, bundle_imports) -> None:
    """Both stand-ins on an oblique LPI volume: the bundle's fused mask is atriumseg's, on the input's grid."""
    bundle = export_monai_bundle(tmp_path / "bundle", fused)
    image, shape, affine = oblique_case(tmp_path / "in")
    written = run_bundle(bundle, image, tmp_path / "out")
    assert written.shape == shape and np.allclose(written.affine, affine, atol=1e-5)

    def mask(model: Path) -> np.ndarray:
        segmenter = Segmenter.from_path(model, device="cpu", precision="float32", focus=False)
        return np.asarray(atriumseg.segment(image, segmenter).dataobj) > 0

    expected, got = mask(fused), np.asarray(written.dataobj) > 0
    assert expected.sum() > 100 and dice(got, expected) >= 0.999, f"Dice {dice(got, expected):.5f}"
    for name in ("sagittal", "axial"):  # the fusion is neither member's mask, nor the bundle's
        alone = mask(fused / name)
        assert dice(alone, expected) < 0.97 and dice(alone, got) < 0.97, name


def test_an_ensemble_of_one_member_exports_as_that_network(model_folder: Path, tmp_path: Path) -> None:
    """Whatever its fusion rule: one member's probabilities are fused with nothing."""
    one = assemble_ensemble(tmp_path / "one", {"only": model_folder}, Postprocessing(fusion="logit_mean"))
    bundle = export_monai_bundle(tmp_path / "bundle", one)
    state = torch.load(bundle / "models/model.pt", weights_only=True)
    network, _ = load_model(model_folder)
    assert state.keys() == network.state_dict().keys()
    assert json.loads((bundle / "configs/inference.json").read_text())["inferer"]["_target_"] == "SliceInferer"
    assert json.loads((bundle / "configs/metadata.json").read_text())["atriumseg_card"]["ensemble"]["members"] == [
        "only"]


def test_an_ensemble_whose_members_frame_the_volume_differently_is_refused(tmp_path: Path) -> None:
    mixed = assemble_ensemble(tmp_path / "mixed", {
        "sagittal": standin_member(tmp_path / "sagittal", "sagittal", slice_spacing=0.0),
        "axial": standin_member(tmp_path / "axial", "axial", slice_spacing=0.0),
    })
    with pytest.raises(BundleExportError, match=r"member 'axial' frames the volume differently from 'sagittal'"):
        export_monai_bundle(tmp_path / "bundle", mixed)
    assert not (tmp_path / "bundle").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.")]


def test_an_ensemble_fused_by_its_mean_logit_is_refused(fused: Path, tmp_path: Path) -> None:
    """The bundle's network fuses on the members' grid, then MONAI's ``Invertd`` returns the result to the input's;
    only the mean commutes with that return, so a logit-fused ensemble would not give atriumseg's mask."""
    card = load_ensemble_card(fused)
    replace(card, postprocessing=replace(card.postprocessing, fusion="logit_mean")).save(fused)
    with pytest.raises(BundleExportError, match=r"fusion 'logit_mean' is not exported.*--fusion mean"):
        export_monai_bundle(tmp_path / "bundle", fused)
    assert not (tmp_path / "bundle").exists()


def test_bundle_workflow_gives_the_segmenters_mask(model_folder: Path, tmp_path: Path, bundle_imports) -> None:
    """The stand-in model (an exact per-pixel function) on an oblique LPI volume: same mask, same grid."""
    bundle = export_monai_bundle(tmp_path / "bundle", model_folder)
    assert sorted(p.name for p in (bundle / "scripts").glob("*.py")) == [
        "__init__.py", "context.py", "intensity.py", "unet.py"]
    for package, name in (*SCRIPT_SOURCES, INTENSITY_SOURCE):
        assert (bundle / "scripts" / name).read_text() == resources.files(package).joinpath(name).read_text()
    state, (network, _) = torch.load(bundle / "models/model.pt", weights_only=True), load_model(model_folder)
    assert state.keys() == network.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in network.state_dict().items())
    image, shape, affine = oblique_case(tmp_path / "in")
    written = run_bundle(bundle, image, tmp_path / "out")
    assert written.shape == shape and np.allclose(written.affine, affine, atol=1e-5)
    assert written.get_data_dtype() == np.uint8
    segmenter = Segmenter.from_path(model_folder, device="cpu", precision="float32", focus=False)
    expected = np.asarray(atriumseg.segment(image, segmenter).dataobj) > 0
    got = np.asarray(written.dataobj) > 0
    score = dice(got, expected)
    assert expected.sum() > 100 and score >= 0.999, f"Dice {score:.5f} against the Segmenter's mask"


def test_a_bundle_caps_a_bright_rim_as_the_card_says(tmp_path: Path, bundle_imports) -> None:
    """A stand-in with ``centre_clip`` (every component kept) on a volume whose first slices glow: the bundle runs
    the copied ``ClipToCentred`` and gives atriumseg's mask, the atrium in it; without the cap the rim sets the
    window and the stand-in finds no atrium."""
    card = replace(STANDIN_CARD, postprocessing=Postprocessing(largest_component=False))
    uncapped = replace(card, preprocessing=replace(STANDIN_CARD.preprocessing, centre_clip=0.0))
    model = save_model(standin_network(card), card, tmp_path / "model")
    bundle = export_monai_bundle(tmp_path / "bundle", model)
    steps = [step["_target_"] for step in json.loads((bundle / "configs/inference.json").read_text())["preprocessing"][
        "transforms"]]
    assert steps.index("scripts.intensity.ClipToCentred") + 1 == steps.index("ScaleIntensityRangePercentilesd")
    assert "central 0.5 of each axis" in (bundle / "docs/README.md").read_text()
    plain = save_model(standin_network(uncapped), uncapped, tmp_path / "uncapped")
    plain_bundle = export_monai_bundle(tmp_path / "plain_bundle", plain)
    assert not (plain_bundle / "scripts/intensity.py").exists()
    assert "ClipToCentred" not in (plain_bundle / "configs/inference.json").read_text()
    shape = (46, 41, 33)
    affine = make_affine(shape, spacing=(1.1, 1.3, 1.9), axcodes="LPI", rotation_deg=(12, -7, 25))
    case = synthetic_case(shape, affine=affine, seed=3)
    image = case.image.copy()
    image[:4] = 1.8 * image.max()
    (tmp_path / "in").mkdir()
    path = write_nifti(tmp_path / "in" / "case.nii.gz", image, affine)
    got = np.asarray(run_bundle(bundle, path, tmp_path / "out").dataobj) > 0

    def mask(folder: Path) -> np.ndarray:
        segmenter = Segmenter.from_path(folder, device="cpu", precision="float32", focus=False)
        return np.asarray(atriumseg.segment(path, segmenter).dataobj)[4:] > 0  # the rim left out

    expected, atrium = mask(model), case.label[4:] > 0
    assert dice(got[4:], expected) >= 0.999, f"Dice {dice(got[4:], expected):.5f}"
    assert dice(expected, atrium) > 0.8
    assert not mask(plain).any()


def write_shadow_atriumseg(folder: Path) -> Path:
    """A package named atriumseg that refuses to import, to prove the bundle runs without atriumseg."""
    (folder / "atriumseg").mkdir(parents=True)
    (folder / "atriumseg" / "__init__.py").write_text("raise ImportError('the bundle must not need atriumseg')\n")
    return folder


@pytest.mark.slow
def test_monai_runner_segments_the_sample_as_atriumseg_does(bundle: Path, tmp_path: Path) -> None:
    image_path, label_path = sample_paths()
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(image_path, inputs / image_path.name)
    env = {**os.environ, "PYTHONPATH": str(write_shadow_atriumseg(tmp_path / "shadow"))}
    shadowed = subprocess.run([sys.executable, "-c", "import atriumseg"], env=env, cwd=tmp_path, capture_output=True)
    assert shadowed.returncode != 0, "the shadow package did not hide atriumseg"
    command = [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", f"{bundle}/configs/inference.json",
        "--meta_file", f"{bundle}/configs/metadata.json", "--bundle_root", str(bundle),
        "--dataset_dir", str(inputs), "--output_dir", str(outputs),
    ]
    run = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    written = nib.load(outputs / "sample_la_023_image_seg.nii.gz")
    source = nib.load(image_path)
    assert written.shape == source.shape and np.allclose(written.affine, source.affine, atol=1e-5)
    got = np.asarray(written.dataobj) > 0
    ours = np.asarray(atriumseg.segment(image_path).dataobj) > 0
    truth = np.asarray(nib.load(label_path).dataobj) > 0
    against_ours, against_truth = dice(got, ours), dice(got, truth)
    assert against_ours >= 0.97, f"Dice {against_ours:.4f} against atriumseg segment's mask"
    assert against_truth >= 0.88, f"Dice {against_truth:.4f} against the reference label"


@pytest.mark.slow
@pytest.mark.parametrize("which", ["built-in", "ensemble"])
def test_monai_verify_net_in_out_passes(bundle: Path, which: str, fused: Path, tmp_path: Path) -> None:
    folder = bundle if which == "built-in" else export_monai_bundle(tmp_path / "fused_bundle", fused)
    command = [
        sys.executable, "-m", "monai.bundle", "verify_net_in_out", "network_def", "--meta_file",
        "configs/metadata.json", "--config_file", "configs/inference.json", "--n", "5", "--device", "cpu",
    ]
    run = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "data shape of network is verified with no error" in run.stderr + run.stdout
