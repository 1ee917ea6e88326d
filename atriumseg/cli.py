"""Command line: a thin layer over the Python API. Heavy imports happen inside each command.

Every command ends the same way: 0 on success, 1 when a case or the work failed (one clear
line each), 2 on bad usage (an option, a model, a folder) found before any work, 130 when
stopped by Ctrl-C/SIGTERM. A closed pipe (``atriumseg info | head``) ends quietly.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from atriumseg import defaults
from atriumseg._version import __version__
from atriumseg.transforms.axcodes import validate_axcodes

if TYPE_CHECKING:
    from atriumseg.pipeline.inference.segmenter import Segmenter
    from atriumseg.pipeline.training.trainer import TrainConfig

log = logging.getLogger("atriumseg")

EXIT_OK, EXIT_CASE_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A problem with what the user asked for (bad option, unreadable model); ``main`` exits with 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit 2), pointing at ``--help``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _segmenter(args: argparse.Namespace, focus: bool = True) -> Segmenter:
    """The model named by ``--model`` (default: built-in), or a :class:`UsageError` saying why not."""
    from atriumseg.models.checkpoint import CheckpointError
    from atriumseg.pipeline.inference.segmenter import Segmenter

    try:
        return Segmenter.from_path(args.model, device=args.device, batch_size=args.batch_size, focus=focus)
    except (CheckpointError, ValueError) as err:
        raise UsageError(str(err)) from err


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _axcodes(text: str) -> str:
    try:
        return validate_axcodes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _train_orientation(text: str) -> str:
    return text if text in ("known", "header") else _axcodes(text)


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes I/N such as 0/4, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return index, count


def _segment(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.analysis.body_size import read_patients
    from atriumseg.pipeline.batch.runner import BatchOptions, run_batch
    from atriumseg.pipeline.batch.inputs import read_list
    from atriumseg.pipeline.batch.report import FAILED, summary_table
    from atriumseg.pipeline.io.writing import OutputFolderError, check_output_folder

    try:
        inputs = [*args.inputs, *(entry for listing in args.list for entry in read_list(listing))]
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read --list: {err}") from err
    if not inputs:
        raise UsageError("nothing to segment: give INPUT paths or --list FILE")
    try:
        patients = read_patients(args.patients) if args.patients else {}
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read --patients: {err}") from err
    segmenter = _segmenter(args, focus=not args.no_focus)
    try:
        check_output_folder(args.output)
    except OutputFolderError as err:
        raise UsageError(str(err)) from err
    options = BatchOptions(
        output=args.output,
        fmt=args.format,
        overwrite=args.overwrite,
        assume_orientation=args.assume_orientation,
        qc=args.qc,
        workers=args.workers,
        shard=args.shard,
        show_progress=not args.quiet,
        tta=args.tta,
        probabilities=args.probabilities,
        mesh=args.mesh,
        mesh_frame=args.mesh_frame,
        patients=patients,
        anonymous=args.anonymous,
    )
    outcome = run_batch(segmenter, inputs, options)
    print(summary_table(outcome.results))
    if outcome.output_error:
        log.error("run ended early: %s (the records written so far are kept; rerun to finish)", outcome.output_error)
        return EXIT_CASE_FAILED
    print(f"report: {args.output / 'report.csv'}" + (f", QC: {args.output / 'qc' / 'index.html'}" if args.qc else ""))
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_CASE_FAILED if any(r.status == FAILED for r in outcome.results) else EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.batch.runner import rebuild_report
    from atriumseg.pipeline.batch.report import FAILED, summary_table

    if not args.output.is_dir():
        raise UsageError(f"{args.output}: no such folder")
    results = rebuild_report(args.output)
    print(summary_table(results))
    print(f"report: {args.output / 'report.csv'}")
    return EXIT_CASE_FAILED if any(r.status == FAILED for r in results) else EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.analysis.metrics import summarise
    from atriumseg.pipeline.training.evaluation import evaluate, pair_cases, write_metrics_csv

    try:
        pairs = pair_cases(args.images, args.labels, args.cases)
    except (ValueError, OSError) as err:
        raise UsageError(str(err)) from err
    segmenter = _segmenter(args)
    rows = evaluate(segmenter, pairs, args.assume_orientation, show_progress=not args.quiet)
    write_metrics_csv(rows, args.output)
    s = summarise(rows)
    print(f"{'case':<16}{'Dice':>8}{'HD95 mm':>10}{'ASD mm':>9}{'pred mL':>10}{'true mL':>10}")
    for name, m in rows:
        print(f"{name:<16}{m.dice:>8.4f}{m.hd95_mm:>10.2f}{m.asd_mm:>9.2f}{m.predicted_ml:>10.1f}{m.true_ml:>10.1f}")
    print(
        f"{s.cases} cases: Dice mean {s.dice_mean:.4f}, median {s.dice_median:.4f}, worst {s.dice_worst:.4f} "
        f"({s.worst_case}); HD95 mean {s.hd95_mean_mm:.2f} mm; ASD mean {s.asd_mean_mm:.2f} mm; CSV: {args.output}"
    )
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from atriumseg.demo import run_demo

    result = run_demo(args.output, _segmenter(args))
    print(f"mask:    {result.mask}")
    print(f"overlay: {result.overlay}")
    print(
        f"Dice against the bundled reference label: {result.dice:.4f} (HD95 {result.hd95_mm:.2f} mm); "
        f"left-atrium volume {result.volume_ml:.1f} mL (reference {result.true_volume_ml:.1f} mL)"
    )
    return EXIT_OK


def _measure(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.io.volumes import ImageReadError, case_name
    from atriumseg.pipeline.analysis.measure import measure_file, write_measurements_csv

    rows, failed = [], 0
    for path in args.masks:
        try:
            rows.append((case_name(path), measure_file(path)))
        except (ImageReadError, ValueError) as err:
            log.error("%s", err)
            failed += 1
    if rows:
        try:
            write_measurements_csv(rows, args.output, overwrite=args.overwrite)
        except FileExistsError as err:
            raise UsageError(str(err)) from err
        for name, m in rows:
            print(f"{name}: {m.volume_ml:.1f} mL, {m.surface_area_mm2:.0f} mm2, sphericity {m.sphericity:.3f}, "
                  f"axes {' x '.join(f'{a:.1f}' for a in m.axis_lengths_mm)} mm")
        print(f"CSV: {args.output}")
    return EXIT_CASE_FAILED if failed else EXIT_OK


def _info(args: argparse.Namespace) -> int:
    import json

    from atriumseg.models.checkpoint import CheckpointError, load_card, resolve_model_path
    from atriumseg.models.describe import describe

    try:
        card = load_card(resolve_model_path(args.model))
    except CheckpointError as err:
        raise UsageError(str(err)) from err
    print(json.dumps(card.to_dict(), indent=2) if args.json else describe(card))
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.training.distributed import Ranks
    from atriumseg.pipeline.training.trainer import TrainConfig, train, training_sets

    try:
        config = _train_config(args, TrainConfig)
        training_sets(config)  # every dataset readable and every named case found, before any work
    except (OSError, ValueError) as err:
        raise UsageError(str(err)) from err
    result = train(config, show_progress=not args.quiet)
    if Ranks.from_env().is_main:
        print(f"best model: {result.best} (validation Dice {result.best_dice:.4f}); last: {result.last}")
    return EXIT_OK


def _train_config(args: argparse.Namespace, config_type: type[TrainConfig]) -> TrainConfig:
    from atriumseg.models.checkpoint import resolve_model_path

    orientations = tuple(None if o == "header" else o for o in args.assume_orientation)
    return config_type(
        datasets=tuple(args.datasets),
        output=args.output,
        weights=tuple(args.weights),
        orientations=orientations,
        width=args.width,
        depth=args.depth,
        context=args.context,
        plane=args.plane,
        spacing=(args.spacing, args.spacing),
        slice_spacing=args.slice_spacing,
        patch=args.patch,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        learning_rate=args.lr,
        val_cases=tuple(args.val_cases),
        exclude=tuple(args.exclude),
        folds=args.folds,
        fold=args.fold,
        val_every=args.val_every,
        seed=args.seed,
        max_minutes=args.max_minutes,
        device=args.device,
        workers=args.workers,
        resume=args.resume,
        init=None if args.init is None else resolve_model_path(None if args.init == "default" else Path(args.init)),
        command=shlex.join(["atriumseg", *args.argv]),
    )


def _model_options() -> argparse.ArgumentParser:
    """``--model``, ``--device``, ``--batch-size``: every command that runs a model."""
    group = argparse.ArgumentParser(add_help=False)
    group.add_argument("--model", "-m", type=Path, default=None, help="model folder (default: the built-in model)")
    group.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N (default auto)")
    group.add_argument("--batch-size", type=_positive_int, default=defaults.BATCH_SIZE,
                       help=f"slices per forward pass (default {defaults.BATCH_SIZE})")
    return group


def _orientation_option() -> argparse.ArgumentParser:
    group = argparse.ArgumentParser(add_help=False)
    group.add_argument(
        "--assume-orientation", type=_axcodes, default=None, metavar="CODES",
        help="true axis codes of the stored voxels when the header is wrong (e.g. ASL for MSD Task02 as released)",
    )
    return group


def _quiet_option() -> argparse.ArgumentParser:
    group = argparse.ArgumentParser(add_help=False)
    group.add_argument("--quiet", action="store_true", help="no progress bars")
    return group


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="atriumseg", description="Left-atrium segmentation of 3D cardiac MRI.")
    parser.add_argument("--version", action="version", version=f"atriumseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages (and tracebacks)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    model, orientation, quiet = _model_options(), _orientation_option(), _quiet_option()
    _add_segment(sub, [model, orientation, quiet])
    _add_evaluate(sub, [model, orientation, quiet])

    p = sub.add_parser(
        "demo", parents=[model],
        help="segment the bundled sample MRI and report Dice and volume",
        description="Segment the bundled sample (an MSD Task02 case held out from training, CC-BY-SA 4.0) "
        "with the built-in model; write the mask and a PNG overlay and print Dice and volume.",
    )
    p.add_argument("--output", "-o", type=Path, default=Path("demo-output"), help="folder (default demo-output)")
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "measure",
        help="volume, surface area, sphericity, principal axes and centroid of masks, in world units",
    )
    p.add_argument("masks", nargs="+", type=Path, metavar="MASK", help="mask files (NIfTI, NRRD, MHA/MHD)")
    p.add_argument("--output", "-o", type=Path, default=Path("measurements.csv"), help="CSV (measurements.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    p.set_defaults(func=_measure)

    p = sub.add_parser("report", help="rebuild report.csv/json (and the QC sheet) from an output folder")
    p.add_argument("output", type=Path, help="output folder of one or more segment runs or shards")
    p.set_defaults(func=_report)

    p = sub.add_parser("info", help="describe a model: design, training data, validation figures")
    p.add_argument("model", type=Path, nargs="?", default=None, help="model folder (default: the built-in model)")
    p.add_argument("--json", action="store_true", help="print the whole card as JSON")
    p.set_defaults(func=_info)

    _add_train(sub, [quiet])
    return parser


def _add_segment(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "segment", parents=parents,
        help="segment 3D images (files, folders, DICOM series folders)",
        description="Segment the left atrium of each input and write a uint8 mask with the input's exact "
        "geometry, plus report.csv/report.json in the output folder. Exit code: 0 when no case failed "
        "(skipped and flagged cases included), 1 when at least one case failed, 2 on bad usage or model, "
        "130 when stopped by Ctrl-C/SIGTERM (rerun to finish).",
    )
    p.add_argument(
        "inputs", nargs="*", metavar="INPUT",
        help="image files (NIfTI, NRRD, MHA/MHD), folders (searched recursively; each DICOM series is a case) "
        "or quoted globs",
    )
    p.add_argument(
        "--list", action="append", default=[], type=Path, metavar="FILE",
        help="a text file of input paths (one per line) or a CSV with a 'path' column; repeatable",
    )
    p.add_argument("--output", "-o", type=Path, required=True, help="folder for the masks (created if missing)")
    p.add_argument(
        "--format", choices=("nii.gz", "same", "dicom-seg"), default="nii.gz",
        help="mask format: nii.gz (default), the input's own format (DICOM series give nii.gz), or dicom-seg: "
        "one DICOM Segmentation CASE.seg.dcm per DICOM series, on the series' own grid (other inputs fail)",
    )
    p.add_argument(
        "--patients", type=Path, default=None, metavar="FILE",
        help="CSV with case,height_cm,weight_kg: overrides DICOM PatientSize/PatientWeight for the BSA and "
        "LA volume index (bsa_m2, lavi_ml_m2) of the report",
    )
    p.add_argument(
        "--anonymous", action="store_true",
        help="leave patient_id, study_uid, series_uid, accession_number, series_description out of the report "
        "(a DICOM SEG still carries the source's patient and study)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing masks (default: keep them)")
    p.add_argument(
        "--no-focus", action="store_true",
        help="run the network on every whole slice (default: locate the atrium on one slice every 20 mm, "
        "then segment only its in-plane box on the slab of slices that holds it; the mask is all but the same)",
    )
    p.add_argument("--qc", action="store_true", help="write a QC picture per case and qc/index.html")
    p.add_argument(
        "--probabilities", action="store_true",
        help="also write the probability map (float32, input geometry) as NAME_probabilities.EXT",
    )
    p.add_argument(
        "--tta", action="store_true",
        help="average 5 test-time augmentations (gamma, in-plane shifts; 5x slower) and report a per-case "
        "uncertainty (mean entropy in bits around the atrium's border)",
    )
    p.add_argument("--mesh", choices=("stl", "obj", "vtk"), default=None, help="also export the surface mesh")
    p.add_argument(
        "--mesh-frame", choices=("RAS", "LPS"), default="RAS",
        help="world frame of mesh coordinates: RAS (NIfTI, nibabel) or LPS (DICOM, ITK, 3D Slicer files); "
        "default RAS",
    )
    p.add_argument("--workers", type=_positive_int, default=2, help="cases read ahead in background threads (default 2)")
    p.add_argument(
        "--shard", type=_shard, default=(0, 1), metavar="I/N",
        help="process only shard I of N (0-based), e.g. $SLURM_ARRAY_TASK_ID/N; shards share one output folder",
    )
    p.set_defaults(func=_segment)


def _add_evaluate(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluate", parents=parents,
        help="Dice, HD95 and surface distance (mm) and volumes (mL) against reference labels",
        description="Segment each image in IMAGES and compare it with the label of the same name in LABELS, "
        "on the image's own grid and in world units. Writes a CSV and prints a summary.",
    )
    p.add_argument("images", type=Path, help="folder of images")
    p.add_argument("labels", type=Path, help="folder of reference labels with the same names")
    p.add_argument("--cases", nargs="*", default=None, metavar="NAME", help="evaluate only these case names")
    p.add_argument("--output", "-o", type=Path, default=Path("evaluation.csv"), help="CSV path (evaluation.csv)")
    p.set_defaults(func=_evaluate)


def _add_train(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "train", parents=parents, help="train a model on one or more datasets in the MSD layout",
        description="Train a slice-wise U-Net on one or more MSD-layout datasets at once; each dataset keeps "
        "its own orientation, validation cases and share of every batch. Defaults train the built-in design.",
    )
    p.add_argument("datasets", type=Path, nargs="+", metavar="DATASET",
                   help="folders with dataset.json, imagesTr/ and labelsTr/, trained on together")
    p.add_argument("--weights", type=float, nargs="+", default=[], metavar="W",
                   help="each dataset's share of every batch, one per dataset (default: equal shares)")
    p.add_argument("--output", "-o", type=Path, required=True, help="run folder: best/, last/, metrics.csv")
    p.add_argument("--width", type=_positive_int, default=defaults.WIDTH,
                   help=f"U-Net channels at full resolution (default {defaults.WIDTH})")
    p.add_argument("--depth", type=_positive_int, default=defaults.DEPTH,
                   help=f"U-Net resolution levels incl. bottleneck (default {defaults.DEPTH})")
    p.add_argument("--context", type=int, default=defaults.CONTEXT,
                   help=f"neighbouring slices each side as channels (default {defaults.CONTEXT})")
    p.add_argument("--plane", choices=("sagittal", "coronal", "axial"), default=defaults.PLANE,
                   help=f"slice plane (default {defaults.PLANE})")
    p.add_argument("--spacing", type=float, default=defaults.SPACING_MM,
                   help=f"in-plane voxel size in mm (default {defaults.SPACING_MM})")
    p.add_argument("--slice-spacing", type=float, default=defaults.SLICE_SPACING_MM,
                   help=f"distance between slices in mm (default {defaults.SLICE_SPACING_MM}; 0 keeps each scan's own)")
    p.add_argument("--patch", type=_positive_int, default=defaults.PATCH,
                   help=f"training slice size in voxels (default {defaults.PATCH})")
    p.add_argument("--epochs", type=_positive_int, default=100, help="epochs (default 100)")
    p.add_argument("--steps-per-epoch", type=_positive_int, default=50, help="optimizer steps per epoch (default 50)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default 2e-3)")
    p.add_argument("--val-cases", nargs="*", default=[], metavar="NAME", help="validation case names (any dataset)")
    p.add_argument("--exclude", nargs="*", default=[], metavar="NAME", help="cases never used (held-out test)")
    p.add_argument("--folds", type=int, default=0, help="K for K-fold cross-validation in each dataset (replaces --val-cases)")
    p.add_argument("--fold", type=int, default=0, help="which fold validates (0..K-1)")
    p.add_argument("--val-every", type=_positive_int, default=5, help="validate every N epochs (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop cleanly after this many minutes (0: none)")
    p.add_argument(
        "--assume-orientation", nargs="+", type=_train_orientation, default=["known"], metavar="CODES",
        help="true axis codes of the stored voxels (e.g. ASL), one for all datasets or one per dataset; "
        "'known' (default) fixes datasets the project knows to be mislabelled (MSD Task02), "
        "'header' trusts the headers",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="start from this model folder's weights ('default': the built-in model); same architecture "
                   "required; the card records its lineage")
    p.set_defaults(func=_train)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``atriumseg`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        return args.func(args)
    except UsageError as err:
        log.error("%s", err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_CASE_FAILED
    except (OSError, ValueError, RuntimeError) as err:
        log.error("%s", err, exc_info=args.verbose)
        return EXIT_CASE_FAILED
