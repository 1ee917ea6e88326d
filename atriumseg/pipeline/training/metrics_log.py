"""The per-epoch record of a run: ``metrics.csv``, mirrored to TensorBoard when it is installed."""

from __future__ import annotations

import csv
from pathlib import Path

from atriumseg.pipeline.training.validation import validation_summary


class MetricsLog:
    """One CSV row per epoch in ``metrics.csv`` (appended on resume), mirrored to TensorBoard when installed.

    ``val_dice_mean`` is the overall figure that picks ``best/`` (the mean of the per-dataset means);
    ``val_dice_<dataset>`` the mean of each dataset's validation cases. Figures are empty in epochs
    without validation.
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
        """One epoch's row: its training loss and last learning rate, and the validation figures if any."""
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
