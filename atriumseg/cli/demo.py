"""``atriumseg demo``: segment the bundled sample with the built-in model and report Dice and volume."""

from __future__ import annotations

import argparse
from pathlib import Path

from atriumseg.cli import options
from atriumseg.cli.app import EXIT_OK


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "demo", parents=[options.model_options()],
        help="segment the bundled sample MRI and report Dice and volume",
        description="Segment the bundled sample (an MSD Task02 case held out from training, CC-BY-SA 4.0) "
        "with the built-in model; write the mask and a PNG overlay and print Dice and volume.",
    )
    p.add_argument("--output", "-o", type=Path, default=Path("demo-output"), help="folder (default demo-output)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atriumseg.demo import run_demo

    segmenter = options.load_segmenter(args)
    options.check_output_folder(args.output)  # before the sample is segmented (after the model: a bad one makes none)
    result = run_demo(args.output, segmenter)
    print(f"mask:    {result.mask}")
    print(f"overlay: {result.overlay}")
    print(
        f"Dice against the bundled reference label: {result.dice:.4f} (HD95 {result.hd95_mm:.2f} mm); "
        f"left-atrium volume {result.volume_ml:.1f} mL (reference {result.true_volume_ml:.1f} mL)"
    )
    return EXIT_OK
