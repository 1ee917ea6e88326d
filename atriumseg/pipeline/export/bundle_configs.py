"""The two JSON files of a MONAI bundle, built from a model card: ``inference.json`` and ``metadata.json``.

Torch-free: plain dictionaries, every value taken from the card (or from the defaults the
``Segmenter`` uses), so the bundle preprocesses exactly as ``atriumseg segment`` does. The config
follows the MONAI model zoo's conventions: ``bundle_root``, ``device``, ``dataset_dir`` and
``output_dir`` are top-level ids any ``--key value`` on MONAI's command line overrides, the network
is ``network_def``, the inferer ``inferer``, and ``evaluator.run()`` is the ``run`` expression.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from atriumseg.defaults import BATCH_SIZE
from atriumseg.models.card import ModelCard, training_data

SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
# What running the bundle needs beyond MONAI, torch and numpy: NIfTI reading, MONAI's engines, its CLI.
# MONAI 1.6 reads the spec's "optional_packages_version" as a deprecated name of "required_packages_version",
# so the metadata gives both the same packages.
RUNTIME_PACKAGES = ("nibabel", "pytorch-ignite", "fire")
SCRIPTS = "scripts"  # the bundle's package of custom code (MONAI's runner puts bundle_root on sys.path)
_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
_DIRECTION = {"R": "right", "L": "left", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}
REFERENCES = (
    "Ronneberger O., Fischer P., Brox T., U-Net: Convolutional Networks for Biomedical Image Segmentation, "
    "MICCAI 2015, LNCS 9351, 234-241.",
    "Antonelli M. et al., The Medical Segmentation Decathlon, Nature Communications 13, 4128 (2022).",
    "Simpson A. L. et al., A large annotated medical image dataset for the development and evaluation of "
    "segmentation algorithms, arXiv:1902.09063 (2019).",
    "Xiong Z. et al., A global benchmark of algorithms for segmenting the left atrium from late "
    "gadolinium-enhanced cardiac magnetic resonance imaging, Medical Image Analysis 67 (2021) 101832.",
)


def _preprocessing(card: ModelCard, ensemble: bool = False) -> list[dict[str, Any]]:
    """The card's preprocessing as MONAI dictionary transforms (the chain of ``inference_transforms``).

    For an ensemble the chain stops at the shared frame: each member pads its own in-plane axes and stacks its
    own neighbours inside the network (``PlaneEnsemble``), as atriumseg does per member.
    """
    pre = card.preprocessing
    steps = [
        {"_target_": "LoadImaged", "keys": "image", "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32", "track_meta": True},
        {"_target_": "Lambdad", "keys": "image",  # as atriumseg: a NaN or infinite voxel reads as 0, not as a NaN
         "func": "$lambda x: torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)"},  # poisoning the percentiles
        {"_target_": "Orientationd", "keys": "image", "axcodes": pre.orientation,
         "labels": [["L", "R"], ["P", "A"], ["I", "S"]]},
        {"_target_": "Spacingd", "keys": "image", "pixdim": list(pre.pixdim), "mode": "bilinear",
         "padding_mode": "border", "dtype": "$numpy.float32"},
        *([{"_target_": f"{SCRIPTS}.intensity.ClipToCentred", "keys": "image", "lower": pre.percentiles[0],
            "upper": pre.percentiles[1], "fraction": pre.centre_clip}] if pre.centre_clip else []),
        {"_target_": "ScaleIntensityRangePercentilesd", "keys": "image", "lower": pre.percentiles[0],
         "upper": pre.percentiles[1], "b_min": 0.0, "b_max": 1.0, "clip": True},
    ]
    if ensemble:
        return steps
    smallest = [-1 if axis == pre.slice_dim else pre.min_slice_size for axis in range(3)]
    multiple = [1 if axis == pre.slice_dim else card.architecture.divisor for axis in range(3)]
    return [
        *steps,
        {"_target_": "SpatialPadd", "keys": "image", "spatial_size": smallest, "mode": "constant"},
        {"_target_": "DivisiblePadd", "keys": "image", "k": multiple, "mode": "constant"},
        {"_target_": f"{SCRIPTS}.context.StackNeighboursd", "keys": "image", "slice_dim": pre.slice_dim,
         "context": pre.context},
    ]


def _postprocessing(card: ModelCard) -> list[dict[str, Any]]:
    """Sigmoid, back to the input grid (bilinear, as ``atriumseg`` restores), threshold, clean-up, save."""
    post = card.postprocessing
    steps: list[dict[str, Any]] = [
        {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
         "nearest_interp": False, "to_tensor": True},
        {"_target_": "AsDiscreted", "keys": "pred", "threshold": post.threshold},
    ]
    if post.largest_component:
        steps.append({"_target_": "KeepLargestConnectedComponentd", "keys": "pred", "applied_labels": [1]})
    steps.append(
        {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "@output_postfix",
         "output_dtype": "$numpy.uint8", "resample": False, "separate_folder": False, "print_log": False}
    )
    return steps


def plane_ensemble_arguments(cards: Sequence[ModelCard]) -> dict[str, list[int]]:
    """``PlaneEnsemble``'s per-member arguments (slice axis, context, minimum in-plane size, divisor) from the
    members' cards, in order."""
    return {
        "slice_dims": [c.preprocessing.slice_dim for c in cards],
        "contexts": [c.preprocessing.context for c in cards],
        "min_sizes": [c.preprocessing.min_slice_size for c in cards],
        "divisors": [c.architecture.divisor for c in cards],
    }


def _network(card: ModelCard) -> dict[str, Any]:
    """One U-Net of ``card``'s architecture, as the config instantiates it."""
    arch = card.architecture
    return {"_target_": f"{SCRIPTS}.unet.UNet", "in_channels": arch.in_channels, "width": arch.width,
            "depth": arch.depth}


def inference_config(card: ModelCard, members: Sequence[ModelCard] = ()) -> dict[str, Any]:
    """``configs/inference.json``: every NIfTI file of ``dataset_dir`` to a mask in ``output_dir``.

    One network runs under MONAI's ``SliceInferer``; an ensemble (``card`` its first member with the ensemble's
    post-processing, ``members`` the others) is one ``PlaneEnsemble`` under a ``SimpleInferer``.
    """
    if members:
        cards = (card, *members)
        network_def = {"_target_": f"{SCRIPTS}.planes.PlaneEnsemble", "networks": [_network(c) for c in cards],
                       **plane_ensemble_arguments(cards), "batch_size": BATCH_SIZE}
        inferer: dict[str, Any] = {"_target_": "SimpleInferer"}
    else:
        network_def = _network(card)
        inferer = {"_target_": "SliceInferer", "spatial_dim": card.preprocessing.slice_dim, "roi_size": [-1, -1],
                   "sw_batch_size": BATCH_SIZE, "progress": False}
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "dataset_dir": "/workspace/data",
        "output_dir": "$@bundle_root + '/eval'",
        "output_postfix": "seg",
        "ckpt_path": "$@bundle_root + '/models/model.pt'",
        "datalist": "$sorted(glob.glob(os.path.join(@dataset_dir, '*.nii*')))",
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": _preprocessing(card, ensemble=bool(members))},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': path} for path in @datalist]",
                    "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": inferer,
        "postprocessing": {"_target_": "Compose", "transforms": _postprocessing(card)},
        "handlers": [
            {"_target_": "CheckpointLoader", "load_path": "@ckpt_path", "load_dict": {"model": "@network"},
             "map_location": "@device"},
            {"_target_": "StatsHandler", "iteration_log": False},
        ],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": False},
        "run": ["$@evaluator.run()"],
    }


def _channels(card: ModelCard) -> dict[str, str]:
    """What each input channel holds: the slice and its neighbours along the card's slice axis."""
    pre = card.preprocessing
    toward = pre.orientation[pre.slice_dim]
    gap = f"{pre.slice_spacing:g} mm" if pre.slice_spacing else "one slice of the scan"
    channels = {}
    for channel in range(2 * pre.context + 1):
        offset = channel - pre.context
        side = _DIRECTION[toward if offset > 0 else _OPPOSITE[toward]]
        channels[str(channel)] = (
            f"the {pre.plane} slice" if offset == 0 else f"the slice {abs(offset)} x {gap} {side} of it"
        )
    return channels


def _network_data_format(card: ModelCard, members: Sequence[ModelCard] = ()) -> dict[str, Any]:
    """Inputs and outputs of the network (one 2D slice stack, or an ensemble's whole 3D volume) and of the whole
    inference (a 3D mask)."""
    pre = card.preprocessing
    window = f"the volume's {pre.percentiles[0]:g}-{pre.percentiles[1]:g} percentile window mapped to [0, 1]"
    if pre.centre_clip:
        window += f" (capped first at the {pre.percentiles[1]:g} percentile of its central {pre.centre_clip:g})"
    image: dict[str, Any] = {"type": "image", "format": "magnitude", "modality": "MR", "dtype": "float32",
                             "value_range": [0, 1], "is_patch_data": False}
    if members:
        shape = ["*", "*", "*"]
        planes = " + ".join(c.preprocessing.plane for c in (card, *members))
        image |= {"num_channels": 1, "spatial_shape": shape, "channel_def": {"0": "the volume"},
                  "description": f"the whole volume in the {pre.orientation} frame at "
                  f"{' x '.join(f'{v:g}' for v in pre.pixdim)} mm, {window}; each member ({planes}) pads and "
                  "slices it in its own plane"}
    else:
        shape = [f"{card.architecture.divisor}*n", f"{card.architecture.divisor}*n"]
        image |= {"num_channels": card.architecture.in_channels, "spatial_shape": shape,
                  "channel_def": _channels(card),
                  "description": f"{pre.plane} slices in the {pre.orientation} frame at "
                  f"{pre.spacing[0]:g} x {pre.spacing[1]:g} mm, {window}"}
    logits = {
        "type": "image", "format": "logits", "modality": "n/a", "num_channels": 1, "spatial_shape": shape,
        "dtype": "float32", "value_range": [], "is_patch_data": False,
        "channel_def": {"0": "left_atrium"},
        "description": "raw logits of the left atrium; their sigmoid is the left-atrium probability"
        + (" (the members' mean)" if members else ""),
    }
    mask = {
        "type": "image", "format": "segmentation", "modality": "n/a", "num_channels": 1,
        "spatial_shape": ["*", "*", "*"], "dtype": "uint8", "value_range": [0, 1], "is_patch_data": False,
        "channel_def": {"0": "background", "1": "left_atrium"},
        "description": "on the input's voxel grid, with its affine",
    }
    return {"inputs": {"image": image}, "outputs": {"pred": logits}, "post_processed_outputs": {"pred": mask}}


def _description(card: ModelCard, members: Sequence[ModelCard]) -> str:
    """What the bundle's network is and how it runs, in a sentence or two."""
    if not members:
        arch, pre = card.architecture, card.preprocessing
        return (
            f"A 2D U-Net (width {arch.width}, depth {arch.depth}) run slice by slice ({pre.plane} slices, "
            f"{pre.context} neighbour(s) each side as channels) through MONAI's SliceInferer; the mask goes back to "
            "the input's voxel grid. Exported from atriumseg."
        )
    nets = ", ".join(
        f"{c.preprocessing.plane} (width {c.architecture.width}, depth {c.architecture.depth}, "
        f"{c.preprocessing.context} neighbour(s) each side)" for c in (card, *members)
    )
    return (
        f"An ensemble of {len(members) + 1} 2D U-Nets, each run over every slice of its own plane of the volume: "
        f"{nets}; their probabilities are averaged on the resampled volume (scripts.planes.PlaneEnsemble under "
        "MONAI's SimpleInferer) and the mask goes back to the input's voxel grid. Exported from atriumseg."
    )


def metadata(
    card: ModelCard, versions: dict[str, str], bundle_version: str, members: Sequence[ModelCard] = (),
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``configs/metadata.json``: MONAI's mandatory keys, then the card (provenance, validation and
    cross-validated Dice as ``eval_metrics``, datasets).

    ``versions`` maps package names (monai, torch, numpy, atriumseg and ``RUNTIME_PACKAGES``) to the versions
    installed where the bundle was written. An ensemble gives its other ``members`` and the ``record`` of its
    cards to carry as ``atriumseg_card`` (default: ``card``'s own).
    """
    provenance = card.provenance
    needed = {name: versions[name] for name in RUNTIME_PACKAGES if name in versions}
    validation = provenance.get("validation_dice", {})
    cross_validated = (provenance.get("cross_validation") or {}).get("per_dataset", {})
    datasets = [
        {key: entry.get(key) for key in ("dataset", "reference", "licence")} for entry in training_data(provenance)
    ]
    return {
        "schema": SCHEMA_URL,
        "version": bundle_version,
        "changelog": {bundle_version: f"exported by atriumseg {versions['atriumseg']}"},
        "monai_version": versions["monai"],
        "pytorch_version": versions["torch"].split("+")[0],
        "numpy_version": versions["numpy"],
        "required_packages_version": needed,
        "optional_packages_version": needed,
        "name": "Left atrium MRI segmentation (atriumseg)",
        "task": "Left-atrium segmentation of 3D cardiac MRI (bSSFP and LGE-MRI)",
        "description": _description(card, members),
        "authors": "atriumseg contributors",
        "copyright": "Copyright (c) atriumseg contributors",
        "data_source": "; ".join(f"{d['dataset']}: {d['reference']} ({d['licence']})" for d in datasets),
        "data_type": "nibabel",
        "image_classes": "one-channel 3D MRI volume (bSSFP or LGE), any orientation and voxel size",
        "pred_classes": "one-channel uint8 mask on the input's grid: 1 left atrium, 0 background",
        "eval_metrics": {**{f"val_mean_dice_{name}": value for name, value in validation.items()},
                         **{f"cv_mean_dice_{name}": s["dice_mean"] for name, s in cross_validated.items()}},
        "intended_use": "Research only. Not a medical device; not for diagnosis or treatment.",
        "references": list(REFERENCES),
        "network_data_format": _network_data_format(card, members),
        "licence": provenance.get("licence", ""),
        "datasets": datasets,
        "atriumseg_card": card.to_dict() if record is None else record,
    }
