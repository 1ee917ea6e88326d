"""``atriumseg train``: options map onto TrainConfig fields, unset ones keep the config's defaults."""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path

import pytest

from atriumseg.cli import EXIT_OK, EXIT_USAGE, build_parser, main
from atriumseg.cli.options import given_fields
from atriumseg.pipeline.training.trainer import TrainConfig


def _config(argv: list[str]) -> TrainConfig:
    args = build_parser().parse_args(["train", *argv])
    return TrainConfig(**given_fields(args, TrainConfig))


def test_no_options_train_the_configs_own_defaults(tmp_path: Path) -> None:
    assert _config([str(tmp_path), "-o", str(tmp_path / "run")]) == TrainConfig((tmp_path,), tmp_path / "run")


def test_each_option_sets_its_field(tmp_path: Path) -> None:
    config = _config([str(tmp_path), str(tmp_path), "-o", "run", "--weights", "1", "3", "--lr", "0.01",
                      "--spacing", "0.7", "--assume-orientation", "ASL", "header", "--val-cases", "a", "b",
                      "--plane", "coronal", "--resume", "--init", str(tmp_path / "model"), "--gamma", "0.35", "1.6",
                      "--precision", "float32", "--darken", "0.25", "--zoom", "0.35"])
    assert (config.weights, config.learning_rate, config.spacing) == ((1.0, 3.0), 0.01, (0.7, 0.7))
    assert (config.orientations, config.val_cases, config.plane) == (("ASL", None), ("a", "b"), "coronal")
    assert config.resume and config.init == tmp_path / "model" and config.gamma == (0.35, 1.6)
    assert config.precision == "float32" and config.darken == 0.25 and config.zoom == 0.35


def test_help_shows_the_trainconfig_defaults(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    declared = {f.name: f.default for f in fields(TrainConfig)}
    assert f"--epochs EPOCHS epochs (default {declared['epochs']})" in text
    assert f"(default {declared['spacing'][0]})" in text and f"--lr LEARNING_RATE peak AdamW learning rate " \
        f"(default {declared['learning_rate']})" in text


def test_train_refuses_a_missing_dataset_before_any_work(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        code = main(["train", str(tmp_path / "nowhere"), "-o", str(tmp_path / "run"), "--quiet"])
    assert code == EXIT_USAGE and "no dataset.json" in caplog.text
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_records_the_command_it_was_given(tmp_path: Path, synthetic_dataset: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    argv = ["train", str(synthetic_dataset), "-o", str(run), "--width", "4", "--depth", "2", "--context", "0",
            "--patch", "16", "--epochs", "1", "--steps-per-epoch", "1", "--slice-spacing", "0", "--centre-clip", "0.3",
            "--quiet"]
    assert main(argv) == EXIT_OK
    card = json.loads((run / "last" / "card.json").read_text())
    assert card["provenance"]["command"] == "atriumseg " + " ".join(argv)
    assert card["preprocessing"]["centre_clip"] == 0.3
    assert f"best model: {run / 'best'} (no validation cases: as last); last: {run / 'last'}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "phrase"),
    [(["--init", "default", "--width", "16"], "(--width 16 is narrower than its 32)"),
     (["--init", "default", "--context", "1"], "(--context 1 is narrower than its 2)"),
     (["--context", "16"], "preprocessing.context must be an integer in [0, 15]"),
     (["--centre-clip", "2"], "preprocessing.centre_clip must be a number in [0, 1]"),
     (["--init", "nowhere-model"], "nowhere-model"),
     (["--device", "bogus"], "device 'bogus' is not a device name"),
     (["--resume", "--init", "nowhere-model"], "nowhere-model")],  # --resume of a run not yet started: checked
)
def test_train_refuses_a_bad_design_or_starting_model_before_any_work(
    tmp_path: Path, synthetic_dataset: Path, caplog: pytest.LogCaptureFixture, options: list[str], phrase: str
) -> None:
    with caplog.at_level(logging.ERROR):
        code = main(["train", str(synthetic_dataset), "-o", str(tmp_path / "run"), "--quiet", *options])
    assert code == EXIT_USAGE and phrase in caplog.text
    assert not (tmp_path / "run").exists()


def test_init_default_names_the_built_in_model_which_has_the_default_design(tmp_path: Path) -> None:
    from atriumseg.models.checkpoint import default_model_path
    from atriumseg.pipeline.training.checkpoints import check_init

    config = _config([str(tmp_path), "-o", "run", "--init", "default"])
    assert config.init == default_model_path()
    assert check_init(config.init, config.design).design == config.design
