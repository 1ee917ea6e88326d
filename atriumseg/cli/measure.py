"""``atriumseg measure``: volume, surface area, sphericity, axes and centroid of masks (world units) to a CSV."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from atriumseg.cli import options
from atriumseg.cli.app import EXIT_CASE_FAILED, EXIT_OK, UsageError, log


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "measure", help="volume, surface area, sphericity, principal axes and centroid of masks, in world units",
    )
    p.add_argument("masks", nargs="+", type=Path, metavar="MASK", help="mask files (NIfTI, NRRD, MHA/MHD)")
    p.add_argument("--output", "-o", type=Path, default=Path("measurements.csv"), help="CSV (measurements.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.analysis.measure import measure_file, write_measurements_csv
    from atriumseg.pipeline.io.names import case_name
    from atriumseg.pipeline.io.volumes import ImageReadError

    options.check_output_file(args.output, args.overwrite)  # a usage error is found before any work
    rows, failed = [], 0
    for path in args.masks:
        try:
            rows.append((case_name(path), measure_file(path)))
        except (ImageReadError, ValueError) as err:
            log.error("%s", err, exc_info=err if log.isEnabledFor(logging.DEBUG) else None)  # -v: traceback
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
