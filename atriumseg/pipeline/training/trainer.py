"""Training a slice-wise U-Net on one or more MSD-layout datasets, validated through the user-facing Segmenter.

Each epoch: train ``steps_per_epoch`` steps with the learning rate on its schedule, read the clock
(rank 0's, so every rank agrees), validate on rank 0 when due, save ``last/`` (and ``best/`` when
validation improved), write the epoch's metrics, let the other ranks catch up, stop when out of time.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.losses import DiceLoss
from monai.utils import set_determinism
from torch.utils.data import ConcatDataset
from tqdm.auto import tqdm

from atriumseg._version import __version__
from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import build_network
from atriumseg.models.lineage import stage
from atriumseg.pipeline.inference.device import autocast_dtype, resolve_device
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.training.checkpoints import (
    Progress,
    check_output,
    check_resume,
    earlier_stages,
    resume,
    resumes,
    save_checkpoints,
)
from atriumseg.pipeline.training.config import TrainConfig
from atriumseg.pipeline.training.distributed import (
    Ranks,
    data_parallel,
    from_main,
    process_group,
    rank_device,
    rank_seed,
)
from atriumseg.pipeline.training.metrics_log import MetricsLog
from atriumseg.pipeline.training.provenance import run_provenance
from atriumseg.pipeline.training.sampling import BalancedSampler
from atriumseg.pipeline.training.splits import TrainingSet, split_record, training_sets
from atriumseg.pipeline.training.validation import validate, validation_summary
from atriumseg.transforms.augmentation import cached_transforms, training_transforms
from atriumseg.transforms.preprocessing import IMAGE, LABEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where the checkpoints went, how good the best one is, and the trained network this process holds."""

    best: Path
    last: Path
    best_dice: float
    epochs_done: int
    seconds: float
    network: torch.nn.Module = field(repr=False, compare=False)


def make_card(config: TrainConfig, provenance: dict) -> ModelCard:
    """The card of the model ``config`` trains: its design, this package's version and ``provenance``."""
    return ModelCard.of(config.design, package_version=__version__, provenance=provenance)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Dice + binary cross-entropy of raw ``logits`` against ``labels`` (binarised at 0.5), over the batch."""
    target = (labels > 0.5).float()
    return DiceLoss(sigmoid=True, batch=True)(logits, target) + torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target)


def learning_rate(config: TrainConfig, step: int, done: float) -> float:
    """Linear warm-up over ``warmup_steps``, then a cosine from ``learning_rate`` to 0 as ``done`` goes to 1."""
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    return config.learning_rate * warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))


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
    """The training loop of one process; single-process training is the case of one rank."""
    run = TrainingRun.start(config, ranks, device, show_progress)
    first = run.progress.epoch
    try:
        for epoch in range(first, config.epochs):
            if epoch and run.out_of_time(run.elapsed()):  # spent by a resume's loading or by validating: no epoch
                _log_spent(config, epoch, resumed_now=epoch == first)  # at a learning rate of 0
                break
            loss, lr = run.train_epoch(epoch)
            elapsed = run.elapsed()
            out_of_time = run.out_of_time(elapsed)
            if ranks.is_main:
                per_dataset = run.validate(epoch, out_of_time)
                with_validation = run.clock()  # what a resume carries on from, and the card's training time
                run.save(epoch, loss, per_dataset, with_validation)
                run.record(epoch, loss, lr, per_dataset, with_validation)
            run.wait_for_main(epoch)
            if out_of_time:
                log.info("time budget of %.1f min reached; stopping after epoch %d", config.max_minutes, epoch + 1)
                break
    finally:
        run.close()
    return run.result()


def _log_spent(config: TrainConfig, epochs_done: int, resumed_now: bool) -> None:
    if resumed_now:
        log.warning("the time budget of %.1f min was spent (before this resume, or loading the data for it); "
                    "nothing trained (give a larger --max-minutes to continue)", config.max_minutes)
    else:
        log.info("time budget of %.1f min reached while validating; stopping after epoch %d", config.max_minutes,
                 epochs_done)


@dataclass
class TrainingRun:
    """The state of one process's training run, and the named steps of its epochs (see :func:`train`)."""

    config: TrainConfig
    ranks: Ranks
    device: torch.device
    show_progress: bool
    sets: list[TrainingSet]
    card: ModelCard
    network: torch.nn.Module
    model: torch.nn.Module  # ``network``, wrapped in DistributedDataParallel when distributed
    optimizer: torch.optim.Optimizer
    amp: torch.dtype | None  # the autocast type, None for float32
    scaler: torch.amp.GradScaler  # loss scaling, enabled for float16 only
    progress: Progress
    earlier: list[dict]  # the lineage before this run
    loader: DataLoader
    metrics: MetricsLog | None
    started: float  # time.monotonic() when start() began
    lr: float = 0.0  # the learning rate of the last step

    @classmethod
    def start(cls, config: TrainConfig, ranks: Ranks, device: torch.device, show_progress: bool) -> TrainingRun:
        """Seed, split the data, build the network and optimizer, and load ``last/`` (resume) or ``init``. The
        run's clock starts here: the time budget and the card's training time count loading the data too."""
        started = time.monotonic()
        seed = rank_seed(config.seed, ranks)
        set_determinism(seed=seed)
        sets = training_sets(config)
        check_output(config, split_record(sets, config.exclude))  # never over another run, nor resumed on other data
        output = Path(config.output)
        output.mkdir(parents=True, exist_ok=True)
        resuming = resumes(config)
        provenance = run_provenance(config, sets, device, ranks.world_size)
        if resuming:  # the run as it was started, whose card keeps the model it started from
            provenance["config"]["init"] = check_resume(config).get("init")
        card = make_card(config, provenance)
        network = build_network(card).to(device).to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        amp = autocast_dtype(device, config.precision)
        scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
        progress = resume(network, optimizer, scaler, output / "last") if resuming else Progress()
        earlier = earlier_stages(network, card, output, config.init, resuming)
        model = data_parallel(network, ranks, device)
        loader = _loader(config, card, sets, seed + progress.epoch, show_progress)
        metrics = MetricsLog(output, resuming, [s.dataset.name for s in sets]) if ranks.is_main else None
        return cls(config, ranks, device, show_progress, sets, card, network, model, optimizer, amp, scaler,
                   progress, earlier, loader, metrics, started)

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the loader; returns the mean loss and the last learning rate."""
        self.model.train()
        losses = []
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{self.config.epochs}", disable=not self.show_progress,
                   leave=False)
        for batch in bar:
            losses.append(self.step(batch))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{self.lr:.2e}")
        return float(np.mean(losses)), self.lr

    def step(self, batch: dict) -> float:
        """One optimizer step on a batch of slices at the scheduled learning rate; returns the loss before it."""
        self.lr = self.schedule()
        x = batch[IMAGE].to(self.device).contiguous(memory_format=torch.channels_last)
        y = batch[LABEL].to(self.device)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            logits = self.model(x).float()
        loss = segmentation_loss(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.progress.step += 1
        return loss.item()

    def schedule(self) -> float:
        """Set the learning rate of the next step, from the steps done or the time spent, whichever is further."""
        config = self.config
        budget_s = config.max_minutes * 60.0
        done = max(self.progress.step / (config.epochs * config.steps_per_epoch),
                   self.elapsed() / budget_s if budget_s else 0.0)
        lr = learning_rate(config, self.progress.step, done)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def clock(self) -> float:
        """Seconds of training so far, resumed runs included, by this process's clock."""
        return self.progress.elapsed_before + time.monotonic() - self.started

    def elapsed(self) -> float:
        """:meth:`clock` of rank 0, which every rank agrees on (a collective call: every rank makes it)."""
        return from_main(self.clock(), self.ranks, self.device)

    def out_of_time(self, elapsed: float) -> bool:
        return bool(self.config.max_minutes) and elapsed >= self.config.max_minutes * 60.0

    def validate(self, epoch: int, out_of_time: bool) -> dict[str, dict[str, dict[str, float]]]:
        """Per-dataset, per-case metrics every ``val_every`` epochs, at the last epoch and when out of time."""
        config = self.config
        due = (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs or out_of_time
        if not due or not any(s.validation for s in self.sets):
            return {}
        segmenter = Segmenter(self.network, self.card, device=self.device, precision=config.precision)
        return {s.dataset.name: validate(segmenter, s.validation, s.dataset.orientation)
                for s in self.sets if s.validation}

    def save(self, epoch: int, loss: float, per_dataset: dict, elapsed: float) -> None:
        """Write ``last/`` and, if validation improved (or there is none), ``best/``; the card records the
        run so far and the lineage with this stage."""
        progress = self.progress
        validating = any(s.validation for s in self.sets)
        val_mean = validation_summary(per_dataset).get("overall", math.nan)
        improved = not validating or val_mean > progress.best_dice
        if per_dataset:
            progress.best_dice = max(progress.best_dice, val_mean)
        so_far = {**self.card.provenance, "epochs": epoch + 1, "steps": progress.step,
                  "training_seconds": round(elapsed, 1), "final_train_loss": loss}
        card = replace(self.card, provenance={**so_far, "lineage": [*self.earlier, stage(so_far)]})
        save_checkpoints(self.network, self.optimizer, self.scaler, card, Path(self.config.output),
                         replace(progress, epoch=epoch + 1, elapsed_before=elapsed), per_dataset, improved)

    def record(self, epoch: int, loss: float, lr: float, per_dataset: dict, elapsed: float) -> None:
        """The epoch's row in ``metrics.csv`` and its log line."""
        self.metrics.write(epoch + 1, self.progress.step, loss, lr, per_dataset, elapsed)
        figures = "".join(f" {k} {v:.4f}" for k, v in validation_summary(per_dataset).items())
        log.info("epoch %d/%d loss %.4f%s (%.0f s)", epoch + 1, self.config.epochs, loss,
                 f" val Dice{figures}" if figures else "", elapsed)

    def wait_for_main(self, epoch: int) -> None:
        """Every rank takes rank 0's best Dice, which also holds the others until rank 0 has saved."""
        self.progress.best_dice = from_main(self.progress.best_dice, self.ranks, self.device)
        self.progress.epoch = epoch + 1

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()

    def result(self) -> TrainResult:
        output = Path(self.config.output)
        return TrainResult(
            best=output / "best", last=output / "last", best_dice=self.progress.best_dice,
            epochs_done=self.progress.epoch, network=self.network, seconds=self.clock(),
        )


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
    augmented = Dataset(ConcatDataset(cached), transform=training_transforms(
        card, config.patch, config.slices_per_volume, config.gamma, config.darken, config.zoom))
    # MONAI's loader seeds the transforms (and its workers) from this generator: a run resumed at epoch E draws
    # the augmentations of seed + E, not those of epoch 0 again
    return DataLoader(augmented, batch_size=config.volumes_per_step, sampler=sampler, num_workers=config.workers,
                      generator=torch.Generator().manual_seed(seed))
