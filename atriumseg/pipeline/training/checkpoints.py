"""A run's checkpoints: ``last/`` (with the optimizer state, for ``--resume``), ``best/``, and starting weights.

``last/`` and ``best/`` are ordinary model folders (safetensors weights and a card), so either can be
used, evaluated or continued from at once; ``last/`` also holds ``training_state.pt`` (the weights it belongs
with, optimizer and loss-scaler state, progress: tensors and numbers only, read with ``weights_only=True``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from atriumseg.models.card import ModelCard, ModelDesign
from atriumseg.models.checkpoint import STATE_NAME, CheckpointError, load_card, load_model, save_model
from atriumseg.models.ensemble import is_ensemble, load_ensemble_card
from atriumseg.models.lineage import lineage_of
from atriumseg.pipeline.io.writing import write_atomically
from atriumseg.pipeline.training.config import TrainConfig
from atriumseg.pipeline.training.provenance import config_record
from atriumseg.pipeline.training.validation import validation_summary
from atriumseg.pipeline.training.widening import deepen, widen_context, widen_width

log = logging.getLogger(__name__)
# What a --resume may set otherwise than the run was started with; everything else must match last/'s card
# (init included: last/ holds newer weights, and the card keeps the model the run started from).
RESUME_MAY_CHANGE = frozenset({"epochs", "max_minutes", "val_every", "workers", "device", "precision", "resume",
                               "command", "output", "init"})


@dataclass
class Progress:
    """Where a run stands; saved with ``last/`` so ``--resume`` continues from it."""

    epoch: int = 0
    step: int = 0
    elapsed_before: float = 0.0
    best_dice: float = -1.0


def save_checkpoints(network: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                     card: ModelCard, output: Path, progress: Progress, per_dataset: dict, improved: bool) -> None:
    """Write ``best/`` with the validation figures on its card when it ``improved``, then ``last/`` and, last of
    all, its state (the same weights, optimizer, loss scaler, ``progress``), one atomic file: a run killed in
    between resumes from the previous state whole, with the weights that state's optimizer stepped, never from one
    whose best Dice a stale ``best/`` does not hold (which no later epoch would then replace)."""
    if improved:
        provenance = {**card.provenance, "validation": per_dataset, "validation_dice": validation_summary(per_dataset)}
        save_model(network, replace(card, provenance=provenance), output / "best")
    save_model(network, card, output / "last")
    state = {"network": network.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
             "epoch": progress.epoch, "step": progress.step, "elapsed": progress.elapsed_before,
             "best_dice": progress.best_dice}
    write_atomically(output / "last" / STATE_NAME, lambda tmp: torch.save(state, tmp))  # never half a state file


def resumes(config: TrainConfig) -> bool:
    """Whether a run continues ``last/``: ``--resume`` and a state saved there (else it starts, ``--init`` too)."""
    return config.resume and (Path(config.output) / "last" / STATE_NAME).is_file()


def check_resume(config: TrainConfig) -> dict:
    """The settings ``last/``'s card records for the run a ``--resume`` continues ({} before the first ``last/``);
    a :class:`ValueError` names every one given otherwise (data, split, design, schedule...) but those of
    :data:`RESUME_MAY_CHANGE` (more epochs or minutes, another device; ``--init``, whose weights ``last/`` replaces)."""
    if not resumes(config):
        return {}
    card, now = load_card(Path(config.output) / "last"), config_record(config)
    started = {**{key: value for key, value in trained_preprocessing(card).items() if key in now},
               **card.provenance.get("config", {})}  # a field newer than the run is not in its config record
    differ = [key for key in sorted(set(started) & set(now) - RESUME_MAY_CHANGE)
              if _resolved(key, started[key]) != _resolved(key, now[key])]
    if differ:
        given = "; ".join(f"{_flag(key)}: started {started[key]!r}, now {now[key]!r}" for key in differ)
        free = ", ".join(_flag(key) for key in sorted(RESUME_MAY_CHANGE - {"resume", "command", "output"}))
        raise ValueError(f"--resume continues {config.output} as it was started, but {given}; repeat the run's own "
                         f"options (only {free} may change), or train into another --output")
    return started


def check_output(config: TrainConfig, split: dict) -> None:
    """Refuse (:class:`ValueError`) a run that would destroy another: a fresh run into an ``--output`` that holds
    one (its ``last/``, ``best/`` and ``metrics.csv`` would be replaced), a ``--resume`` onto a ``last/`` without a
    training state (it would start afresh over that model), and a ``--resume`` whose settings (:func:`check_resume`)
    or cases (``split``, per dataset: training and validation names) differ from the run's. A ``--resume`` into a
    folder with no ``last/`` starts the run, so one command starts or continues it."""
    output = Path(config.output)
    if not config.resume and (output / "last").exists():
        raise ValueError(f"{output} holds a training run (last/); add --resume to continue it, or train into "
                         "another --output")
    if config.resume and (output / "last").exists() and not resumes(config):
        raise ValueError(f"--resume: {output / 'last'} holds no training state ({STATE_NAME}) to continue from (a "
                         "model copied there, or a run killed while saving its first epoch), and a fresh start would "
                         f"replace it; train into another --output (--init {output / 'last'} starts from its weights)")
    if resumes(config):
        check_resume(config)
        check_resumed_split(output, split)


def check_resumed_split(output: Path, split: dict) -> None:
    """Refuse (:class:`ValueError`) to resume ``output/last`` when the cases split now (``split``: per dataset, its
    training and validation case names) differ from the run's: data that changed under the same folder would
    reshuffle the folds and validate on cases the run trained on."""
    before = load_card(Path(output) / "last").provenance.get("split", {})
    for name, now in split.items():
        then = before.get(name, {})
        for part in ("train", "validation"):
            moved = sorted(set(then.get(part, [])) ^ set(now[part]))
            if then and moved:
                raise ValueError(
                    f"--resume continues {output} as it was split, but the {part} cases of {name} differ now "
                    f"({', '.join(moved[:5])}{' and more' if len(moved) > 5 else ''}): the dataset changed since "
                    "the run started; train into another --output"
                )


def trained_preprocessing(card: ModelCard) -> dict:
    """The preprocessing ``card``'s weights were trained with, as JSON values: the card's own (a field newer than the
    card read as it meant then), less what ``tools/set_card.py`` set after training (its first note's ``from``)."""
    trained = json.loads(json.dumps(asdict(card.preprocessing)))
    for note in reversed(card.provenance.get("set_after_training", [])):
        trained[note["field"].removeprefix("preprocessing.")] = note["from"]
    return trained


def _flag(key: str) -> str:
    return "--lr" if key == "learning_rate" else f"--{key.replace('_', '-')}"


def _resolved(key: str, value: object) -> object:
    """Dataset folders compare by their real paths (typed relative or absolute, they are the same data)."""
    return [str(Path(v).resolve()) for v in value] if key == "datasets" and isinstance(value, list) else value


def resume(network: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
           folder: Path) -> Progress:
    """Load weights, optimizer and loss-scaler state and progress from ``folder`` (a ``last/`` checkpoint). The
    weights are the state's own (states of versions before 0.6.0 have none: then ``model.safetensors``'s); the
    scaler's state is loaded when the run scales (float16) and the state has one (a run resumed in float16 after
    bfloat16 starts a new scale)."""
    state = torch.load(folder / STATE_NAME, weights_only=True, map_location="cpu")
    network.load_state_dict(state["network"] if "network" in state else load_model(folder)[0].state_dict())
    optimizer.load_state_dict(state["optimizer"])
    if scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    progress = Progress(int(state["epoch"]), int(state["step"]), float(state["elapsed"]), float(state["best_dice"]))
    log.info("resuming from epoch %d (step %d, best Dice %.4f)", progress.epoch, progress.step, progress.best_dice)
    return progress


def init_folder(init: Path, design: ModelDesign) -> Path:
    """The model folder whose weights a run of ``design`` starts from: ``init`` itself, or, when ``init`` is
    an ensemble, its first member slicing in this run's plane (a :class:`ValueError` names the planes it has)."""
    init = Path(init)
    if not is_ensemble(init):
        return init
    try:
        members = load_ensemble_card(init).members
    except CheckpointError as err:
        raise ValueError(f"--init: {err}") from err
    planes = {}
    for name in members:
        try:
            planes[name] = load_card(init / name).preprocessing.plane
        except CheckpointError as err:
            raise ValueError(f"--init {init}: member {name!r}: {err}") from err
    plane = design.preprocessing.plane
    for name, member_plane in planes.items():
        if member_plane == plane:
            return init / name
    listed = ", ".join(f"{name} ({member_plane})" for name, member_plane in planes.items())
    raise ValueError(f"--init {init}: an ensemble with no {plane} member ({listed}); pass --plane of one of them, "
                     "or a member folder")


def check_init(init: Path, design: ModelDesign) -> ModelCard:
    """The card of the model folder a run of ``design`` starts from (:func:`init_folder`), if the run can take
    its weights: the same architecture, or a smaller one (fewer neighbour slices, channels or levels:
    :mod:`~atriumseg.pipeline.training.widening`), else a :class:`ValueError` saying which differs (checked before
    any work)."""
    folder = init_folder(init, design)
    try:
        init_card = load_card(folder)
    except CheckpointError as err:
        raise ValueError(f"--init: {err}") from err
    mine, theirs = design.architecture, init_card.architecture
    smaller = [f"--{flag} {ours} is {word} than its {its}" for flag, word, ours, its in (
        ("context", "narrower", design.preprocessing.context, init_card.preprocessing.context),
        ("width", "narrower", mine.width, theirs.width), ("depth", "shallower", mine.depth, theirs.depth))
        if ours < its]
    if smaller:
        raise ValueError(
            f"--init {folder}: its architecture {theirs} differs from this run's {mine} ({'; '.join(smaller)}); "
            "train with a --width and --context no narrower and a --depth no shallower than the model's, or start "
            "from scratch"
        )
    return init_card


def check_held_out(init: Path, init_card: ModelCard, validation: dict[str, list[str]], fold: int | None) -> None:
    """Refuse a fold run (``fold`` given) whose validation cases the ``--init`` model's run trained on, per dataset
    (its card's split), or that starts from a model picked on its validation cases (a ``best/``): that fold's
    out-of-fold figures would not be held out. Any other run is warned of such cases."""
    seen = {}
    for dataset, cases in validation.items():
        trained = set(init_card.provenance.get("split", {}).get(dataset, {}).get("train", []))
        if both := sorted(set(cases) & trained):
            seen[dataset] = both
    if fold is not None and init_card.picked_on_validation:
        raise ValueError(f"--init {init} was picked on its validation cases (a run's best/); continue fold {fold} from "
                         "its earlier run's last/, so no epoch is chosen on the cases it is scored on")
    if not seen:
        return
    listed = "; ".join(f"{dataset}: {', '.join(cases[:4])}{' ...' if len(cases) > 4 else ''} ({len(cases)})"
                       for dataset, cases in seen.items())
    if fold is not None:
        raise ValueError(f"--init {init} trained on validation cases of fold {fold} ({listed}), so its figures there "
                         "would not be held out; continue fold K from fold K's earlier run (same --folds, --seed and "
                         "--exclude), never from a model trained on every case")
    log.warning("--init %s trained on this run's validation cases (%s): their figures are not held out", init, listed)


def initial_weights(network: torch.nn.Module, card: ModelCard, init: Path) -> list[dict]:
    """Load the weights of the model folder ``init`` (or its member in this run's plane) into ``network``;
    returns that model's lineage.

    The model must have this run's architecture or a smaller one (:func:`check_init`; its weights are then
    grown to this run's neighbour slices, width and depth, computing what the model did); a different preprocessing
    otherwise is allowed, with a warning, since the weights are only a starting point.
    """
    folder = init_folder(init, card)
    init_card = check_init(folder, card)
    validation = {name: part.get("validation", []) for name, part in card.provenance.get("split", {}).items()}
    config = card.provenance.get("config", {})
    check_held_out(folder, init_card, validation, config.get("fold") if config.get("folds") else None)
    loaded, _ = load_model(folder)
    if replace(init_card.preprocessing, context=card.preprocessing.context) != card.preprocessing:
        log.warning("--init %s: preprocessing differs from this run's (%s vs %s); its weights are a starting "
                    "point only", folder, init_card.preprocessing, card.preprocessing)
    channels, width, depth = card.architecture.in_channels, card.architecture.width, card.architecture.depth
    if init_card.architecture.in_channels < channels:
        log.info("--init %s: first layer widened from %d to %d slices, the added ones with zero weights",
                 folder, init_card.architecture.in_channels, channels)
    if init_card.architecture.width < width:
        log.info("--init %s: widened from %d to %d channels at the first level, the added ones copies of its own",
                 folder, init_card.architecture.width, width)
    if init_card.architecture.depth < depth:
        log.info("--init %s: deepened from %d to %d levels, the new decoder level starting as the identity",
                 folder, init_card.architecture.depth, depth)
    network.load_state_dict(deepen(widen_width(widen_context(loaded.state_dict(), channels), width), depth))
    log.info("starting from the weights of %s", folder)
    return lineage_of(init_card)


def earlier_stages(network: torch.nn.Module, card: ModelCard, output: Path, init: Path | None,
                   resuming: bool) -> list[dict]:
    """The lineage before this run: from ``init``'s card on a fresh start (loading its weights), from
    ``last/``'s card on resume (whose last stage is this run's own)."""
    if resuming:
        return list(load_card(Path(output) / "last").provenance.get("lineage", [])[:-1])
    if init is None:
        return []
    return initial_weights(network, card, Path(init))
