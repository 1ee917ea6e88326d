"""Training throughput: the default configuration against the same loop in float32.

Two measurements, each configuration in a fresh process (so peak RSS is its own):

* ``step``: the inner loop of ``atriumseg.pipeline.training.train`` (forward under autocast,
  Dice + BCE loss, backward, AdamW step) on fixed batches of the default shape (4 volumes x 4
  slices of 160 x 160, 3 context channels): the network's own speed, no data loading.
* ``train()``: the public ``train`` function on a few real cases (no validation) for two epochs;
  slices per second come from the second epoch (between the epoch-end log records of ``train``),
  so caching and first-call costs are left out.
  This includes the augmentation chain, which runs in the training process (``workers=0``).
* ``augmentation``: the random slice chain alone on a few cached real volumes, in this process, as
  training runs it (MONAI's metadata tracking off) against the same transforms with tracking on
  (MONAI's default, the baseline): milliseconds per volume of 4 augmented slices.

The default precision is ``auto`` (bfloat16 autocast where the CPU has avx512-bf16, channels_last);
the baseline is the same loop with ``precision='float32'``. The ``step`` benchmark also times
float32 without channels_last. FLOPs of a step (forward and backward) come from torch's
FlopCounterMode, as a share of a large bfloat16 matmul's rate on the same machine.

    python -m benchmarks.training [--quick] [--data FOLDER] [--device auto]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    DEFAULT_DATA,
    cuda_peak_mb,
    describe_rates,
    machine,
    network_flops,
    peak_rates,
    peak_rss_mb,
    print_table,
    run_worker,
    serve_as_worker,
    write_results,
)

log = logging.getLogger("benchmarks.training")

TARGET_SPEEDUP = 3.0
# (label, precision, channels_last): the default configuration first, then the baselines.
STEP_CONFIGS = [("default (auto)", "auto", True), ("float32", "float32", True), ("float32, NCHW", "float32", False)]
TRAIN_CONFIGS = [("default (auto)", "auto"), ("float32", "float32")]


def _network(width: int, depth: int, context: int) -> torch.nn.Module:
    from atriumseg.models.card import Architecture, ModelDesign, Preprocessing
    from atriumseg.models.checkpoint import build_network

    return build_network(ModelDesign(Architecture(2 * context + 1, width, depth), Preprocessing(context=context)))


def _batch(batch: int, channels: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed image batch and a label of one disc per slice, like foreground-balanced training slices."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, channels, patch, patch, generator=generator)
    grid = torch.stack(torch.meshgrid(torch.arange(patch), torch.arange(patch), indexing="ij")).float()
    centres = torch.randint(patch // 4, 3 * patch // 4, (batch, 2, 1, 1), generator=generator).float()
    y = (((grid[None] - centres) ** 2).sum(1, keepdim=True) < (patch / 6) ** 2).float()
    return x, y


def step_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time ``spec['steps']`` optimiser steps of the training loop after ``spec['warmup']`` untimed ones."""
    from atriumseg.pipeline.inference.device import autocast_dtype, resolve_device
    from atriumseg.pipeline.training.trainer import segmentation_loss

    torch.manual_seed(0)
    device = resolve_device(spec["device"])
    network = _network(spec["width"], spec["depth"], spec["context"]).to(device)
    layout = torch.channels_last if spec["channels_last"] else torch.contiguous_format
    network = network.to(memory_format=layout)
    optimizer = torch.optim.AdamW(network.parameters(), lr=2e-3, weight_decay=1e-4)
    amp = autocast_dtype(device, spec["precision"])
    images, labels = _batch(spec["batch"], 2 * spec["context"] + 1, spec["patch"])
    network.train()
    started = 0.0
    for step in range(spec["warmup"] + spec["steps"]):
        if step == spec["warmup"]:
            _sync(device)
            started = time.perf_counter()
        x = images.to(device).contiguous(memory_format=layout)
        y = labels.to(device)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = network(x).float()
        loss = segmentation_loss(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
    _sync(device)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "slices": spec["steps"] * spec["batch"], "autocast": str(amp),
            "peak_rss_mb": peak_rss_mb(), "cuda_peak_mb": cuda_peak_mb(device)}


class _EpochClock(logging.Handler):
    """Records when ``train`` logs the end of each epoch (after its checkpoint is written)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.ends: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("epoch "):
            self.ends.append(record.created)


def train_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the public ``train`` for two epochs and time the second one, from the end of the first."""
    from atriumseg.pipeline.training.config import TrainConfig
    from atriumseg.pipeline.training.dataset import load_msd_dataset
    from atriumseg.pipeline.training.trainer import train

    dataset = load_msd_dataset(Path(spec["data"]))
    keep = [c.name for c in dataset.cases][: spec["cases"]]
    config = TrainConfig(
        datasets=(Path(spec["data"]),), output=Path(spec["output"]), epochs=2, steps_per_epoch=spec["steps"],
        exclude=tuple(c.name for c in dataset.cases if c.name not in keep), val_cases=(), device=spec["device"],
        precision=spec["precision"], **spec["overrides"],
    )
    clock = _EpochClock()
    training_log = logging.getLogger("atriumseg.pipeline.training.trainer")
    training_log.setLevel(logging.INFO)
    training_log.addHandler(clock)
    train(config, show_progress=False)
    device = torch.device("cuda" if spec["device"] != "cpu" and torch.cuda.is_available() else "cpu")
    return {"seconds": clock.ends[1] - clock.ends[0],
            "slices": spec["steps"] * config.volumes_per_step * config.slices_per_volume,
            "batch": config.volumes_per_step * config.slices_per_volume, "patch": config.patch,
            "cases": keep, "peak_rss_mb": peak_rss_mb(), "cuda_peak_mb": cuda_peak_mb(device)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rows(results: list[dict[str, Any]], flops_per_slice: float, peak: float) -> list[list[str]]:
    base = results[1]
    rows = []
    for r in results:
        rate = r["slices"] / r["seconds"]
        rows.append([
            r["label"], f"{rate:.2f}", f"{rate / (base['slices'] / base['seconds']):.2f}x",
            f"{r['peak_rss_mb']:.0f}", f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}x",
            "-" if r["cuda_peak_mb"] is None else f"{r['cuda_peak_mb']:.0f}",
            f"{rate * flops_per_slice / 1e9:.0f}", f"{100 * rate * flops_per_slice / peak:.1f}%",
        ])
    return rows


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--worker`` is how the benchmark calls itself in a fresh process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny network and a few steps: a smoke test")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MSD-layout folder for the train() run")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration (step benchmark)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _measure_steps(args: argparse.Namespace, shape: dict[str, int]) -> list[dict[str, Any]]:
    """The step loop of every configuration of :data:`STEP_CONFIGS`, each in a fresh process."""
    steps, warmup = (2, 1) if args.quick else (args.steps, 2)
    results = []
    for label, precision, channels_last in STEP_CONFIGS:
        log.info("step loop: %s", label)
        result = run_worker("benchmarks.training", {
            "kind": "step", "precision": precision, "channels_last": channels_last, "device": args.device,
            "steps": steps, "warmup": warmup, **shape})
        results.append({"label": label, "precision": precision, "channels_last": channels_last, **result})
    return results


def _measure_train(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``train()`` in every configuration of :data:`TRAIN_CONFIGS`, each in a fresh process; none without data."""
    if not (args.data / "dataset.json").is_file():
        log.warning("%s is not an MSD dataset: skipping the train() measurement", args.data)
        return []
    overrides = dict(width=8, depth=3, patch=64, volumes_per_step=2, slices_per_volume=2) if args.quick else {}
    results = []
    with tempfile.TemporaryDirectory(prefix="atriumseg-bench-") as tmp:
        for label, precision in TRAIN_CONFIGS:
            log.info("train(): %s", label)
            result = run_worker("benchmarks.training", {
                "kind": "train", "data": str(args.data), "output": str(Path(tmp) / precision),
                "precision": precision, "device": args.device, "steps": 2 if args.quick else 8,
                "cases": 2 if args.quick else 3, "overrides": overrides})
            results.append({"label": label, "precision": precision, **result})
    return results


def _measure_augmentation(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The random slice chain of the default design untracked (as training runs it) and tracked (the baseline),
    timed alternately on the same cached volumes with the same seed, after one untimed call each; none without
    data."""
    if not (args.data / "dataset.json").is_file():
        return []
    from monai.transforms import Compose

    from atriumseg.pipeline.training.config import TrainConfig
    from atriumseg.pipeline.training.dataset import load_msd_dataset
    from atriumseg.transforms.augmentation import cached_transforms, training_transforms
    from atriumseg.transforms.preprocessing import IMAGE, LABEL

    config = TrainConfig(datasets=(args.data,), output=Path("unused"))
    dataset = load_msd_dataset(args.data)
    head = cached_transforms(config.design, dataset.orientation, config.patch)
    volumes = [head({IMAGE: str(c.image), LABEL: str(c.label)}) for c in dataset.cases[: 2 if args.quick else 3]]
    untracked = training_transforms(config.design, config.patch, config.slices_per_volume)
    chains = {"untracked (training)": untracked, "tracked (MONAI default)": Compose(untracked.transforms)}
    for chain in chains.values():  # first calls (allocations, lazy imports) are not what is measured
        chain(dict(volumes[0]))
    seconds, repeats = dict.fromkeys(chains, 0.0), 2 if args.quick else 10
    for _ in range(repeats):
        for label, chain in chains.items():
            chain.set_random_state(0)
            started = time.perf_counter()
            for volume in volumes:
                chain(dict(volume))
            seconds[label] += time.perf_counter() - started
    return [{"label": label, "ms_per_volume": 1000 * total / (repeats * len(volumes)),
             "slices_per_volume": config.slices_per_volume} for label, total in seconds.items()]


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in a fresh process: a training step's timing or a short training run (``spec["kind"]``)."""
    return step_worker(spec) if spec["kind"] == "step" else train_worker(spec)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its tables."""
    args = parse(argv)
    if serve_as_worker(args.worker, worker):
        return
    from atriumseg.pipeline.inference.device import resolve_device

    device = resolve_device(args.device)
    shape = dict(width=8, depth=3, context=1, patch=64, batch=4) if args.quick else dict(
        width=32, depth=4, context=1, patch=160, batch=16)
    rates = peak_rates(device, args.quick)
    network = _network(shape["width"], shape["depth"], shape["context"])
    per_slice = network_flops(network, (1, 2 * shape["context"] + 1, shape["patch"], shape["patch"]), backward=True)
    step_results = _measure_steps(args, shape)
    train_results = _measure_train(args)
    augmentation = _measure_augmentation(args)
    info = machine(device)
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads, "
          f"{info['device']}; {describe_rates(rates)}")
    network_desc = (f"width {shape['width']}, depth {shape['depth']}, {2 * shape['context'] + 1} channels, "
                    f"{shape['batch']} slices of {shape['patch']}x{shape['patch']} per step; "
                    f"{per_slice / 1e9:.1f} GFLOP per slice forward+backward")
    headers = ["configuration", "slices/s", "vs float32", "peak RSS MB", "RSS ratio", "CUDA MB", "GFLOP/s",
               "of bf16 mm"]
    print_table(f"Training step loop ({network_desc}; ratios against float32, channels_last)", headers,
                _rows(step_results, per_slice, rates["bfloat16"]))
    if train_results:
        per_train_slice = network_flops(network, (1, 2 * shape["context"] + 1, train_results[0]["patch"],
                                                  train_results[0]["patch"]), backward=True)
        print_table(f"train() on {len(train_results[0]['cases'])} real cases, second epoch (data augmentation "
                    "included; ratios against precision=float32)", headers,
                    _rows(train_results, per_train_slice, rates["bfloat16"]))
    if augmentation:
        base = augmentation[1]["ms_per_volume"]
        print_table(f"Training slice augmentation on cached volumes of {args.data.name} (ratios against tracked)",
                    ["chain", "ms per volume", "speed vs tracked"],
                    [[r["label"], f"{r['ms_per_volume']:.1f}", f"{base / r['ms_per_volume']:.2f}x"]
                     for r in augmentation])
    speedup = (step_results[0]["slices"] / step_results[0]["seconds"]) / (
        step_results[1]["slices"] / step_results[1]["seconds"])
    checks = [(f"training step >= {TARGET_SPEEDUP:.0f}x the float32 loop", f"{speedup:.2f}x",
               speedup >= TARGET_SPEEDUP)]
    if train_results:
        end_to_end = (train_results[0]["slices"] / train_results[0]["seconds"]) / (
            train_results[1]["slices"] / train_results[1]["seconds"])
        checks.append((f"train() >= {TARGET_SPEEDUP:.0f}x precision=float32", f"{end_to_end:.2f}x",
                       end_to_end >= TARGET_SPEEDUP))
    print_table("Targets", ["target", "measured", "met"], [[t, m, "yes" if ok else "NO"] for t, m, ok in checks])
    path = write_results("training", {
        "quick": args.quick, "machine": info, "matmul_flop_per_s": rates, "network": shape,
        "gflop_per_slice_fwd_bwd": per_slice / 1e9, "step": step_results, "train": train_results,
        "augmentation": augmentation,
        "targets": {t: ok for t, _, ok in checks}})
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
