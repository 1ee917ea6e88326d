"""Checkpoints of a run: --init starts from a model's weights (its architecture or a wider one), --resume from last/."""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import tiny_config, write_msd_dataset

from atriumseg.models.card import ModelCard, Preprocessing
from atriumseg.models.checkpoint import build_network, load_card, load_model, save_model
from atriumseg.models.ensemble import assemble_ensemble
from atriumseg.pipeline.training import trainer
from atriumseg.pipeline.training.checkpoints import (
    STATE_NAME,
    Progress,
    check_init,
    initial_weights,
    resume,
    save_checkpoints,
    trained_preprocessing,
)
from atriumseg.pipeline.training.distributed import Ranks
from atriumseg.pipeline.training.provenance import run_provenance
from atriumseg.pipeline.training.splits import training_sets
from atriumseg.pipeline.training.trainer import TrainingRun, make_card, segmentation_loss, train
from atriumseg.transforms.preprocessing import IMAGE, LABEL

pytestmark = pytest.mark.slow  # each test starts a training run


def _model(folder: Path, config, seed: int) -> Path:
    """A model folder of ``config``'s design with seeded random weights."""
    torch.manual_seed(seed)
    card = make_card(config, {"note": f"seed {seed}"})
    return save_model(build_network(card), card, folder)


def _first_step(config) -> tuple[float, dict, TrainingRun]:
    run = TrainingRun.start(config, Ranks(), torch.device("cpu"), show_progress=False)
    try:
        batch = next(iter(run.loader))
        return run.step(batch), batch, run
    finally:
        run.close()


def _first_init_step(dataset: Path, tmp_path: Path, start: Path,
                     **overrides: object) -> tuple[float, dict, TrainingRun]:
    """The first step of a float32 run of one step on ``dataset`` starting from the model folder ``start``."""
    return _first_step(tiny_config(dataset, tmp_path / "run", precision="float32", epochs=1, steps_per_epoch=1,
                                   init=start, **overrides))


def _loss_of(folder: Path, batch: dict) -> float:
    network, _ = load_model(folder)
    with torch.no_grad():
        return segmentation_loss(network(batch[IMAGE]), batch[LABEL]).item()


def test_the_first_step_of_an_init_run_has_the_loaded_models_loss(tmp_path: Path, synthetic_dataset: Path) -> None:
    config = tiny_config(synthetic_dataset, tmp_path / "run", precision="float32", epochs=1, steps_per_epoch=1)
    start = _model(tmp_path / "start", config, seed=7)
    loss, batch, run = _first_init_step(synthetic_dataset, tmp_path, start)
    expected = _loss_of(start, batch)
    assert loss == pytest.approx(expected, abs=1e-5), f"first step {loss:.6f}, loaded model {expected:.6f}"
    other = _loss_of(_model(tmp_path / "other", config, seed=8), batch)
    assert abs(other - expected) > 1e-3, "other weights would give another loss on this batch"
    moved = max((p - q).abs().max().item() for p, q in zip(run.network.parameters(),
                                                            load_model(start)[0].parameters(), strict=True))
    assert moved > 0, "the step changed the loaded weights"


@pytest.mark.parametrize(("init_design", "reason"), [({"width": 32}, "(--width 16 is narrower than its 32)"),
                                                     ({"depth": 4}, "(--depth 3 is shallower than its 4)")])
def test_an_init_model_of_another_architecture_is_refused_with_the_reason(
        tmp_path: Path, synthetic_dataset: Path, init_design: dict, reason: str) -> None:
    other = _model(tmp_path / "other", tiny_config(synthetic_dataset, tmp_path / "x", **init_design), seed=1)
    config = tiny_config(synthetic_dataset, tmp_path / "run", init=other)
    with pytest.raises(ValueError) as caught:
        train(config, show_progress=False)
    message = str(caught.value)
    assert reason in message and "width=16, depth=3" in message and "a --depth no shallower" in message
    assert not (tmp_path / "run" / "last").exists()


def test_a_fold_run_from_a_model_that_trained_on_its_validation_cases_is_refused(
        tmp_path: Path, synthetic_dataset: Path, caplog: pytest.LogCaptureFixture) -> None:
    everything = tiny_config(synthetic_dataset, tmp_path / "x", val_cases=())  # trains on all four cases
    seen_all = _model(tmp_path / "all", everything, seed=1)
    save_model(load_model(seen_all)[0], make_card(everything, run_provenance(
        everything, training_sets(everything), torch.device("cpu"), 1)), seen_all)
    fold = tiny_config(synthetic_dataset, tmp_path / "run", val_cases=(), folds=2, fold=1, init=seen_all)
    with pytest.raises(ValueError, match=r"trained on validation cases of fold 1 \(Synthetic: case_1"):
        train(fold, show_progress=False)
    assert not (tmp_path / "run" / "last").exists()
    picked = _model(tmp_path / "best", tiny_config(synthetic_dataset, tmp_path / "y"), seed=2)
    network, card = load_model(picked)
    save_model(network, replace(card, provenance={**card.provenance, "validation": {}}), picked)  # a best/
    with pytest.raises(ValueError, match="was picked on its validation cases"):
        train(replace(fold, init=picked), show_progress=False)
    monitored = tiny_config(synthetic_dataset, tmp_path / "mon", epochs=1, steps_per_epoch=1, init=seen_all)
    with caplog.at_level(logging.WARNING):
        train(monitored, show_progress=False)  # a run that only monitors on such cases is warned, not stopped
    assert "trained on this run's validation cases (Synthetic: case_103 (1))" in caplog.text


def test_an_init_model_of_more_neighbour_slices_is_refused(tmp_path: Path, synthetic_dataset: Path) -> None:
    thicker = _model(tmp_path / "thicker", tiny_config(synthetic_dataset, tmp_path / "x", context=1), seed=1)
    with pytest.raises(ValueError, match=r"in_channels=3.*in_channels=1.*--context 0 is narrower than its 1"):
        check_init(thicker, tiny_config(synthetic_dataset, tmp_path / "run").design)


def _grown(tmp_path: Path, synthetic_dataset: Path, caplog: pytest.LogCaptureFixture, field: str, small: int,
           large: int) -> tuple[Path, torch.nn.Module, torch.nn.Module]:
    """A model of ``field`` ``small`` (random weights), a network of ``field`` ``large`` given its weights by
    ``initial_weights`` (logged to ``caplog``), and the model's own network."""
    start = _model(tmp_path / "start", tiny_config(synthetic_dataset, tmp_path / "x", **{field: small}), seed=5)
    larger = make_card(tiny_config(synthetic_dataset, tmp_path / "x", **{field: large}), {})
    network = build_network(larger)
    with caplog.at_level(logging.INFO):
        initial_weights(network, larger, start)
    return start, network, load_model(start)[0]


def test_an_init_run_of_more_neighbour_slices_starts_from_the_models_function(
        tmp_path: Path, synthetic_dataset: Path, caplog: pytest.LogCaptureFixture) -> None:
    start, network, loaded = _grown(tmp_path, synthetic_dataset, caplog, "context", 1, 2)
    assert "widened from 3 to 5 slices" in caplog.text and "preprocessing differs" not in caplog.text
    slab = torch.randn(2, 5, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(network(slab), loaded(slab[:, 1:4]), atol=1e-5), "the middle slices are the model's"
        assert not torch.allclose(network(slab), loaded(slab[:, 0:3]), atol=1e-3)
    loss, batch, run = _first_init_step(synthetic_dataset, tmp_path, start, context=2)
    assert batch[IMAGE].shape[1] == 5
    middle = {IMAGE: batch[IMAGE][:, 1:4], LABEL: batch[LABEL]}  # the three slices the model was trained on
    expected = _loss_of(start, middle)
    assert loss == pytest.approx(expected, abs=1e-5), f"first step {loss:.6f}, loaded model {expected:.6f}"
    outer = run.network.state_dict()["inc.0.weight"][:, [0, 4]]
    assert outer.abs().max() > 0, "the step trains the added slices' weights"


def test_an_init_run_of_a_wider_network_starts_from_the_models_function(
        tmp_path: Path, synthetic_dataset: Path, caplog: pytest.LogCaptureFixture) -> None:
    start, network, loaded = _grown(tmp_path, synthetic_dataset, caplog, "width", 8, 12)
    assert "widened from 8 to 12 channels" in caplog.text
    slab = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (network(slab) - loaded(slab)).abs().max().item()
    assert 0 < difference < 1e-2 * loaded(slab).abs().max().item(), "the model's function, up to the copies' noise"
    loss, batch, _ = _first_init_step(synthetic_dataset, tmp_path, start, width=12)
    expected = _loss_of(start, batch)
    assert loss == pytest.approx(expected, abs=1e-3), f"first step {loss:.6f}, loaded model {expected:.6f}"


def test_an_init_run_of_a_deeper_network_starts_from_the_models_function(
        tmp_path: Path, synthetic_dataset: Path, caplog: pytest.LogCaptureFixture) -> None:
    start, network, loaded = _grown(tmp_path, synthetic_dataset, caplog, "depth", 3, 4)
    assert "deepened from 3 to 4 levels" in caplog.text
    slab = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(network(slab), loaded(slab))
    loss, batch, run = _first_init_step(synthetic_dataset, tmp_path, start, depth=4)
    expected = _loss_of(start, batch)
    assert loss == pytest.approx(expected, abs=1e-5), f"first step {loss:.6f}, loaded model {expected:.6f}"
    upsampled = run.network.state_dict()["ups.0.conv.0.weight"][:, 64:]  # the new level's input from below
    assert upsampled.abs().max() > 0, "the step trains the new level"


def test_an_init_model_with_other_preprocessing_loads_with_a_warning(tmp_path: Path, synthetic_dataset: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    config = tiny_config(synthetic_dataset, tmp_path / "run")
    other = _model(tmp_path / "other", tiny_config(synthetic_dataset, tmp_path / "x", plane="coronal"), seed=2)
    network = build_network(make_card(config, {}))
    with caplog.at_level(logging.WARNING):
        lineage = initial_weights(network, make_card(config, {}), other)
    assert "preprocessing differs" in caplog.text
    for name, value in load_model(other)[0].state_dict().items():
        assert torch.equal(network.state_dict()[name], value), name
    assert lineage == []  # a model that was never trained has no stages to carry on


def test_an_init_ensemble_gives_its_member_in_the_runs_plane(tmp_path: Path, synthetic_dataset: Path) -> None:
    axial, coronal = (tiny_config(synthetic_dataset, tmp_path / "x", plane=plane) for plane in ("axial", "coronal"))
    members = {"axial": _model(tmp_path / "a", axial, seed=3), "coronal": _model(tmp_path / "c", coronal, seed=4)}
    fused = assemble_ensemble(tmp_path / "fused", members)
    network = build_network(make_card(coronal, {}))
    initial_weights(network, make_card(coronal, {}), fused)
    for name, value in load_model(members["coronal"])[0].state_dict().items():
        assert torch.equal(network.state_dict()[name], value), name
    sagittal = tiny_config(synthetic_dataset, tmp_path / "x", plane="sagittal")
    with pytest.raises(ValueError, match=r"no sagittal member \(axial \(axial\), coronal \(coronal\)\)"):
        check_init(fused, sagittal.design)


def test_resume_continues_from_the_last_epoch(tmp_path: Path, synthetic_dataset: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(synthetic_dataset, run, epochs=2, steps_per_epoch=3, val_every=2), show_progress=False)
    first = torch.load(run / "last" / STATE_NAME, weights_only=True)
    assert first["epoch"] == 2 and first["step"] == 6
    config = tiny_config(synthetic_dataset, run, epochs=3, steps_per_epoch=3, val_every=2, resume=True)
    network = build_network(make_card(config, {}))
    optimizer = torch.optim.AdamW(network.parameters())
    progress = resume(network, optimizer, torch.amp.GradScaler("cpu", enabled=False), run / "last")
    assert (progress.best_dice, progress.elapsed_before) == (first["best_dice"], first["elapsed"]) != (-1.0, 0.0)
    moments = optimizer.state_dict()["state"]
    assert moments and all(torch.equal(moments[i]["exp_avg"], first["optimizer"]["state"][i]["exp_avg"])
                           for i in moments)  # Adam's moments go on, not restart from zero
    train(config, show_progress=False)
    state = torch.load(run / "last" / STATE_NAME, weights_only=True)
    assert state["epoch"] == 3 and state["step"] == 9
    assert [r["epoch"] for r in csv.DictReader((run / "metrics.csv").open())] == ["1", "2", "3"]
    card = load_card(run / "last")
    assert card.provenance["epochs"] == 3 and len(card.provenance["lineage"]) == 1
    assert card.provenance["lineage"][0]["steps"] == 9


def test_a_run_killed_between_last_weights_and_state_resumes_on_the_states_own_weights(
        tmp_path: Path, synthetic_dataset: Path) -> None:
    run = tmp_path / "run"
    config = tiny_config(synthetic_dataset, run, epochs=1, steps_per_epoch=2, val_every=1)
    train(config, show_progress=False)
    stepped = load_model(run / "last")[0].state_dict()
    newer = _model(tmp_path / "newer", config, seed=7)  # the next epoch's weights, written before its state
    (run / "last" / "model.safetensors").write_bytes((newer / "model.safetensors").read_bytes())
    network = build_network(make_card(config, {}))
    optimizer = torch.optim.AdamW(network.parameters())
    progress = resume(network, optimizer, torch.amp.GradScaler("cpu", enabled=False), run / "last")
    assert progress.epoch == 1
    for name, value in stepped.items():  # the weights the saved optimizer state belongs to, not the newer file's
        assert torch.equal(network.state_dict()[name], value), name


def test_a_state_written_before_0_6_0_resumes_on_the_folders_weights(tmp_path: Path, synthetic_dataset: Path) -> None:
    config = tiny_config(synthetic_dataset, tmp_path / "run")
    last = _model(tmp_path / "run" / "last", config, seed=5)
    optimizer = torch.optim.AdamW(load_model(last)[0].parameters())
    torch.save({"optimizer": optimizer.state_dict(), "epoch": 4, "step": 8, "elapsed": 60.0, "best_dice": 0.5},
               last / STATE_NAME)  # no weights, no scaler: the state of an earlier version
    network = build_network(make_card(config, {}))
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    progress = resume(network, torch.optim.AdamW(network.parameters()), scaler, last)
    assert (progress.epoch, progress.step, progress.best_dice) == (4, 8, 0.5) and scaler.get_scale() == 1024.0
    for name, value in load_model(last)[0].state_dict().items():
        assert torch.equal(network.state_dict()[name], value), name


def test_the_loss_scale_of_a_float16_run_is_kept_for_its_resume(tmp_path: Path, synthetic_dataset: Path) -> None:
    config = tiny_config(synthetic_dataset, tmp_path / "run")
    card = make_card(config, {})
    network = build_network(card)
    optimizer = torch.optim.AdamW(network.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0)  # where float16 overflows had brought the default 2**16
    save_checkpoints(network, optimizer, scaler, card, tmp_path / "run", Progress(epoch=3), {}, improved=True)
    resumed = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    resume(build_network(card), torch.optim.AdamW(network.parameters()), resumed, tmp_path / "run" / "last")
    assert resumed.get_scale() == 512.0
    unscaled = torch.amp.GradScaler("cpu", enabled=False)  # a bfloat16 run's state holds no scale...
    save_checkpoints(network, optimizer, unscaled, card, tmp_path / "bf16", Progress(epoch=3), {}, improved=True)
    float16 = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)  # ...so resumed in float16 it starts a new one
    resume(build_network(card), torch.optim.AdamW(network.parameters()), float16, tmp_path / "bf16" / "last")
    assert float16.get_scale() == 2.0 ** 16


def test_a_resume_with_other_settings_than_the_run_was_started_with_is_refused(tmp_path: Path,
                                                                                synthetic_dataset: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(synthetic_dataset, run, epochs=1, steps_per_epoch=2, val_every=1), show_progress=False)
    before = (run / "last" / "model.safetensors").read_bytes()
    short = tiny_config(synthetic_dataset, run, epochs=2, steps_per_epoch=2, val_cases=(), plane="coronal",
                        resume=True)  # the README's short form would drop the validation case and the plane
    with pytest.raises(ValueError, match=r"--plane: started 'axial', now 'coronal'; --val-cases: started"):
        train(short, show_progress=False)
    darker = tiny_config(synthetic_dataset, run, epochs=2, steps_per_epoch=2, val_every=1, darken=0.5, resume=True)
    with pytest.raises(ValueError, match=r"--darken: started 0.0, now 0.5"):
        train(darker, show_progress=False)
    assert (run / "last" / "model.safetensors").read_bytes() == before
    longer = tiny_config(synthetic_dataset, run, epochs=2, steps_per_epoch=2, val_every=1, resume=True,
                         init=tmp_path / "ignored")  # --init is ignored on a resume: last/ holds newer weights
    assert train(longer, show_progress=False).last == run / "last"  # more epochs may be asked for
    assert load_card(run / "last").provenance["lineage"][-1]["started_from"] is None  # as the run started


def test_a_run_started_before_the_cap_existed_resumes_without_it(tmp_path: Path, synthetic_dataset: Path) -> None:
    """Its card has no ``centre_clip`` (read as 0) and its config record none: a plain ``--resume`` would train the
    rest with today's default cap, so it is refused until ``--centre-clip 0`` is given."""
    run = tmp_path / "run"
    train(tiny_config(synthetic_dataset, run, epochs=1, steps_per_epoch=2, centre_clip=0.0), show_progress=False)
    data = json.loads((run / "last" / "card.json").read_text())
    del data["preprocessing"]["centre_clip"], data["provenance"]["config"]["centre_clip"]
    (run / "last" / "card.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"--centre-clip: started 0.0, now 0.5"):
        train(tiny_config(synthetic_dataset, run, epochs=2, steps_per_epoch=2, resume=True), show_progress=False)
    resumed = train(tiny_config(synthetic_dataset, run, epochs=2, steps_per_epoch=2, centre_clip=0.0, resume=True),
                    show_progress=False)
    assert load_card(resumed.last).preprocessing.centre_clip == 0.0


def test_the_preprocessing_a_card_trained_with_ignores_what_was_set_after_training() -> None:
    note = {"field": "preprocessing.centre_clip", "from": 0.0, "to": 0.5, "package_version": "0.6.1"}
    card = ModelCard(preprocessing=Preprocessing(centre_clip=0.5), provenance={"set_after_training": [note]})
    trained = trained_preprocessing(card)
    assert trained["centre_clip"] == 0.0 and trained["spacing"] == [1.25, 1.25]  # as the config record writes it
    assert trained_preprocessing(ModelCard())["centre_clip"] == 0.5


def test_a_fresh_run_never_replaces_another_in_its_output(tmp_path: Path, synthetic_dataset: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(synthetic_dataset, run, epochs=1, steps_per_epoch=2, val_every=1), show_progress=False)
    before = {p.name: p.read_bytes() for p in (run / "last").iterdir()}
    with pytest.raises(ValueError, match=r"holds a training run \(last/\); add --resume to continue it"):
        train(tiny_config(synthetic_dataset, run, epochs=1, steps_per_epoch=2), show_progress=False)
    assert {p.name: p.read_bytes() for p in (run / "last").iterdir()} == before


def test_a_resume_onto_a_model_without_a_training_state_is_refused_and_the_model_kept(
        tmp_path: Path, synthetic_dataset: Path) -> None:
    """A model copied into ``RUN/last`` (or a run killed before its first state) has nothing to continue: a fresh
    start would replace it. A resume into a folder with no run yet starts it."""
    run = tmp_path / "run"
    config = tiny_config(synthetic_dataset, run, epochs=1, steps_per_epoch=1, val_cases=(), resume=True)
    weights = (_model(run / "last", config, seed=3) / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"--resume: .*last holds no training state \(training_state.pt\).*--init"):
        train(config, show_progress=False)
    assert (run / "last" / "model.safetensors").read_bytes() == weights and not (run / "best").exists()
    fresh = tmp_path / "fresh"
    train(replace(config, output=fresh), show_progress=False)
    assert (fresh / "last" / STATE_NAME).is_file()


def test_a_resume_on_data_that_changed_under_its_folder_is_refused(tmp_path: Path) -> None:
    root = write_msd_dataset(tmp_path / "msd" / "Synthetic", [100, 101, 102, 103, 104, 105])
    run = tmp_path / "run"
    options = dict(epochs=1, steps_per_epoch=2, val_cases=(), folds=3, fold=0)
    train(tiny_config(root, run, **options), show_progress=False)
    manifest = json.loads((root / "dataset.json").read_text())
    manifest["training"] = manifest["training"][:-1]  # a case gone: every fold is drawn anew
    (root / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"--resume continues .* as it was split, but the (train|validation) cases"):
        train(tiny_config(root, run, **{**options, "epochs": 2}, resume=True), show_progress=False)


def test_a_resume_whose_time_budget_was_spent_trains_no_epoch(tmp_path: Path, synthetic_dataset: Path) -> None:
    run = tmp_path / "run"
    spent = dict(steps_per_epoch=2, val_every=1, max_minutes=1e-4)  # out of time after the first epoch
    train(tiny_config(synthetic_dataset, run, epochs=3, **spent), show_progress=False)
    before = (run / "last" / STATE_NAME).read_bytes()
    assert torch.load(run / "last" / STATE_NAME, weights_only=True)["epoch"] == 1
    train(tiny_config(synthetic_dataset, run, epochs=3, resume=True, **spent), show_progress=False)
    assert (run / "last" / STATE_NAME).read_bytes() == before  # no epoch at a learning rate of 0


def test_a_resume_whose_budget_loading_the_data_uses_up_trains_no_epoch(
    tmp_path: Path, synthetic_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    train(tiny_config(synthetic_dataset, run, epochs=1, steps_per_epoch=2, val_every=1), show_progress=False)
    before = (run / "last" / STATE_NAME).read_bytes()
    spent_s = torch.load(run / "last" / STATE_NAME, weights_only=True)["elapsed"]
    real_sets = trainer.training_sets

    def slow_sets(config):  # reading and caching the data takes longer than the budget has left
        time.sleep(2.0)
        return real_sets(config)

    monkeypatch.setattr(trainer, "training_sets", slow_sets)
    budget = (spent_s + 1.0) / 60.0
    train(tiny_config(synthetic_dataset, run, epochs=3, steps_per_epoch=2, val_every=1, resume=True,
                      max_minutes=budget), show_progress=False)
    assert (run / "last" / STATE_NAME).read_bytes() == before  # no epoch at a learning rate of 0
