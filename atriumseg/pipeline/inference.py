"""Whole-volume segmentation: preprocess, slice-wise U-Net with MONAI's SliceInferer, resample to the input grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer
from monai.transforms import KeepLargestConnectedComponent, SpatialResample
from monai.utils import TraceKeys
from torch import nn

from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import load_model, resolve_model_path
from atriumseg.transforms.context import StackNeighbours
from atriumseg.transforms.orientation import AssumeOrientation
from atriumseg.transforms.preprocessing import IMAGE, inference_transforms

FOCUS_STEP_MM = 20.0  # the locating pass looks at one whole slice every 20 mm
FOCUS_SLACK_PX = 16  # in-plane room around the located atrium for what the sampled slices did not see
# Beyond that, room for the network's field of view, in units of its pooling divisor: 32 px at depth 4,
# about two thirds of the theoretical field (3 * 2**depth - 2 px), where its weight has all but vanished.
# On the 15 real cases the masks equal whole-slice ones but for 2 voxels in 2 cases (48 px: none, 1.5x slower).
FOCUS_CONTEXT_DIVISORS = 4
FOCUS_GROW_SLICES = 4  # slices added at a time while the slab grows outwards
FOCUS_ATTEMPTS = 3  # times the box may widen before the whole volume is segmented instead
PROB_FLOOR = 0.01  # probabilities below this (or below the threshold, if lower) are 0 on the input grid
TTA_GAMMAS = (0.8, 1.25)  # intensity gamma on the [0, 1]-scaled volume
TTA_SHIFTS = ((4, 4), (-4, -4))  # in-plane voxel shifts

Region = tuple[slice, ...]  # a box of a channel-first volume, one slice per axis


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``'auto'`` picks CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return resolved


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` ('auto', 'bfloat16', 'float16', 'float32'); None means float32."""
    if precision == "float32":
        return None
    if precision in ("bfloat16", "float16"):
        return getattr(torch, precision)
    if precision != "auto":
        raise ValueError(f"precision must be auto, bfloat16, float16 or float32, got {precision!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    bf16_cpu = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return torch.bfloat16 if bf16_cpu else None


class _Logits(nn.Module):
    """The network behind autocast and channels_last, returning float32 logits."""

    def __init__(self, network: nn.Module, dtype: torch.dtype | None, device: torch.device) -> None:
        super().__init__()
        self.network, self.dtype, self.device_type = network, dtype, device.type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            return self.network(x).float()


class Segmenter:
    """A trained model plus its preprocessing, segmenting whole 3D volumes slice by slice.

    The volume is reoriented to the card's anatomical frame, resampled in-plane, scaled,
    padded, then cut into slices along the card's plane and batched through the U-Net
    (``batch_size`` slices per forward pass). With ``focus`` (the default) only the
    atrium's in-plane box on the slab of slices that holds it goes through the network.
    Probabilities are resampled back to the input's voxel grid before thresholding, so
    masks always have the input's geometry.
    """

    def __init__(
        self,
        network: nn.Module,
        card: ModelCard,
        device: str | torch.device = "auto",
        batch_size: int = 16,
        precision: str = "auto",
        focus: bool = True,
    ) -> None:
        self.card = card
        self.focus = focus
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval().to(memory_format=torch.channels_last)
        self._logits = _Logits(self.network, autocast_dtype(self.device, precision), self.device)
        self._pre = inference_transforms(card)
        pre = card.preprocessing
        self._stack = StackNeighbours(pre.slice_dim, pre.context)
        self._inferer = SliceInferer(
            spatial_dim=pre.slice_dim,
            roi_size=(-1, -1),
            sw_batch_size=batch_size,
            sw_device=self.device,
            device=torch.device("cpu"),
            progress=False,
        )
        self._largest = KeepLargestConnectedComponent(applied_labels=[1])

    @classmethod
    def from_path(cls, path: str | Path | None = None, **kwargs: object) -> Segmenter:
        """Load a model folder (None: the built-in default model)."""
        network, card = load_model(resolve_model_path(path))
        return cls(network, card, **kwargs)  # type: ignore[arg-type]

    def _slices(
        self, volume: torch.Tensor, indices: torch.Tensor, box: Sequence[slice] = (), tta: bool = False
    ) -> torch.Tensor:
        """Probabilities ``(1, ...)`` of the slices at ``indices``, cropped in-plane to ``box`` (a view).

        Only these slices are stacked with their neighbours, never the whole volume. The network runs
        under ``torch.inference_mode``; the sigmoid, outside it, gives an ordinary tensor. With
        ``tta`` it is the mean over test-time augmentations: intensity gammas and in-plane shifts
        (never flips: the atrium has a side), so focusing works on the averaged probability.
        """
        stacked = self._stack(volume[tuple(box)], indices)
        in_plane = tuple(d + 1 for d in range(3) if d != self.card.preprocessing.slice_dim)
        variants = [(lambda x: x, ())]
        if tta:
            variants += [(lambda x, g=gamma: x.clamp(0.0, 1.0) ** g, ()) for gamma in TTA_GAMMAS]
            variants += [(lambda x, s=shift: torch.roll(x, shifts=s, dims=in_plane), shift) for shift in TTA_SHIFTS]
        probs = []
        for augment, shift in variants:
            with torch.inference_mode():
                logits = self._inferer(augment(stacked)[None], self._logits)[0]
            prob = torch.sigmoid(logits)
            probs.append(torch.roll(prob, shifts=tuple(-s for s in shift), dims=in_plane) if shift else prob)
        return probs[0] if len(probs) == 1 else torch.stack(probs).mean(0)

    def _predict(self, volume: torch.Tensor, slice_mm: float, tta: bool = False) -> tuple[torch.Tensor, Region]:
        """Probabilities of a preprocessed volume whose slices are ``slice_mm`` apart, and the region of
        ``volume`` they cover (0 beyond it); focused unless ``focus`` is off."""
        if self.focus:
            focused = self._focused(volume, max(1, round(FOCUS_STEP_MM / slice_mm)), tta)
            if focused is not None:
                return focused
        everywhere = tuple(slice(0, n) for n in (1, *volume.shape[1:]))
        slices = torch.arange(volume.shape[self.card.preprocessing.slice_dim + 1], device=volume.device)
        return self._slices(volume, slices, tta=tta), everywhere

    def _focused(self, volume: torch.Tensor, stride: int, tta: bool) -> tuple[torch.Tensor, Region] | None:
        """Probabilities computed only in a box around the atrium, and that box; None when it cannot be boxed.

        A locating pass segments every ``stride``-th whole slice and keeps the largest detection.
        Its in-plane box, grown by ``FOCUS_SLACK_PX`` and by a context band for the network's field
        of view, is segmented on the slab of slices that holds it (see ``_slab``). Should the
        atrium found there come within the context band of a cut side, where cropping could
        change the prediction, the box widens and the slab is segmented again. Elsewhere the
        probability is 0, which clean-up (keeping the largest component) would make of it anyway.
        None (segment everything) when either pass finds nothing or the box keeps widening.
        """
        dim = self.card.preprocessing.slice_dim + 1
        threshold = self.card.postprocessing.threshold
        sampled = torch.arange(min(stride, volume.shape[dim]) // 2, volume.shape[dim], stride, device=volume.device)
        found = self._slices(volume, sampled, tta=tta) > threshold
        if not found.any():
            return None
        atrium = self._largest(found.to(torch.uint8))[0].movedim(dim - 1, 0)  # (sampled slice, plane, plane)
        hits = sampled[torch.nonzero(atrium.flatten(1).any(1)).flatten()]
        plane = [d for d in range(1, 4) if d != dim]
        box = self._widen(volume.shape, plane, [slice(None)] * 4, _bounding_box(atrium.any(0)))
        for _ in range(FOCUS_ATTEMPTS):
            prob, region = self._slab(volume, box, int(hits[0]), int(hits[-1]) + 1, tta)
            inside = (prob > threshold).to(torch.uint8)
            if not inside.any():
                return None
            footprint = _bounding_box(self._largest(inside)[0].movedim(dim - 1, 0).any(0))
            reach = [slice(box[d].start + span.start, box[d].start + span.stop) for d, span in zip(plane, footprint)]
            if all(_clear(box[d], span, volume.shape[d], self._context_px) for d, span in zip(plane, reach)):
                return prob, region
            box = self._widen(volume.shape, plane, box, reach)
        return None

    @property
    def _context_px(self) -> int:
        """The band kept between the atrium and a cut side, for the network's field of view."""
        return FOCUS_CONTEXT_DIVISORS * self.card.architecture.divisor

    def _widen(
        self, shape: torch.Size, plane: list[int], box: list[slice], spans: Sequence[slice]
    ) -> list[slice]:
        """``box`` widened in-plane to cover ``spans`` with the slack and the context band to spare, its
        sides on the pooling grid (a multiple of the network's divisor) so crops pool as whole slices do."""
        step, room = self.card.architecture.divisor, FOCUS_SLACK_PX + self._context_px
        wider = list(box)
        for axis, span in zip(plane, spans):
            start = max(0, span.start - room) // step * step
            stop = min(shape[axis], -(-(span.stop + room) // step) * step)
            if box[axis] != slice(None):
                start, stop = min(start, box[axis].start), max(stop, box[axis].stop)
            wider[axis] = slice(start, stop)
        return wider

    def _slab(
        self, volume: torch.Tensor, box: list[slice], lo: int, hi: int, tta: bool
    ) -> tuple[torch.Tensor, Region]:
        """Probabilities in ``box`` on slices ``lo:hi``, grown outwards ``FOCUS_GROW_SLICES`` at a time
        until the outermost slice on each side is empty (nothing beyond an empty slice can join the
        atrium's component), and the region of ``volume`` they cover."""
        dim = self.card.preprocessing.slice_dim + 1
        prob = torch.zeros([1] + [volume.shape[d] if d == dim else box[d].stop - box[d].start for d in range(1, 4)])

        def run(start: int, stop: int) -> None:
            where = [slice(None)] * 4
            where[dim] = slice(start, stop)
            prob[tuple(where)] = self._slices(volume, torch.arange(start, stop, device=volume.device), box, tta)

        def filled(index: int) -> bool:
            return bool((prob.select(dim, index) > self.card.postprocessing.threshold).any())

        run(lo, hi)
        while lo > 0 and filled(lo):
            lo, stop = max(0, lo - FOCUS_GROW_SLICES), lo
            run(lo, stop)
        while hi < volume.shape[dim] and filled(hi - 1):
            start, hi = hi, min(volume.shape[dim], hi + FOCUS_GROW_SLICES)
            run(start, hi)
        where, region = [slice(None)] * 4, list(box)
        where[dim] = region[dim] = slice(lo, hi)
        region[0] = slice(0, 1)
        return prob[tuple(where)], tuple(region)

    def probabilities(
        self, image: torch.Tensor, assume_orientation: str | None = None, tta: bool = False
    ) -> MetaTensor:
        """Left-atrium probability ``(1, X, Y, Z)`` on the voxel grid of ``image`` (a channel-first MetaTensor).

        With ``tta`` the probability is averaged over test-time augmentations (5 passes). Values
        below ``PROB_FLOOR`` (0.01) are 0: only the atrium's neighbourhood is resampled.
        """
        source = image if isinstance(image, MetaTensor) else MetaTensor(image)
        tensor = source.float()
        if source.is_floating_point():
            tensor = torch.nan_to_num(tensor, nan=0.0, posinf=0.0, neginf=0.0)
        if assume_orientation:
            tensor = AssumeOrientation(assume_orientation)(tensor)
        prepared = self._pre({IMAGE: tensor})[IMAGE]
        volume = prepared.as_tensor()
        slice_mm = float(prepared.pixdim[self.card.preprocessing.slice_dim])
        predicted, region = self._predict(volume, slice_mm, tta)
        floor = min(PROB_FLOOR, self.card.postprocessing.threshold)
        restored = to_input_grid(predicted, region, prepared, tensor, floor)
        return MetaTensor(restored.clamp_(0.0, 1.0), meta=source.meta)

    def mask_from_probabilities(self, prob: MetaTensor) -> MetaTensor:
        """Threshold and clean up a probability map; uint8 with the same metadata."""
        post = self.card.postprocessing
        mask = (prob.as_tensor() > post.threshold).to(torch.uint8)
        if post.largest_component and mask.any():
            box = (slice(None), *_bounding_box(mask[0]))  # labelling only the box is exact and much cheaper
            mask[box] = self._largest(mask[box]).to(torch.uint8)
        return MetaTensor(mask, meta=prob.meta)

    def __call__(self, image: torch.Tensor, assume_orientation: str | None = None, tta: bool = False) -> MetaTensor:
        """Binary left-atrium mask ``(1, X, Y, Z)``, uint8, with the input's geometry."""
        return self.mask_from_probabilities(self.probabilities(image, assume_orientation, tta))


def to_input_grid(
    prob: torch.Tensor, region: Region, prepared: MetaTensor, target: MetaTensor, floor: float = PROB_FLOOR
) -> torch.Tensor:
    """Probabilities of ``region`` of the preprocessed volume ``prepared``, on the voxel grid of ``target``.

    The padding the preprocessing added is left out first, so that at the grid's outer faces the
    edge values repeat, exactly as MONAI's inverse of the chain does.
    """
    valid = [slice(0, n) for n in prepared.shape]
    for operation in prepared.applied_operations:
        if operation[TraceKeys.CLASS_NAME] == "DivisiblePad":
            padded = operation[TraceKeys.EXTRA_INFO]["padded"]
            valid = [slice(lo, n - hi) for (lo, hi), n in zip(padded, prepared.shape)]
    kept = []
    for r, v in zip(region, valid):
        start = max(r.start, v.start)
        kept.append(slice(start, max(start, min(r.stop, v.stop))))
    prob = prob[tuple(slice(k.start - r.start, k.stop - r.start) for k, r in zip(kept, region))]
    affine = torch.as_tensor(prepared.affine, dtype=torch.float64) @ _translation([k.start for k in kept[1:]])
    return restore(prob, affine, target, floor)


def restore(prob: torch.Tensor, affine: torch.Tensor, target: MetaTensor, floor: float = PROB_FLOOR) -> torch.Tensor:
    """``prob`` ``(1, ...)``, on the voxel grid whose affine is ``affine``, resampled onto the grid of ``target``.

    Only the box where ``prob`` reaches ``floor`` (plus one voxel) is resampled, by MONAI's
    ``SpatialResample`` (bilinear, as the inverse of the preprocessing's ``Spacing`` would), onto
    the part of ``target``'s grid it covers; the rest is 0. The affines alone relate the two grids,
    so orientation, spacing and padding are undone in one step, at a cost set by the atrium's
    size rather than the volume's.
    """
    restored = torch.zeros((1, *target.shape[1:]), dtype=torch.float32)
    found = prob[0] >= floor
    if not found.any():
        return restored
    box = [slice(max(0, s.start - 1), min(n, s.stop + 1)) for s, n in zip(_bounding_box(found), found.shape)]
    crop_affine = torch.as_tensor(affine, dtype=torch.float64) @ _translation([s.start for s in box])
    target_affine = torch.as_tensor(target.affine, dtype=torch.float64)
    to_target = torch.linalg.inv(target_affine) @ crop_affine
    corners = torch.cartesian_prod(*[torch.tensor([0.0, s.stop - s.start - 1.0], dtype=torch.float64) for s in box])
    landed = corners @ to_target[:3, :3].T + to_target[:3, 3]
    shape = torch.tensor(target.shape[1:])
    lo = torch.floor(landed.min(0).values).long().clamp(0, None).minimum(shape)
    hi = (torch.ceil(landed.max(0).values).long() + 1).maximum(lo).minimum(shape)
    if bool((hi <= lo).any()):
        return restored
    crop = MetaTensor(prob[(slice(None), *box)], affine=crop_affine)
    resampled = SpatialResample(mode="bilinear", padding_mode="border", dtype=torch.float32)(
        crop, dst_affine=target_affine @ _translation(lo.tolist()), spatial_size=(hi - lo).tolist()
    )
    restored[(slice(None), *[slice(int(a), int(b)) for a, b in zip(lo, hi)])] = resampled.as_tensor()
    return restored


def _translation(voxels: Sequence[float]) -> torch.Tensor:
    """The 4x4 affine that shifts voxel indices by ``voxels``."""
    shift = torch.eye(4, dtype=torch.float64)
    shift[:3, 3] = torch.tensor([float(v) for v in voxels], dtype=torch.float64)
    return shift


def _clear(cut: slice, span: slice, size: int, context: int) -> bool:
    """Whether ``span`` stays ``context`` away from each side of ``cut`` that is not the volume's edge."""
    return (cut.start == 0 or span.start - cut.start >= context) and (
        cut.stop == size or cut.stop - span.stop >= context
    )


def _bounding_box(mask: torch.Tensor) -> tuple[slice, ...]:
    """The smallest box holding every nonzero voxel of a non-empty mask."""
    box = []
    for axis in range(mask.ndim):
        hits = torch.nonzero(mask.any(dim=tuple(d for d in range(mask.ndim) if d != axis))).flatten()
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)
