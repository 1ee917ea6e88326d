"""Training a slice-wise U-Net on an MSD-layout dataset, validated through the user-facing Segmenter."""

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
from torch.utils.data import RandomSampler
from tqdm.auto import tqdm

from atriumseg._version import __version__
from atriumseg.models.card import Architecture, ModelCard, Postprocessing, Preprocessing
from atriumseg.models.checkpoint import build_network, load_model, save_model
from atriumseg.pipeline.dataset import Case, MSDDataset, kfold_split, load_msd_dataset
from atriumseg.pipeline.distributed import Ranks, data_parallel, from_main, process_group, rank_device, rank_seed
from atriumseg.pipeline.evaluation import evaluate
from atriumseg.pipeline.inference import Segmenter, autocast_dtype, resolve_device
from atriumseg.transforms.augmentation import cached_transforms, training_transforms
from atriumseg.transforms.preprocessing import IMAGE, LABEL

log = logging.getLogger(__name__)
STATE_NAME = "training_state.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; recorded on the model card."""

    dataset: Path
    output: Path
    width: int = 32
    depth: int = 4
    context: int = 1
    plane: str = "sagittal"
    spacing: tuple[float, float] = (1.25, 1.25)
    patch: int = 160
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
    orientation: str | None = "known"
    device: str = "auto"
    precision: str = "auto"
    workers: int = 0
    resume: bool = False
    command: str = field(default="", compare=False)


@dataclass(frozen=True)
class TrainResult:
    """Where the checkpoints went, how good the best one is, and the trained network this process holds."""

    best: Path
    last: Path
    best_dice: float
    epochs_done: int
    seconds: float
    network: torch.nn.Module = field(repr=False, compare=False)


def split_cases(dataset: MSDDataset, config: TrainConfig) -> tuple[list[Case], list[Case]]:
    """(training, validation) cases: explicit ``val_cases``, or fold ``fold`` of ``folds``; ``exclude`` is never used."""
    names = [c.name for c in dataset.cases if c.name not in config.exclude]
    if config.folds:
        train_names, val_names = kfold_split(names, config.folds, config.fold, config.seed)
    else:
        val_names = list(config.val_cases)
        train_names = [n for n in names if n not in val_names]
    if not train_names:
        raise ValueError("no training cases left after the validation split and exclusions")
    return dataset.select(train_names), dataset.select(val_names)


def make_card(config: TrainConfig, provenance: dict) -> ModelCard:
    """The card of the model this configuration trains."""
    return ModelCard(
        architecture=Architecture(in_channels=2 * config.context + 1, width=config.width, depth=config.depth),
        preprocessing=Preprocessing(
            orientation="RAS", plane=config.plane, spacing=tuple(config.spacing), context=config.context
        ),
        postprocessing=Postprocessing(),
        package_version=__version__,
        provenance=provenance,
    )


def _learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    return config.learning_rate * warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def validate(segmenter: Segmenter, cases: list[Case], orientation: str | None) -> dict[str, dict[str, float]]:
    """Per-case metrics of whole held-out volumes, segmented exactly as users segment them."""
    rows = evaluate(segmenter, [(c.name, c.image, c.label) for c in cases], orientation, show_progress=False)
    return {name: asdict(metrics) for name, metrics in rows}


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
    """One CSV row per epoch in ``metrics.csv`` (appended on resume), mirrored to TensorBoard when installed."""

    COLUMNS = ("epoch", "step", "loss", "lr", "val_dice_mean", "val_dice_per_case", "seconds")

    def __init__(self, output: Path, resume: bool) -> None:
        path = output / "metrics.csv"
        append = resume and path.exists()
        self._fh = open(path, "a" if append else "w", newline="")
        self._csv = csv.writer(self._fh)
        if not append:
            self._csv.writerow(self.COLUMNS)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self._board = None
        else:
            self._board = SummaryWriter(str(output / "tensorboard"))

    def write(self, epoch: int, step: int, loss: float, lr: float, per_case: dict, elapsed: float) -> None:
        dice = [m["dice"] for m in per_case.values()]
        self._csv.writerow([
            epoch, step, f"{loss:.5f}", f"{lr:.3e}", f"{np.mean(dice):.4f}" if dice else "",
            " ".join(f"{k}={v['dice']:.4f}" for k, v in per_case.items()), f"{elapsed:.1f}",
        ])
        self._fh.flush()
        if self._board is not None:
            self._board.add_scalar("loss/train", loss, step)
            self._board.add_scalar("lr", lr, step)
            if dice:
                self._board.add_scalar("dice/validation", float(np.mean(dice)), step)

    def close(self) -> None:
        self._fh.close()
        if self._board is not None:
            self._board.close()


def _provenance(config: TrainConfig, dataset: MSDDataset, train_cases: list[Case], val_cases: list[Case],
                device: torch.device, ranks: Ranks) -> dict:
    return {
        "data": {"dataset": dataset.name, "root": str(config.dataset), "header_orientation_fix": dataset.orientation},
        "split": {
            "train": [c.name for c in train_cases],
            "validation": [c.name for c in val_cases],
            "excluded": list(config.exclude),
        },
        "command": config.command,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "machine": _machine(),
        "device": str(device),
        "processes": ranks.world_size,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }


def _resume(network: torch.nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> _Progress:
    """Load weights, optimizer state and progress from ``folder`` (a ``last/`` checkpoint)."""
    loaded, _ = load_model(folder)
    network.load_state_dict(loaded.state_dict())
    state = torch.load(folder / STATE_NAME, weights_only=True, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    progress = _Progress(int(state["epoch"]), int(state["step"]), float(state["elapsed"]), float(state["best_dice"]))
    log.info("resuming from epoch %d (step %d, best Dice %.4f)", progress.epoch, progress.step, progress.best_dice)
    return progress


def _loader(config: TrainConfig, card: ModelCard, cases: list[Case], orientation: str | None, seed: int,
            show_progress: bool) -> DataLoader:
    """Cached preprocessed volumes, drawn with replacement, cut into augmented foreground-balanced slices."""
    data = [{IMAGE: str(c.image), LABEL: str(c.label)} for c in cases]
    cached = CacheDataset(data, transform=cached_transforms(card, orientation), progress=show_progress)
    sampler = RandomSampler(
        cached, replacement=True, num_samples=config.steps_per_epoch * config.volumes_per_step,
        generator=torch.Generator().manual_seed(seed),
    )
    augment = training_transforms(card, config.patch, config.slices_per_volume)
    augment.set_random_state(seed=seed)
    augmented = Dataset(cached, transform=augment)
    return DataLoader(augmented, batch_size=config.volumes_per_step, sampler=sampler, num_workers=config.workers)


def _save(network: torch.nn.Module, optimizer: torch.optim.Optimizer, card: ModelCard, output: Path,
          progress: _Progress, per_case: dict, improved: bool) -> None:
    """Write ``last/`` (with the optimizer state for resuming) and, when it improved, ``best/``."""
    save_model(network, card, output / "last")
    torch.save(
        {"optimizer": optimizer.state_dict(), "epoch": progress.epoch, "step": progress.step,
         "elapsed": progress.elapsed_before, "best_dice": progress.best_dice},
        output / "last" / STATE_NAME,
    )
    if improved:
        save_model(network, replace(card, provenance={**card.provenance, "validation": per_case}), output / "best")


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
    dataset = load_msd_dataset(config.dataset, config.orientation)
    train_cases, val_cases = split_cases(dataset, config)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    provenance = _provenance(config, dataset, train_cases, val_cases, device, ranks)
    card = make_card(config, provenance)
    network = build_network(card).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    resuming = config.resume and (output / "last" / STATE_NAME).is_file()
    progress = _resume(network, optimizer, output / "last") if resuming else _Progress()
    model = data_parallel(network, ranks, device)
    loader = _loader(config, card, train_cases, dataset.orientation, seed + progress.epoch, show_progress)
    dice_loss, bce = DiceLoss(sigmoid=True, batch=True), torch.nn.BCEWithLogitsLoss()
    amp = autocast_dtype(device, config.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    total_steps, budget_s = config.epochs * config.steps_per_epoch, config.max_minutes * 60.0
    started = time.monotonic()
    metrics = _MetricsLog(output, resuming) if ranks.is_main else None
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
                x = batch[IMAGE].as_tensor().to(device).contiguous(memory_format=torch.channels_last)
                y = (batch[LABEL].as_tensor() > 0.5).float().to(device)
                with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    logits = model(x).float()
                loss = dice_loss(logits, y) + bce(logits, y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                losses.append(loss.item())
                progress.step += 1
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{lr:.2e}")
            elapsed = from_main(progress.elapsed_before + time.monotonic() - started, ranks, device)
            out_of_time = bool(budget_s) and elapsed >= budget_s
            if ranks.is_main:
                per_case = {}
                if val_cases and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs or out_of_time):
                    segmenter = Segmenter(network, card, device=device, precision=config.precision)
                    per_case = validate(segmenter, val_cases, dataset.orientation)
                val_mean = float(np.mean([m["dice"] for m in per_case.values()])) if per_case else math.nan
                improved = not val_cases or val_mean > progress.best_dice
                progress.best_dice = max(progress.best_dice, val_mean) if per_case else progress.best_dice
                epoch_card = replace(card, provenance={
                    **provenance, "epochs": epoch + 1, "steps": progress.step, "training_seconds": round(elapsed, 1),
                    "final_train_loss": float(np.mean(losses)),
                })
                _save(network, optimizer, epoch_card, output,
                      replace(progress, epoch=epoch + 1, elapsed_before=elapsed), per_case, improved)
                metrics.write(epoch + 1, progress.step, float(np.mean(losses)), lr, per_case, elapsed)
                log.info("epoch %d/%d loss %.4f%s (%.0f s)", epoch + 1, config.epochs, np.mean(losses),
                         "" if math.isnan(val_mean) else f" val Dice {val_mean:.4f}", elapsed)
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
