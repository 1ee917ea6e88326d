"""``atriumseg export``: a model in another tool's format (``--format monai-bundle``: a MONAI bundle folder)."""

from __future__ import annotations

import argparse
from pathlib import Path

from atriumseg.cli.app import EXIT_OK, UsageError

FORMATS = ("monai-bundle",)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("export", help="write a model or an ensemble in another tool's format (a MONAI bundle)")
    p.add_argument(
        "model", type=Path, nargs="?", default=None, help="model or ensemble folder (default: the built-in model)"
    )
    p.add_argument("--format", choices=FORMATS, default=FORMATS[0], help="what to write (default: %(default)s)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder to write the bundle into (new or empty)")
    p.add_argument(
        "--overwrite", action="store_true", help="write into a non-empty folder, replacing the bundle's own files"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atriumseg.models.checkpoint import CheckpointError
    from atriumseg.pipeline.export.monai_bundle import BundleExportError, export_monai_bundle

    try:
        folder = export_monai_bundle(args.output, args.model, overwrite=args.overwrite)
    except (CheckpointError, BundleExportError) as err:
        raise UsageError(str(err)) from err
    print(
        f"MONAI bundle: {folder}\nrun it: python -m monai.bundle run --config_file {folder}/configs/inference.json "
        f"--meta_file {folder}/configs/metadata.json --bundle_root {folder} --dataset_dir IMAGES --output_dir MASKS"
    )
    return EXIT_OK
