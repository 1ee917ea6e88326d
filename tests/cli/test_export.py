"""``atriumseg export --format monai-bundle``: a bundle of the given model, usage errors exit 2 before any work."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from atriumseg.cli import EXIT_OK, EXIT_USAGE, main
from atriumseg.models.checkpoint import load_model


def test_export_writes_a_bundle_of_the_given_model(model_folder: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "bundle"
    assert main(["export", "--format", "monai-bundle", "-o", str(target), str(model_folder)]) == EXIT_OK
    assert "python -m monai.bundle run" in capsys.readouterr().out
    card = json.loads((model_folder / "card.json").read_text())
    assert json.loads((target / "configs/metadata.json").read_text())["atriumseg_card"] == card
    network, _ = load_model(model_folder)
    state = torch.load(target / "models/model.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in network.state_dict().items())


@pytest.mark.parametrize("problem", ["not-empty", "no-model", "bad-format"])
def test_usage_errors_exit_2_and_write_nothing(problem: str, model_folder: Path, tmp_path: Path, caplog) -> None:
    target = tmp_path / "bundle"
    argv = ["export", "-o", str(target), str(model_folder)]
    if problem == "not-empty":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    elif problem == "no-model":
        argv[-1] = str(tmp_path / "missing")
    else:
        argv[1:1] = ["--format", "onnx"]
    with caplog.at_level(logging.ERROR):
        if problem == "bad-format":
            with pytest.raises(SystemExit) as exit_info:
                main(argv)
            assert exit_info.value.code == EXIT_USAGE
        else:
            assert main(argv) == EXIT_USAGE
    written = sorted(p.name for p in target.iterdir()) if target.exists() else []
    assert written == (["notes.txt"] if problem == "not-empty" else [])
