"""``atriumseg train``: train a model on one or more MSD-layout datasets at once.

Each option's ``dest`` is a field of :class:`~atriumseg.pipeline.training.config.TrainConfig` and defaults
to ``argparse.SUPPRESS``: an option not given is left out, so the config applies its own default, and
``--help`` shows the same defaults (read from the config's fields). A new config field is one new option.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from atriumseg.cli import options
from atriumseg.cli.app import EXIT_OK, UsageError
from atriumseg.models.card import PLANES


def _config_type() -> type:
    from atriumseg.pipeline.training.config import TrainConfig

    return TrainConfig


def _orientation(text: str) -> str | None:
    """Axis codes, 'known' (the project's header fixes) or 'header' (trust the header: None)."""
    if text == "header":
        return None
    return text if text == "known" else options.axcodes(text)


def _spacing(text: str) -> tuple[float, float]:
    value = float(text)
    return value, value


def _model_folder(text: str) -> Path:
    from atriumseg.models.checkpoint import CheckpointError, resolve_model_path

    try:
        return resolve_model_path(None if text == "default" else Path(text))
    except CheckpointError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train", parents=[options.quiet_option()], argument_default=argparse.SUPPRESS,
        formatter_class=options.field_defaults(_config_type),
        help="train a model on one or more datasets in the MSD layout",
        description="Train a slice-wise U-Net on one or more MSD-layout datasets at once; each dataset keeps "
        "its own orientation, validation cases and share of every batch. Defaults train the built-in design.",
    )
    add = p.add_argument
    add("datasets", type=Path, nargs="+", metavar="DATASET",
        help="folders with dataset.json, imagesTr/ and labelsTr/, trained on together")
    add("--weights", type=float, nargs="+", metavar="W",
        help="each dataset's share of every batch, one per dataset (default: equal shares)")
    add("--output", "-o", type=Path, required=True, help="run folder: best/, last/, metrics.csv")
    add("--width", type=options.positive_int, help="U-Net channels at full resolution")
    add("--depth", type=options.positive_int, help="U-Net resolution levels incl. bottleneck")
    add("--context", type=int, help="neighbouring slices each side as channels")
    add("--plane", choices=PLANES, help="slice plane")
    add("--spacing", type=_spacing, help="in-plane voxel size in mm")
    add("--slice-spacing", type=float, help="distance between slices in mm (0 keeps each scan's own)")
    add("--centre-clip", type=float, metavar="FRACTION",
        help="cap intensities at the upper percentile of this middle fraction of each axis before the window "
        "(0: off), so a bright rim at the field's edge does not set it")
    add("--patch", type=options.positive_int, help="training slice size in voxels")
    add("--epochs", type=options.positive_int, help="epochs")
    add("--steps-per-epoch", type=options.positive_int, help="optimizer steps per epoch")
    add("--lr", dest="learning_rate", type=float, help="peak AdamW learning rate")
    add("--gamma", type=float, nargs=2, metavar=("LOW", "HIGH"),
        help="range of the augmentation's random gamma curve (below 1 brightens mid-tones, such as a dark blood pool)")
    add("--darken", type=float, metavar="SHARE",
        help="share of the training slices that hold atrium whose atrium is darkened against its surround by a "
        "random factor, as in LGE scans whose blood pool stays dark (0: none)")
    add("--zoom", type=float, metavar="RANGE",
        help="range of the augmentation's random zoom: each in-plane axis of a training slice is scaled by a factor "
        "from 1 - RANGE to 1 + RANGE")
    add("--val-cases", nargs="*", metavar="NAME", help="validation case names (any dataset)")
    add("--exclude", nargs="*", metavar="NAME", help="cases never used (held-out test)")
    add("--folds", type=int, help="K for K-fold cross-validation in each dataset (replaces --val-cases)")
    add("--fold", type=int, help="which fold validates (0..K-1)")
    add("--val-every", type=options.positive_int, help="validate every N epochs")
    add("--seed", type=int, help="random seed")
    add("--max-minutes", type=float, help="stop cleanly after the epoch that passes this many minutes from the "
        "start, loading the data and validation included (0: none)")
    add("--assume-orientation", dest="orientations", nargs="+", type=_orientation, metavar="CODES",
        help="true axis codes of the stored voxels (e.g. ASL), one for all datasets or one per dataset; "
        "'known' fixes datasets the project knows to be mislabelled (MSD Task02), 'header' trusts the headers")
    add("--device", help=options.DEVICE_HELP)
    add("--workers", type=int, help="data-loading worker processes")
    add("--precision", choices=("auto", "bfloat16", "float16", "float32"),
        help="autocast type; auto: bfloat16 on CPUs with AVX-512-BF16 and GPUs of compute capability 8.0 or more, "
        "float16 on older GPUs, else float32")
    add("--resume", action="store_true",
        help="continue from OUTPUT/last with the options the run was started with (more --epochs or --max-minutes, "
        "another --device, --workers, --precision or --val-every allowed; --init is ignored)")
    add("--init", type=_model_folder, metavar="MODEL",
        help="start from this model folder's weights ('default': the built-in model; an ensemble: its member "
        "in this run's --plane); a --width and --context no narrower and a --depth no shallower (larger ones start "
        "from the model's function: added slices at zero weight, added channels copies of its own, an added level "
        "passing the old bottleneck through); the card records its lineage")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.inference.device import resolve_device
    from atriumseg.pipeline.training.checkpoints import check_held_out, check_init, check_output, resumes
    from atriumseg.pipeline.training.config import TrainConfig
    from atriumseg.pipeline.training.distributed import Ranks
    from atriumseg.pipeline.training.splits import split_record, training_sets
    from atriumseg.pipeline.training.trainer import train

    try:
        config = TrainConfig(**options.given_fields(args, TrainConfig), command=shlex.join(["atriumseg", *args.argv]))
        sets = training_sets(config)  # every dataset readable and every named case found, before any work
        if config.init is not None and not resumes(config):
            init_card = check_init(config.init, config.design)
            if config.folds:  # a fold run from a model that saw its validation cases stops here (others: a warning)
                validation = {s.dataset.name: [case.name for case in s.validation] for s in sets}
                check_held_out(config.init, init_card, validation, config.fold)
        resolve_device(config.device)  # a device that is not there is a usage error, as for segment
        check_output(config, split_record(sets, config.exclude))  # not over another run; a resume as it was run
    except (OSError, ValueError) as err:
        raise UsageError(str(err)) from err
    result = train(config, show_progress=not args.quiet)
    if Ranks.from_env().is_main:
        chosen = f"validation Dice {result.best_dice:.4f}" if result.best_dice >= 0 else "no validation cases: as last"
        print(f"best model: {result.best} ({chosen}); last: {result.last}")
    return EXIT_OK
