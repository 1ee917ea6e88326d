"""Training a slice-wise U-Net on an MSD-layout dataset, validated through the user-facing Segmenter."""

from __future__ import annotations

import csv
import logging
import math
import platform
import sys
import time
from contextlib import nullcontext
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
    provenance = {
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
    card = make_card(config, provenance)
    network = build_network(card).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    start_epoch, step, elapsed_before, best_dice = 0, 0, 0.0, -1.0
    if config.resume and (output / "last" / STATE_NAME).is_file():
        loaded, _ = load_model(output / "last")
        network.load_state_dict(loaded.state_dict())
        state = torch.load(output / "last" / STATE_NAME, weights_only=True, map_location="cpu")
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        elapsed_before, best_dice = float(state["elapsed"]), float(state["best_dice"])
        log.info("resuming from epoch %d (step %d, best Dice %.4f)", start_epoch, step, best_dice)
    model = data_parallel(network, ranks, device)

    data = [{IMAGE: str(c.image), LABEL: str(c.label)} for c in train_cases]
    cached = CacheDataset(data, transform=cached_transforms(card, dataset.orientation), progress=show_progress)
    sampler = RandomSampler(
        cached, replacement=True, num_samples=config.steps_per_epoch * config.volumes_per_step,
        generator=torch.Generator().manual_seed(seed + start_epoch),
    )
    augment = training_transforms(card, config.patch, config.slices_per_volume)
    augment.set_random_state(seed=seed + start_epoch)
    augmented = Dataset(cached, transform=augment)
    loader = DataLoader(augmented, batch_size=config.volumes_per_step, sampler=sampler, num_workers=config.workers)
    dice_loss = DiceLoss(sigmoid=True, batch=True)
    bce = torch.nn.BCEWithLogitsLoss()
    amp = autocast_dtype(device, config.precision)
    total_steps = config.epochs * config.steps_per_epoch
    budget_s = config.max_minutes * 60.0
    started = time.monotonic()
    metrics_path = output / "metrics.csv"
    new_log = not metrics_path.exists() or not config.resume
    epoch = start_epoch
    with open(metrics_path, "w" if new_log else "a", newline="") if ranks.is_main else nullcontext() as fh:
        writer = csv.writer(fh) if ranks.is_main else None
        if writer and new_log:
            writer.writerow(["epoch", "step", "loss", "lr", "val_dice_mean", "val_dice_per_case", "seconds"])
        for epoch in range(start_epoch, config.epochs):
            model.train()
            losses = []
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not show_progress, leave=False)
            for batch in bar:
                elapsed = from_main(elapsed_before + time.monotonic() - started, ranks, device)
                progress = max(step / total_steps, elapsed / budget_s if budget_s else 0.0)
                lr = _learning_rate(config, step, progress)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x = batch[IMAGE].as_tensor().to(device).contiguous(memory_format=torch.channels_last)
                y = (batch[LABEL].as_tensor() > 0.5).float().to(device)
                with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    logits = model(x).float()
                loss = dice_loss(logits, y) + bce(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                step += 1
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{lr:.2e}")
            elapsed = from_main(elapsed_before + time.monotonic() - started, ranks, device)
            out_of_time = bool(budget_s) and elapsed >= budget_s
            last_epoch = epoch + 1 == config.epochs or out_of_time
            if ranks.is_main:
                val_mean, per_case = math.nan, {}
                if val_cases and ((epoch + 1) % config.val_every == 0 or last_epoch):
                    segmenter = Segmenter(network, card, device=device, precision=config.precision)
                    per_case = validate(segmenter, val_cases, dataset.orientation)
                    val_mean = float(np.mean([m["dice"] for m in per_case.values()]))
                train_card = replace(
                    card,
                    provenance={
                        **provenance,
                        "epochs": epoch + 1,
                        "steps": step,
                        "training_seconds": round(elapsed, 1),
                        "final_train_loss": float(np.mean(losses)) if losses else math.nan,
                    },
                )
                save_model(network, train_card, output / "last")
                torch.save(
                    {
                        "optimizer": optimizer.state_dict(),
                        "epoch": epoch + 1,
                        "step": step,
                        "elapsed": elapsed,
                        "best_dice": max(best_dice, val_mean) if not math.isnan(val_mean) else best_dice,
                    },
                    output / "last" / STATE_NAME,
                )
                if not val_cases or (not math.isnan(val_mean) and val_mean > best_dice):
                    best_dice = val_mean if not math.isnan(val_mean) else best_dice
                    best_card = replace(train_card, provenance={**train_card.provenance, "validation": per_case})
                    save_model(network, best_card, output / "best")
                writer.writerow(
                    [epoch + 1, step, f"{np.mean(losses):.5f}" if losses else "", f"{lr:.3e}" if losses else "",
                     "" if math.isnan(val_mean) else f"{val_mean:.4f}",
                     " ".join(f"{k}={v['dice']:.4f}" for k, v in per_case.items()), f"{elapsed:.1f}"]
                )
                fh.flush()
                log.info(
                    "epoch %d/%d loss %.4f%s (%.0f s)", epoch + 1, config.epochs,
                    np.mean(losses) if losses else math.nan,
                    "" if math.isnan(val_mean) else f" val Dice {val_mean:.4f}", elapsed,
                )
                if out_of_time:
                    log.info("time budget of %.1f min reached; stopping after epoch %d", config.max_minutes, epoch + 1)
            best_dice = from_main(best_dice, ranks, device)  # the other ranks wait here for rank 0's checkpoint
            if out_of_time:
                break
    return TrainResult(
        best=output / "best", last=output / "last", best_dice=best_dice, epochs_done=epoch + 1,
        seconds=elapsed_before + time.monotonic() - started, network=network,
    )
