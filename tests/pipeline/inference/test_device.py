"""Every step that touches a device, run on the one chosen with ``--device`` or ``ATRIUMSEG_TEST_DEVICE`` (default cpu).

On cpu these are ordinary tests; on cuda they are what ``benchmarks/gpu_check.sh`` runs on a lent GPU. Each
result on the device is compared with the same work on the CPU (the stand-in network, whose output at a
pixel depends on that pixel alone), on odd-sized grids with oblique, anisotropic affines, so that restoring
to the input grid resamples: masks keep the input's geometry exactly and agree with the CPU's within Dice
0.999 (mixed precision differs in rounding from one device to another, never in what it finds).
"""

from __future__ import annotations

import copy
import gc
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.distributed as dist
from helpers import dice, tiny_config, train, write_nifti
from monai.data import MetaTensor
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from atriumseg import BatchOptions, Segmenter, load_model, run_batch, segment
from atriumseg.pipeline.inference.device import autocast_dtype
from atriumseg.synthetic import make_affine, synthetic_case

MIN_DICE = 0.999
# (id, shape, voxel size in mm, axis codes, grid rotation in degrees): odd sizes, oblique and anisotropic.
GRIDS = [
    ("lps-oblique", (47, 53, 31), (1.1, 1.3, 1.9), "LPS", (12, -9, 20)),
    ("pir-anisotropic", (41, 36, 45), (2.1, 0.9, 1.2), "PIR", (0, 8, -5)),
]
DEADLINE_S = 300.0


def _scan(folder: Path, grid: tuple, seed: int = 4) -> tuple[Path, np.ndarray]:
    """A synthetic scan on ``grid`` written as NIfTI, and its true label."""
    name, shape, spacing, codes, rotation = grid
    case = synthetic_case(shape, make_affine(shape, spacing, codes, rotation), seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    return write_nifti(folder / f"{name}.nii.gz", case.image, case.affine), case.label


def _mask(image: nib.Nifti1Image) -> np.ndarray:
    return np.asarray(image.dataobj)


def _agree(on_device: np.ndarray, on_cpu: np.ndarray, what: str) -> None:
    score = dice(on_device, on_cpu)
    assert score >= MIN_DICE, f"{what}: Dice {score:.5f} between the device's and the CPU's masks (< {MIN_DICE})"


@pytest.fixture(scope="module")
def on_device(model_folder: Path, device: torch.device) -> Segmenter:
    """The stand-in model on the chosen device."""
    return Segmenter.from_path(model_folder, device=device)


@pytest.mark.parametrize("grid", GRIDS, ids=[g[0] for g in GRIDS])
def test_the_mask_keeps_the_input_geometry_and_matches_the_cpu(
    tmp_path: Path, grid: tuple, on_device: Segmenter, segmenter: Segmenter
) -> None:
    path, label = _scan(tmp_path, grid)
    source = nib.load(path)
    mask = segment(path, on_device)
    assert mask.shape == source.shape and mask.get_data_dtype() == np.uint8
    assert np.array_equal(mask.affine, source.affine), f"affine changed on {on_device.device}"
    assert int(mask.header["qform_code"]) == int(source.header["qform_code"])
    _agree(_mask(mask), _mask(segment(path, segmenter)), grid[0])
    found = dice(_mask(mask), label)
    assert found > 0.8, f"the stand-in should find the synthetic atrium on {on_device.device}: Dice {found:.3f}"


def test_focused_and_whole_slice_inference_agree_and_focus_sends_less(
    tmp_path: Path, model_folder: Path, device: torch.device
) -> None:
    path, _ = _scan(tmp_path, GRIDS[0])
    voxels = {}
    masks = {}
    for focus in (True, False):
        seg = Segmenter.from_path(model_folder, device=device, focus=focus)
        seen: list[int] = []
        seg.network.register_forward_hook(lambda _m, args, _o, seen=seen: seen.append(args[0][:, :1].numel()))
        masks[focus], voxels[focus] = _mask(segment(path, seg)), sum(seen)
    assert masks[False].any()
    _agree(masks[True], masks[False], "focused vs whole-slice on the device")
    assert voxels[True] < voxels[False], f"focused inference sent {voxels[True]} voxels, whole slices {voxels[False]}"


def test_test_time_augmentation_matches_the_cpu(tmp_path: Path, on_device: Segmenter, segmenter: Segmenter) -> None:
    path, _ = _scan(tmp_path, GRIDS[1], seed=7)
    with_tta = _mask(segment(path, on_device, tta=True))
    assert with_tta.any()
    _agree(with_tta, _mask(segment(path, segmenter, tta=True)), "test-time augmentation")


@pytest.mark.parametrize("grid", GRIDS, ids=[g[0] for g in GRIDS])
def test_probabilities_return_to_the_input_grid_on_the_cpu_side(
    tmp_path: Path, grid: tuple, model_folder: Path, device: torch.device
) -> None:
    """Restoration: float32 probabilities in [0, 1] on the input's grid and affine, close to the CPU's."""
    path, _ = _scan(tmp_path, grid, seed=11)
    image = nib.load(path)
    tensor = torch.from_numpy(np.asarray(image.dataobj, dtype=np.float32))[None]
    meta = MetaTensor(tensor, affine=torch.from_numpy(image.affine))
    results = {d: Segmenter.from_path(model_folder, device=d, precision="float32").segment(meta)
               for d in (device, "cpu")}
    prob, reference = results[device].probabilities, results["cpu"].probabilities
    assert prob.device.type == "cpu" and prob.dtype == torch.float32 and prob.shape == meta.shape
    assert torch.equal(prob.affine, meta.affine)
    assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0
    gap = float((prob.as_tensor() - reference.as_tensor()).abs().max())
    assert gap <= 0.05, f"restored float32 probabilities differ from the CPU's by up to {gap:.4f}"
    _agree(results[device].mask.numpy(), results["cpu"].mask.numpy(), f"{grid[0]} in float32")


def test_the_batch_runner_writes_the_cpu_masks(tmp_path: Path, on_device: Segmenter, segmenter: Segmenter) -> None:
    inputs = tmp_path / "in"
    scans = [_scan(inputs, grid, seed=20 + i)[0] for i, grid in enumerate(GRIDS)]
    outcome = run_batch(on_device, [inputs], BatchOptions(output=tmp_path / "out", workers=1, show_progress=False))
    assert not outcome.interrupted and not outcome.output_error
    assert sorted(r.status for r in outcome.results) == ["ok", "ok"], [(r.case, r.reason) for r in outcome.results]
    for result in outcome.results:
        scan = next(s for s in scans if s.name.startswith(result.case))
        written = nib.load(result.output)
        assert np.array_equal(written.affine, nib.load(scan).affine)
        _agree(_mask(written), _mask(segment(scan, segmenter)), f"batch case {result.case}")


def _expected_autocast(device: torch.device, precision: str) -> set[torch.dtype]:
    """The dtypes a training convolution may produce: mixed precision on CUDA, bfloat16 or float32 on a CPU."""
    if precision == "float16":
        return {torch.float16}
    if device.type == "cuda":
        return {torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16}
    return {torch.bfloat16, torch.float32}


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["auto", "float16"])
def test_a_short_mixed_precision_training_run(
    tmp_path: Path, synthetic_dataset: Path, device: torch.device, precision: str
) -> None:
    seen: set[torch.dtype] = set()

    def record(module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d) and torch.is_grad_enabled():
            seen.add(output.dtype)

    config = tiny_config(synthetic_dataset, tmp_path / "run", epochs=2, steps_per_epoch=3, val_every=1,
                         device=str(device), precision=precision)
    handle = nn.modules.module.register_module_forward_hook(record)
    try:
        result = train(config, show_progress=False)
    finally:
        handle.remove()
    assert len(seen) == 1 and seen <= _expected_autocast(device, precision), f"training convolutions gave {seen}"
    assert all(p.device.type == device.type and torch.isfinite(p).all() for p in result.network.parameters())
    _, card = load_model(result.last)
    assert card.provenance["device"].startswith(device.type)
    assert math.isfinite(card.provenance["final_train_loss"]) and math.isfinite(result.best_dice)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_torchrun_with_one_process_trains_on_the_device(
    tmp_path: Path, synthetic_dataset: Path, device: torch.device
) -> None:
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
        "-m", "atriumseg", "train", str(synthetic_dataset), "--output", str(run), "--width", "16", "--depth", "3",
        "--context", "0", "--spacing", "1.5", "--patch", "32", "--epochs", "1", "--steps-per-epoch", "2",
        "--val-cases", "case_103", "--device", str(device), "--quiet",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE_S,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    _, card = load_model(run / "best")
    assert card.provenance["processes"] == 1 and card.provenance["device"].startswith(device.type)


@pytest.mark.slow
def test_a_one_rank_process_group_steps_like_the_plain_network(model_folder: Path, device: torch.device) -> None:
    """The backend training picks (NCCL on CUDA, Gloo on CPU) with DistributedDataParallel around the U-Net:
    one mixed-precision step of one rank changes the weights as the plain network's step does."""
    torch.manual_seed(0)
    plain = load_model(model_folder)[0]
    for p in plain.parameters():
        nn.init.normal_(p, std=0.2)
    plain = plain.to(device).to(memory_format=torch.channels_last)
    wrapped = copy.deepcopy(plain)
    x = torch.rand(4, 3, 48, 40, device=device).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(4, 1, 48, 40, device=device) > 0.7).float()
    dtype = _expected_autocast(device, "auto").pop() if device.type == "cuda" else torch.bfloat16
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{_free_port()}",
                            rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(wrapped, device_ids=[device.index or 0] if device.type == "cuda" else None)
        for model in (plain, ddp):
            optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
            with torch.autocast(device.type, dtype=dtype):
                loss = nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
            loss.backward()
            optimizer.step()
        del ddp, model, optimizer, loss  # the wrapper lets go of the group first, as training's does
        gc.collect()
    finally:
        dist.destroy_process_group()
    held = wrapped.state_dict()
    gaps = {name: float((value - held[name]).abs().max()) for name, value in plain.state_dict().items()}
    worst = max(gaps, key=gaps.get)
    assert gaps[worst] <= 1e-5, f"after one step, {worst} differs by {gaps[worst]:.2e} between DDP and plain"


@pytest.mark.parametrize(("capability", "dtype"), [((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                                   ((9, 0), torch.bfloat16)])
def test_auto_precision_on_a_gpu_follows_that_gpus_compute_capability(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], dtype: torch.dtype
) -> None:
    """A T4 or V100 (before 8.0) has no bfloat16 convolutions: float16 there, whatever emulation claims."""
    asked: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: asked.append(d) or capability)
    assert autocast_dtype(torch.device("cuda:1")) == dtype and asked == [torch.device("cuda:1")]
