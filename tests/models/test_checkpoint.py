import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from monai.data import MetaTensor
from safetensors import SafetensorError

from atriumseg.models import checkpoint
from atriumseg.models.card import FORMAT_VERSION, Architecture, ModelCard, Preprocessing
from atriumseg.models.checkpoint import CheckpointError, build_network, load_card, load_model, save_model
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.synthetic import make_affine, synthetic_case

CARD = ModelCard(architecture=Architecture(in_channels=3, width=4, depth=3), preprocessing=Preprocessing(context=1))


class _Explode:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code executed"))


def test_round_trip_gives_identical_network_card_and_masks(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = build_network(CARD)
    save_model(network, CARD, tmp_path / "m")
    loaded, card = load_model(tmp_path / "m")
    assert card.architecture == CARD.architecture and card.preprocessing == CARD.preprocessing
    assert card.package_version
    for key, value in network.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    case = synthetic_case((32, 30, 20), make_affine((32, 30, 20), (1.3, 1.3, 2.0)), seed=3)
    image = MetaTensor(torch.from_numpy(case.image)[None], affine=torch.from_numpy(case.affine))
    before = Segmenter(network, CARD, device="cpu").probabilities(image)
    after = Segmenter(loaded, card, device="cpu").probabilities(image)
    assert torch.equal(before.as_tensor(), after.as_tensor())


@pytest.mark.parametrize("failing", ["card", "weights"])
def test_a_write_that_fails_halfway_leaves_the_saved_model_whole(tmp_path: Path, monkeypatch, failing: str) -> None:
    save_model(build_network(CARD), CARD, tmp_path / "m")
    saved = {name: (tmp_path / "m" / name).read_bytes() for name in ("card.json", "model.safetensors")}

    def half_a_file(*args, **kwargs) -> None:
        path = kwargs.get("filename", args[1])  # save_file(tensors, filename) and ModelCard.save(self, path)
        Path(path).write_text('{"architecture": ')
        raise OSError(28, "No space left on device")

    if failing == "card":
        monkeypatch.setattr(ModelCard, "save", half_a_file)
    else:
        monkeypatch.setattr(checkpoint, "save_file", half_a_file)
    torch.manual_seed(1)
    with pytest.raises(OSError, match="No space left"):
        save_model(build_network(CARD), CARD, tmp_path / "m")  # other weights, which must not replace the old
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["card.json", "model.safetensors"]
    assert {name: (tmp_path / "m" / name).read_bytes() for name in saved} == saved
    load_model(tmp_path / "m")


def test_a_full_disk_as_safetensors_reports_it_is_an_os_error_and_leaves_no_new_folder(
    tmp_path: Path, monkeypatch
) -> None:
    def full(*args, **kwargs) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(OSError, match=f"cannot write the weights in {tmp_path / 'new' / 'm'}: .*No space left"):
        save_model(build_network(CARD), CARD, tmp_path / "new" / "m")
    assert list((tmp_path / "new").iterdir()) == []  # the model's folder, made for it, is gone again


def test_the_weights_are_as_readable_as_the_card(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        save_model(build_network(CARD), CARD, tmp_path / "m")
    finally:
        os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "m").iterdir()}
    assert modes == {"card.json": 0o644, "model.safetensors": 0o644}  # safetensors alone writes 0600


def test_card_is_readable_json_with_preprocessing_and_versions(tmp_path: Path) -> None:
    save_model(build_network(CARD), CARD, tmp_path / "m")
    data = json.loads((tmp_path / "m" / "card.json").read_text())
    assert data["format_version"] == FORMAT_VERSION
    assert data["preprocessing"] == {**CARD.to_dict()["preprocessing"], "spacing": [1.25, 1.25],
                                     "percentiles": [0.5, 99.5]}
    assert data["architecture"] == {"in_channels": 3, "width": 4, "depth": 3}
    assert data["postprocessing"] == {"threshold": 0.5, "largest_component": True}
    assert load_card(tmp_path / "m") == load_card(tmp_path / "m" / "model.safetensors")


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "model.safetensors"])
def test_pickled_files_are_never_unpickled(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "marker.txt"
    folder = tmp_path / "evil"
    folder.mkdir()
    payload = folder / name
    payload.write_bytes(pickle.dumps({"state_dict": _Explode(marker)}))
    torch.save({"x": _Explode(marker)}, folder / "other.pt")
    if name == "model.safetensors":
        CARD.save(folder / "card.json")
        target = folder
    else:
        target = payload
    with pytest.raises(CheckpointError):
        load_model(target)
    with pytest.raises(CheckpointError):
        Segmenter.from_path(target)
    assert not marker.exists()


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    save_model(build_network(CARD), CARD, tmp_path / "m")
    card_path = tmp_path / "m" / "card.json"
    data = json.loads(card_path.read_text())
    data["format_version"] = FORMAT_VERSION + 1
    card_path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="format version"):
        load_model(tmp_path / "m")


def test_card_that_does_not_match_the_weights_is_refused(tmp_path: Path) -> None:
    save_model(build_network(CARD), CARD, tmp_path / "m")
    card_path = tmp_path / "m" / "card.json"
    data = json.loads(card_path.read_text())
    data["architecture"]["width"] = 8
    card_path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(tmp_path / "m")


def test_weights_that_are_not_finite_are_refused_naming_the_tensor(tmp_path: Path) -> None:
    network = build_network(CARD)
    with torch.no_grad():
        network.outc.bias[0] = float("nan")
    save_model(network, CARD, tmp_path / "m")
    with pytest.raises(CheckpointError, match=r"holds values that are not finite numbers in outc\.bias"):
        load_model(tmp_path / "m")


def test_missing_model_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "nothing")


def test_an_ensemble_loaded_as_one_network_is_named_as_an_ensemble() -> None:
    folder = checkpoint.default_model_path()  # the built-in model is an ensemble
    for load in (load_model, load_card):
        with pytest.raises(CheckpointError, match=r"an ensemble, not one network; load it with Segmenter.from_path "
                                                  r"or load_ensemble, or load one member's folder \(e.g. .*axial\)"):
            load(folder)
    assert load_card(folder / "axial").preprocessing.plane == "axial"
