"""The baseline of ``benchmarks.inference``: the same network and steps as ``Segmenter``, but the network called in
float32 on every slice, one at a time, in a plain Python loop (no batching, no channels_last, no focusing)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from atriumseg.models.card import ModelCard


def slice_loop(network: torch.nn.Module, stacked: torch.Tensor, slice_dim: int, device: torch.device) -> torch.Tensor:
    """Float32 logits ``(1, X, Y, Z)``: one slice per forward pass, plain NCHW tensors, no batching."""
    dim = slice_dim + 1
    logits = torch.empty((1, *stacked.shape[1:]))
    for index in range(stacked.shape[dim]):
        x = stacked.select(dim, index)[None].contiguous().to(device)
        logits.select(dim, index).copy_(network(x)[0].cpu())
    return logits


def float32_baseline(
    network: torch.nn.Module, card: ModelCard, image: Path, orientation: str | None, output: Path, device: torch.device
) -> np.ndarray:
    """The baseline path, step for step as ``Segmenter`` does it, with the network called by :func:`slice_loop`."""
    from monai.transforms import KeepLargestConnectedComponent

    from atriumseg.pipeline.inference.restore import PROB_FLOOR, to_input_grid
    from atriumseg.pipeline.io.volumes import read_image
    from atriumseg.pipeline.io.writing import write_image
    from atriumseg.transforms.context import StackNeighbours
    from atriumseg.transforms.orientation import AssumeOrientation
    from atriumseg.transforms.preprocessing import IMAGE, inference_transforms

    volume = read_image(image)
    tensor = torch.nan_to_num(volume.tensor.float(), nan=0.0, posinf=0.0, neginf=0.0)
    if orientation:
        tensor = AssumeOrientation(orientation)(tensor)
    chain = inference_transforms(card)
    prepared = chain({IMAGE: tensor})[IMAGE]
    stacked = StackNeighbours(card.preprocessing.slice_dim, card.preprocessing.context)(prepared.as_tensor())
    with torch.inference_mode():
        logits = slice_loop(network, stacked, card.preprocessing.slice_dim, device)
    floor = min(PROB_FLOOR, card.postprocessing.threshold)
    everywhere = tuple(slice(0, n) for n in logits.shape)
    restored = to_input_grid(torch.sigmoid(logits), everywhere, prepared, tensor, floor).clamp_(0.0, 1.0)
    mask = (restored > card.postprocessing.threshold).to(torch.uint8)
    if card.postprocessing.largest_component and mask.any():
        mask = KeepLargestConnectedComponent(applied_labels=[1])(mask).to(torch.uint8)
    array = mask[0].numpy()
    write_image(volume.geometry.image(array), output, overwrite=True)
    return array
