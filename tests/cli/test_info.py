"""``atriumseg info``: the model described in words, or its card as JSON; a closed pipe ends quietly."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from atriumseg.cli import EXIT_OK, EXIT_USAGE, main


def test_info_describes_the_model_and_prints_its_card(model_folder: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(model_folder)]) == EXIT_OK
    assert "2D U-Net, width 4, depth 3" in capsys.readouterr().out
    assert main(["info", str(model_folder), "--json"]) == EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((model_folder / "card.json").read_text())


def test_a_folder_without_a_card_is_a_usage_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert main(["info", str(tmp_path)]) == EXIT_USAGE
    assert str(tmp_path) in caplog.text


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(model_folder: Path) -> None:
    """``atriumseg info --json | head -1``: no BrokenPipeError traceback."""
    command = f"{sys.executable} -m atriumseg info {model_folder} --json | head -1"
    result = subprocess.run(command, shell=True, capture_output=True, text=True)
    assert result.stdout.strip() == "{"
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_info_describes_an_ensemble_and_each_member(model_folder: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    from atriumseg.models.card import Postprocessing
    from atriumseg.models.ensemble import EnsembleCard

    ensemble = tmp_path / "fused"
    for name in ("axial", "again"):
        shutil.copytree(model_folder, ensemble / name)
    EnsembleCard(("axial", "again"), Postprocessing(threshold=0.4)).save(ensemble)
    assert main(["info", str(ensemble)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "ensemble of 2 models" in out and "'axial' locates the atrium" in out
    assert "mask: fused probability > 0.4" in out
    assert "fusion of the members' probabilities (mean): their mean" in out
    assert out.count("2D U-Net, width 4, depth 3") == 2 and "member 'again':" in out
    EnsembleCard(("axial", "again"), Postprocessing(threshold=0.4, fusion="logit_mean")).save(ensemble)
    assert main(["info", str(ensemble)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "(logit_mean): the sigmoid of their mean logit (each clipped to [0.005, 0.995])" in out
    assert main(["info", str(ensemble), "--json"]) == EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    assert printed["members"] == ["axial", "again"]
    assert printed["member_cards"]["again"] == json.loads((model_folder / "card.json").read_text())
