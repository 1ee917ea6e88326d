"""``atriumseg segment``: segment files, folders, DICOM series, globs or ``--list`` files into masks and a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from atriumseg.cli import options
from atriumseg.cli.app import EXIT_CASE_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, log
from atriumseg.pipeline.batch.options import MASK_FORMATS, MESH_FORMATS, MESH_FRAMES, BatchOptions


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes I/N such as 0/4, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return index, count


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "segment", parents=[options.model_options(), options.orientation_option(), options.quiet_option()],
        argument_default=argparse.SUPPRESS, formatter_class=options.field_defaults(lambda: BatchOptions),
        help="segment 3D images (files, folders, DICOM series folders)",
        description="Segment the left atrium of each input and write a uint8 mask with the input's exact "
        "geometry, plus report.csv/report.json in the output folder. Exit code: 0 when no case failed "
        "(skipped and flagged cases included), 1 when at least one case failed, 2 on bad usage or model, "
        "130 when stopped by Ctrl-C/SIGTERM (rerun to finish).",
    )
    p.add_argument(
        "inputs", nargs="*", default=[], metavar="INPUT",
        help="image files (NIfTI, NRRD, MHA/MHD), folders (searched recursively; each DICOM series is a case) "
        "or quoted globs",
    )
    p.add_argument(
        "--list", dest="lists", action="append", default=[], type=Path, metavar="FILE",
        help="a text file of input paths (one per line) or a CSV with a 'path' column; repeatable",
    )
    p.add_argument("--output", "-o", type=Path, required=True, help="folder for the masks (created if missing)")
    p.add_argument(
        "--format", dest="fmt", choices=MASK_FORMATS,
        help="mask format: nii.gz, the input's own format (same; DICOM series give nii.gz), or dicom-seg: "
        "one DICOM Segmentation CASE.seg.dcm per DICOM series, on the series' own grid (other inputs fail)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing masks (default: keep them)")
    p.add_argument(
        "--no-focus", action="store_true", default=False,
        help="run the network on every whole slice (default: locate the atrium on one slice every 20 mm, "
        "then segment only its in-plane box on the slab of slices that holds it; the mask is all but the same)",
    )
    p.add_argument("--qc", action="store_true", help="write a QC picture per case and qc/index.html")
    _add_extra_outputs(p)
    _add_report_options(p)
    p.add_argument("--workers", type=options.positive_int, help="cases read ahead in background threads")
    p.add_argument(
        "--shard", type=_shard, metavar="I/N",
        help="process only shard I of N (0-based), e.g. $SLURM_ARRAY_TASK_ID/N; shards share one output folder",
    )
    p.set_defaults(run=run)


def _add_extra_outputs(p: argparse.ArgumentParser) -> None:
    """What a case may write or measure beside its mask."""
    p.add_argument(
        "--probabilities", action="store_true",
        help="also write the probability map (float32, input geometry) as NAME_probabilities.EXT",
    )
    p.add_argument(
        "--tta", action="store_true",
        help="average 5 test-time augmentations (gamma, in-plane shifts: 5 network passes per slice, about 3-4x "
        "the time) and report a per-case uncertainty (mean entropy in bits around the atrium's border)",
    )
    p.add_argument("--mesh", choices=MESH_FORMATS, help="also export the surface mesh")
    p.add_argument(
        "--mesh-frame", choices=MESH_FRAMES,
        help="world frame of mesh coordinates: RAS (NIfTI, nibabel) or LPS (DICOM, ITK, 3D Slicer files)",
    )


def _add_report_options(p: argparse.ArgumentParser) -> None:
    """What the report says of each case's patient."""
    p.add_argument(
        "--patients", dest="patients_csv", type=Path, default=None, metavar="FILE",
        help="CSV with case,height_cm,weight_kg: overrides DICOM PatientSize/PatientWeight for the BSA and "
        "LA volume index (bsa_m2, lavi_ml_m2) of the report",
    )
    p.add_argument(
        "--anonymous", action="store_true",
        help="leave patient_id, study_uid, series_uid, accession_number, series_description out of the report "
        "(a DICOM SEG still carries the source's patient and study)",
    )


def _inputs(args: argparse.Namespace) -> list[str | Path]:
    from atriumseg.pipeline.batch.inputs import read_list

    try:
        inputs = [*args.inputs, *(entry for listing in args.lists for entry in read_list(listing))]
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read --list: {err}") from err
    if not inputs:
        raise UsageError("nothing to segment: give INPUT paths or --list FILE")
    return inputs


def _batch_options(args: argparse.Namespace) -> BatchOptions:
    from atriumseg.pipeline.analysis.body_size import read_patients

    try:
        patients = read_patients(args.patients_csv) if args.patients_csv else {}
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read --patients: {err}") from err
    return BatchOptions(**options.given_fields(args, BatchOptions), patients=patients, show_progress=not args.quiet)


def run(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.batch.report import FAILED, QC_INDEX, summary_table
    from atriumseg.pipeline.batch.runner import run_batch

    inputs = _inputs(args)
    batch = _batch_options(args)
    segmenter = options.load_segmenter(args, focus=not args.no_focus)
    options.check_output_folder(batch.output)
    outcome = run_batch(segmenter, inputs, batch)
    print(summary_table(outcome.results))
    if outcome.output_error:
        log.error("run ended early: %s (the records written so far are kept; rerun to finish)", outcome.output_error)
        return EXIT_CASE_FAILED
    qc = f", QC: {batch.output / QC_INDEX}" if batch.qc else ""
    print(f"report: {batch.output / 'report.csv'}{qc}")
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_CASE_FAILED if any(r.status == FAILED for r in outcome.results) else EXIT_OK
