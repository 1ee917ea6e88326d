"""Training a slice-wise U-Net on one or more MSD-layout datasets, validated through the user-facing Segmenter."""

from __future__ import annotations

import csv
import logging
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.losses import DiceLoss
from monai.utils import set_determinism
from torch.utils.data import ConcatDataset
from tqdm.auto import tqdm

from atriumseg import defaults
from atriumseg._version import __version__
from atriumseg.models.card import Architecture, ModelCard, Postprocessing, Preprocessing
from atriumseg.models.checkpoint import build_network, default_model_path, load_card, load_model, save_model
from atriumseg.pipeline.inference.device import autocast_dtype, resolve_device
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.training.dataset import LabelledCase, MSDDataset, kfold_split, load_msd_dataset
from atriumseg.pipeline.training.distributed import Ranks, data_parallel, from_main, process_group, rank_device, rank_seed
from atriumseg.pipeline.training.evaluation import evaluate
from atriumseg.pipeline.training.sampling import BalancedSampler
from atriumseg.transforms.augmentation import cached_transforms, crop_side, training_transforms
from atriumseg.transforms.preprocessing import IMAGE, LABEL

log = logging.getLogger(__name__)
STATE_NAME = "training_state.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; recorded on the model card.

    ``datasets`` are MSD-layout folders trained on together; ``weights`` (one per dataset, default
    equal) set each dataset's share of every batch, and ``orientations`` (one per dataset, or one for
    all; default ``"known"``) the true axis codes of its voxels (``"known"`` fixes the datasets the
    project knows to be mislabelled, None trusts the headers). ``val_cases`` and ``exclude`` name cases
    of any dataset; with ``folds``, each dataset is split into folds of its own. ``init`` names a model
    folder of the same architecture whose weights the run starts from (ignored when resuming, since
    ``last/`` then holds newer ones); the card's ``lineage`` records that model's stages before this one.
    """

    datasets: tuple[Path, ...]
    output: Path
    weights: tuple[float, ...] = ()
    orientations: tuple[str | None, ...] = ("known",)
    width: int = defaults.WIDTH
    depth: int = defaults.DEPTH
    context: int = defaults.CONTEXT
    plane: str = defaults.PLANE
    spacing: tuple[float, float] = (defaults.SPACING_MM, defaults.SPACING_MM)
    slice_spacing: float = defaults.SLICE_SPACING_MM
    patch: int = defaults.PATCH
    epochs: int = 100
    steps_per_epoch: int = 50
    volumes_per_step: int = 4
    slices_per_volume: int = 4
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    val_cases: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    folds: int = 0
    fold: int = 0
    val_every: int = 5
    seed: int = 0
    max_minutes: float = 0.0
    device: str = "auto"
    precision: str = "auto"
    workers: int = 0
    resume: bool = False
    init: Path | None = None
    command: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        datasets = (self.datasets,) if isinstance(self.datasets, (str, Path)) else tuple(self.datasets)
        object.__setattr__(self, "datasets", tuple(Path(d) for d in datasets))
        n = len(self.datasets)
        if not n:
            raise ValueError("TrainConfig needs at least one dataset")
        weights = tuple(float(w) for w in self.weights) or (1.0,) * n
        orientations = tuple(self.orientations) or ("known",)
        if len(orientations) == 1:
            orientations *= n
        if len(weights) != n or len(orientations) != n:
            raise ValueError(
                f"{n} datasets need {n} weights and 1 or {n} orientations, got {len(weights)} and {len(orientations)}"
            )
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"dataset weights must be >= 0 with a positive sum, got {list(weights)}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "orientations", orientations)


@dataclass(frozen=True)
class TrainingSet:
    """One dataset of a run with its share of the batches and its split."""

    dataset: MSDDataset
    weight: float
    train: list[LabelledCase]
    validation: list[LabelledCase]


@dataclass(frozen=True)
class TrainResult:
    """Where the checkpoints went, how good the best one is, and the trained network this process holds."""

    best: Path
    last: Path
    best_dice: float
    epochs_done: int
    seconds: float
    network: torch.nn.Module = field(repr=False, compare=False)


def split_cases(dataset: MSDDataset, config: TrainConfig) -> tuple[list[LabelledCase], list[LabelledCase]]:
    """(training, validation) cases of one dataset: the ``val_cases`` it holds, or fold ``fold`` of ``folds``.

    ``exclude`` is never used.
    """
    names = [c.name for c in dataset.cases if c.name not in config.exclude]
    if config.folds:
        train_names, val_names = kfold_split(names, config.folds, config.fold, config.seed)
    else:
        val_names = [n for n in config.val_cases if n in names]
        train_names = [n for n in names if n not in val_names]
    if not train_names:
        raise ValueError(f"{dataset.root}: no training cases left after the validation split and exclusions")
    return dataset.select(train_names), dataset.select(val_names)


def training_sets(config: TrainConfig) -> list[TrainingSet]:
    """Load every dataset of the run and split it; names in ``val_cases``/``exclude`` must each exist once."""
    datasets = [load_msd_dataset(root, o) for root, o in zip(config.datasets, config.orientations)]
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ValueError(f"datasets must have distinct names in dataset.json, got {names}")
    owners: dict[str, list[str]] = {}
    for d in datasets:
        for c in d.cases:
            owners.setdefault(c.name, []).append(d.name)
    for name in (*config.val_cases, *config.exclude):
        if name not in owners:
            raise ValueError(f"case {name!r} is in none of the datasets {names}")
        if len(owners[name]) > 1:
            raise ValueError(f"case {name!r} is in several datasets ({owners[name]}); rename one")
    sets = []
    for dataset, weight in zip(datasets, config.weights):
        train_cases, val_cases = split_cases(dataset, config)
        sets.append(TrainingSet(dataset, weight, train_cases, val_cases))
    return sets


def make_card(config: TrainConfig, provenance: dict) -> ModelCard:
    """The card of the model this configuration trains.

    Its ``min_slice_size`` is the crop training cuts (:func:`crop_side` of the patch) on the
    network's pooling grid: slices smaller than that are zero-padded at inference as they were in
    training, so a tight crop around the atrium meets the network in the surround it learned.
    """
    architecture = Architecture(in_channels=2 * config.context + 1, width=config.width, depth=config.depth)
    step = architecture.divisor
    return ModelCard(
        architecture=architecture,
        preprocessing=Preprocessing(
            orientation="RAS", plane=config.plane, spacing=tuple(config.spacing), context=config.context,
            slice_spacing=config.slice_spacing, min_slice_size=-(-crop_side(config.patch) // step) * step,
        ),
        postprocessing=Postprocessing(),
        package_version=__version__,
        provenance=provenance,
    )


def _learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    return config.learning_rate * warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def validate(segmenter: Segmenter, cases: list[LabelledCase], orientation: str | None) -> dict[str, dict[str, float]]:
    """Per-case metrics of whole held-out volumes, segmented exactly as users segment them."""
    rows = evaluate(segmenter, [(c.name, c.image, c.label) for c in cases], orientation, show_progress=False)
    return {name: asdict(metrics) for name, metrics in rows}


def validation_summary(per_dataset: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Mean Dice per dataset and ``overall``, the mean of those means (each dataset counts once)."""
    means = {name: float(np.mean([m["dice"] for m in cases.values()])) for name, cases in per_dataset.items() if cases}
    return {**means, "overall": float(np.mean(list(means.values())))} if means else {}


def _machine() -> str:
    return f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, {platform.system()}".strip()


def train(config: TrainConfig, show_progress: bool = True) -> TrainResult:
    """Train, validate every ``val_every`` epochs, and keep ``best/`` and ``last/`` model folders in ``output``.

    Started by ``torchrun`` with more than one process, each process trains a DistributedDataParallel
    replica on its own GPU (``LOCAL_RANK``) or on the CPU, and rank 0 alone validates and writes; every
    rank returns with the same weights. Each rank draws ``steps_per_epoch * volumes_per_step`` volumes per
    epoch, so the batch of one step grows with the number of processes.
    """
    ranks = Ranks.from_env()
    device = rank_device(resolve_device(config.device), ranks)
    with process_group(ranks, device):
        return _train_process(config, ranks, device, show_progress and ranks.is_main)


@dataclass
class _Progress:
    """Where a run stands; saved with ``last/`` so ``--resume`` continues from it."""

    epoch: int = 0
    step: int = 0
    elapsed_before: float = 0.0
    best_dice: float = -1.0


class _MetricsLog:
    """One CSV row per epoch in ``metrics.csv`` (appended on resume), mirrored to TensorBoard when installed.

    ``val_dice_mean`` is the overall figure that picks ``best/`` (the mean of the per-dataset means);
    ``val_dice_<dataset>`` the mean of each dataset's validation cases.
    """

    def __init__(self, output: Path, resume: bool, dataset_names: list[str]) -> None:
        self.columns = ("epoch", "step", "loss", "lr", "val_dice_mean",
                        *(f"val_dice_{n}" for n in dataset_names), "val_dice_per_case", "seconds")
        self._names = dataset_names
        path = output / "metrics.csv"
        append = resume and path.exists()
        self._fh = open(path, "a" if append else "w", newline="")
        self._csv = csv.writer(self._fh)
        if not append:
            self._csv.writerow(self.columns)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self._board = None
        else:
            self._board = SummaryWriter(str(output / "tensorboard"))

    def write(self, epoch: int, step: int, loss: float, lr: float, per_dataset: dict, elapsed: float) -> None:
        summary = validation_summary(per_dataset)
        figures = [f"{summary[k]:.4f}" if k in summary else "" for k in ("overall", *self._names)]
        per_case = " ".join(f"{k}={v['dice']:.4f}" for cases in per_dataset.values() for k, v in cases.items())
        self._csv.writerow([epoch, step, f"{loss:.5f}", f"{lr:.3e}", *figures, per_case, f"{elapsed:.1f}"])
        self._fh.flush()
        if self._board is not None:
            self._board.add_scalar("loss/train", loss, step)
            self._board.add_scalar("lr", lr, step)
            for key, value in summary.items():
                self._board.add_scalar(f"dice/{'validation' if key == 'overall' else key}", value, step)

    def close(self) -> None:
        self._fh.close()
        if self._board is not None:
            self._board.close()


def _provenance(config: TrainConfig, sets: list[TrainingSet], device: torch.device, ranks: Ranks) -> dict:
    return {
        "data": [
            {"dataset": s.dataset.name, "root": str(s.dataset.root), "header_orientation_fix": s.dataset.orientation,
             "weight": s.weight, "reference": s.dataset.reference, "licence": s.dataset.licence}
            for s in sets
        ],
        "split": {
            s.dataset.name: {
                "train": [c.name for c in s.train],
                "validation": [c.name for c in s.validation],
                "excluded": [c.name for c in s.dataset.cases if c.name in config.exclude],
            }
            for s in sets
        },
        "command": config.command,
        "config": {**{k: _jsonable(v) for k, v in asdict(config).items()}, "init": _model_name(config.init)},
        "machine": _machine(),
        "device": str(device),
        "processes": ranks.world_size,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }


def _model_name(folder: Path | None) -> str | None:
    """How the card names a starting model: ``built-in <version>`` for the shipped one, else its path."""
    if folder is None:
        return None
    return f"built-in {__version__}" if Path(folder).resolve() == default_model_path().resolve() else str(folder)


def _jsonable(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _resume(network: torch.nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> _Progress:
    """Load weights, optimizer state and progress from ``folder`` (a ``last/`` checkpoint)."""
    loaded, _ = load_model(folder)
    network.load_state_dict(loaded.state_dict())
    state = torch.load(folder / STATE_NAME, weights_only=True, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    progress = _Progress(int(state["epoch"]), int(state["step"]), float(state["elapsed"]), float(state["best_dice"]))
    log.info("resuming from epoch %d (step %d, best Dice %.4f)", progress.epoch, progress.step, progress.best_dice)
    return progress


def initial_weights(network: torch.nn.Module, card: ModelCard, init: Path) -> list[dict]:
    """Load the weights of the model folder ``init`` into ``network``; returns that model's lineage.

    The model must have this run's architecture (a clear :class:`ValueError` otherwise); a model
    trained before lineages were recorded counts as one stage described by its own provenance.
    """
    loaded, init_card = load_model(init)
    if init_card.architecture != card.architecture:
        raise ValueError(
            f"--init {init}: its architecture {init_card.architecture} differs from this run's "
            f"{card.architecture}; train with the same --width, --depth and --context, or start from scratch"
        )
    if init_card.preprocessing != card.preprocessing:
        log.warning("--init %s: preprocessing differs from this run's (%s vs %s); its weights are a starting point only",
                    init, init_card.preprocessing, card.preprocessing)
    network.load_state_dict(loaded.state_dict())
    log.info("starting from the weights of %s", init)
    return lineage_of(init_card)


def lineage_of(card: ModelCard) -> list[dict]:
    """The training stages that made the model of ``card``, oldest first."""
    provenance = card.provenance
    if "lineage" in provenance:
        return list(provenance["lineage"])
    return [_stage(provenance)]


def _stage(provenance: dict) -> dict:
    """One training stage as the lineage records it: where it started, how long, on what data."""
    split, config = provenance.get("split", {}), provenance.get("config", {})
    return {
        "run": config.get("output"),
        "started_from": config.get("init"),
        "command": provenance.get("command", ""),
        "epochs": provenance.get("epochs"),
        "steps": provenance.get("steps"),
        "minutes": round(provenance.get("training_seconds", 0.0) / 60.0, 1),
        "device": provenance.get("device"),
        "data": {name: {"train": len(s.get("train", [])), "validation": len(s.get("validation", []))}
                 for name, s in split.items()},
    }


def _loader(config: TrainConfig, card: ModelCard, sets: list[TrainingSet], seed: int,
            show_progress: bool) -> DataLoader:
    """Cached preprocessed volumes of every dataset, drawn in the datasets' proportions per batch and cut
    into augmented foreground-balanced slices."""
    cached = [
        CacheDataset([{IMAGE: str(c.image), LABEL: str(c.label)} for c in s.train],
                     transform=cached_transforms(card, s.dataset.orientation, config.patch), progress=show_progress)
        for s in sets
    ]
    sampler = BalancedSampler([len(c) for c in cached], [s.weight for s in sets], config.volumes_per_step,
                              config.steps_per_epoch, seed)
    augment = training_transforms(card, config.patch, config.slices_per_volume)
    augment.set_random_state(seed=seed)
    augmented = Dataset(ConcatDataset(cached), transform=augment)
    return DataLoader(augmented, batch_size=config.volumes_per_step, sampler=sampler, num_workers=config.workers)


def _save(network: torch.nn.Module, optimizer: torch.optim.Optimizer, card: ModelCard, output: Path,
          progress: _Progress, per_dataset: dict, improved: bool) -> None:
    """Write ``last/`` (with the optimizer state for resuming) and, when it improved, ``best/``."""
    save_model(network, card, output / "last")
    torch.save(
        {"optimizer": optimizer.state_dict(), "epoch": progress.epoch, "step": progress.step,
         "elapsed": progress.elapsed_before, "best_dice": progress.best_dice},
        output / "last" / STATE_NAME,
    )
    if improved:
        provenance = {**card.provenance, "validation": per_dataset, "validation_dice": validation_summary(per_dataset)}
        save_model(network, replace(card, provenance=provenance), output / "best")


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, batch: dict,
          device: torch.device, amp: torch.dtype | None) -> float:
    """One optimizer step on a batch of slices (Dice + BCE on the logits); returns the loss."""
    x = batch[IMAGE].as_tensor().to(device).contiguous(memory_format=torch.channels_last)
    y = (batch[LABEL].as_tensor() > 0.5).float().to(device)
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        logits = model(x).float()
    loss = DiceLoss(sigmoid=True, batch=True)(logits, y) + torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


def _earlier_stages(config: TrainConfig, network: torch.nn.Module, card: ModelCard, resuming: bool) -> list[dict]:
    """The lineage before this run: from ``init`` on a fresh start, from ``last/``'s card on resume."""
    if resuming:
        return list(load_card(Path(config.output) / "last").provenance.get("lineage", [])[:-1])
    if config.init is None:
        return []
    return initial_weights(network, card, Path(config.init))


def _train_process(config: TrainConfig, ranks: Ranks, device: torch.device, show_progress: bool) -> TrainResult:
    """The training loop of one process; single-process training is the case of one rank.

    Every rank draws its volumes independently and uniformly with replacement from all training volumes,
    from a generator seeded by its rank, and augments them from a rank-seeded random state: together the
    ranks draw what one process with a ``world_size`` times larger batch would draw (in distribution). A
    ``DistributedSampler`` would instead split the volumes into one shard per rank, padding with repeats
    when they do not divide evenly, which over-weights the repeated volumes and confines each rank to its
    shard; it suits epochs that visit each item once, which these do not.
    """
    seed = rank_seed(config.seed, ranks)
    set_determinism(seed=seed)
    sets = training_sets(config)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    provenance = _provenance(config, sets, device, ranks)
    card = make_card(config, provenance)
    network = build_network(card).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    resuming = config.resume and (output / "last" / STATE_NAME).is_file()
    progress = _resume(network, optimizer, output / "last") if resuming else _Progress()
    earlier = _earlier_stages(config, network, card, resuming)
    model = data_parallel(network, ranks, device)
    loader = _loader(config, card, sets, seed + progress.epoch, show_progress)
    amp = autocast_dtype(device, config.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    total_steps, budget_s = config.epochs * config.steps_per_epoch, config.max_minutes * 60.0
    started = time.monotonic()
    metrics = _MetricsLog(output, resuming, [s.dataset.name for s in sets]) if ranks.is_main else None
    validating = any(s.validation for s in sets)
    try:
        for epoch in range(progress.epoch, config.epochs):
            model.train()
            losses = []
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not show_progress, leave=False)
            for batch in bar:
                elapsed = from_main(progress.elapsed_before + time.monotonic() - started, ranks, device)
                done = max(progress.step / total_steps, elapsed / budget_s if budget_s else 0.0)
                lr = _learning_rate(config, progress.step, done)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                losses.append(_step(model, optimizer, scaler, batch, device, amp))
                progress.step += 1
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{lr:.2e}")
            elapsed = from_main(progress.elapsed_before + time.monotonic() - started, ranks, device)
            out_of_time = bool(budget_s) and elapsed >= budget_s
            if ranks.is_main:
                per_dataset = {}
                if validating and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs or out_of_time):
                    segmenter = Segmenter(network, card, device=device, precision=config.precision)
                    per_dataset = {s.dataset.name: validate(segmenter, s.validation, s.dataset.orientation)
                                   for s in sets if s.validation}
                summary = validation_summary(per_dataset)
                val_mean = summary.get("overall", math.nan)
                improved = not validating or val_mean > progress.best_dice
                progress.best_dice = max(progress.best_dice, val_mean) if per_dataset else progress.best_dice
                done_so_far = {**provenance, "epochs": epoch + 1, "steps": progress.step,
                               "training_seconds": round(elapsed, 1), "final_train_loss": float(np.mean(losses))}
                epoch_card = replace(card, provenance={
                    **done_so_far, "lineage": [*earlier, _stage(done_so_far)],
                })
                _save(network, optimizer, epoch_card, output,
                      replace(progress, epoch=epoch + 1, elapsed_before=elapsed), per_dataset, improved)
                metrics.write(epoch + 1, progress.step, float(np.mean(losses)), lr, per_dataset, elapsed)
                figures = "".join(f" {k} {v:.4f}" for k, v in summary.items())
                log.info("epoch %d/%d loss %.4f%s (%.0f s)", epoch + 1, config.epochs, np.mean(losses),
                         f" val Dice{figures}" if figures else "", elapsed)
                if out_of_time:
                    log.info("time budget of %.1f min reached; stopping after epoch %d", config.max_minutes, epoch + 1)
            progress.best_dice = from_main(progress.best_dice, ranks, device)  # other ranks wait for rank 0's save
            progress.epoch = epoch + 1
            if out_of_time:
                break
    finally:
        if metrics is not None:
            metrics.close()
    return TrainResult(
        best=output / "best", last=output / "last", best_dice=progress.best_dice, epochs_done=progress.epoch,
        seconds=progress.elapsed_before + time.monotonic() - started, network=network,
    )
