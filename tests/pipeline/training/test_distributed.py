"""Data-parallel training with two Gloo processes on the CPU: one writer, loadable checkpoints, equal weights."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers import tiny_config, train
from safetensors.torch import load_file, save_file

from atriumseg.models.checkpoint import load_card, load_model
from atriumseg.pipeline.training.distributed import Ranks, rank_seed

pytestmark = pytest.mark.slow  # spawns training ranks
DEADLINE_S = 300.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_rank(rank: int, dataset: Path, run: Path, port: int) -> None:
    """One of two workers, given the environment torchrun gives its workers; it keeps the weights it ends with."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    config = tiny_config(dataset, run, epochs=2, steps_per_epoch=3, val_every=1, device="cpu")
    network = train(config, show_progress=False).network
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, run.parent / f"rank{rank}.safetensors")


def _epochs_logged(run: Path) -> list[str]:
    return [row["epoch"] for row in csv.DictReader((run / "metrics.csv").open())]


def test_two_processes_end_with_the_checkpointed_weights(tmp_path: Path, synthetic_dataset: Path) -> None:
    run = tmp_path / "run"
    workers = mp.spawn(_train_rank, args=(synthetic_dataset, run, _free_port()), nprocs=2, join=False)
    deadline = time.monotonic() + DEADLINE_S
    while not workers.join(timeout=5):
        if time.monotonic() > deadline:
            for process in workers.processes:
                process.kill()
            pytest.fail(f"distributed training did not finish in {DEADLINE_S:.0f} s: a rank is waiting for another")
    last, card = load_model(run / "last")
    load_model(run / "best")
    assert card.provenance["processes"] == 2 and card.provenance["steps"] == 6
    assert _epochs_logged(run) == ["1", "2"], "rank 0 alone writes one row per epoch"
    for rank in (0, 1):
        held = load_file(tmp_path / f"rank{rank}.safetensors")
        differing = [name for name, value in last.state_dict().items() if not torch.equal(held[name], value)]
        assert not differing, f"rank {rank} ends with weights other than last/ in {differing}"


def test_torchrun_command_stops_every_rank_on_the_time_budget(tmp_path: Path, synthetic_dataset: Path) -> None:
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "atriumseg", "train", str(synthetic_dataset), "--output", str(run), "--width", "16", "--depth", "3",
        "--context", "0", "--spacing", "1.5", "--patch", "32", "--epochs", "5", "--steps-per-epoch", "2",
        "--val-cases", "case_103", "--max-minutes", "1e-6", "--device", "cpu", "--quiet",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=DEADLINE_S, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("best model:") == 1, done.stdout
    assert _epochs_logged(run) == ["1"], "both ranks should stop after the first epoch"
    load_model(run / "best")
    assert load_card(run / "last").provenance["processes"] == 2


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, Ranks()),
        ({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}, Ranks()),
        ({"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1"}, Ranks(rank=5, local_rank=1, world_size=8)),
    ],
)
def test_ranks_come_from_the_torchrun_environment(env: dict[str, str], expected: Ranks) -> None:
    assert Ranks.from_env(env) == expected


def test_a_partial_torchrun_environment_is_refused() -> None:
    with pytest.raises(ValueError, match="torchrun"):
        Ranks.from_env({"WORLD_SIZE": "2"})


def test_rank_zero_keeps_the_single_process_seed_and_ranks_differ() -> None:
    seeds = [rank_seed(7, Ranks(rank=r, local_rank=r, world_size=4)) for r in range(4)]
    assert seeds[0] == rank_seed(7, Ranks()) == 7
    assert len(set(seeds)) == 4
