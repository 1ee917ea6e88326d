"""``atriumseg serve``: a DICOM node (C-ECHO, C-STORE SCP/SCU) and a watch folder that keep the model loaded."""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable
from pathlib import Path

from atriumseg.cli import options
from atriumseg.cli.app import UsageError
from atriumseg.pipeline.batch.options import MESH_FORMATS
from atriumseg.pipeline.serve.options import AllowRule, Destination, ServeOptions


def _parsed(parse: Callable[[str], object]) -> Callable[[str], object]:
    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return convert


def _amount(unit: str) -> Callable[[str], float]:
    """An argparse type: a finite number of ``unit`` (seconds, days), 0 or more; fractions allowed."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of {unit}, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"expected 0 or more {unit}, got {text!r}")
        return value

    convert.__name__ = unit  # argparse names the type in its message when a converter raises anything else
    return convert


_seconds, _days = _amount("seconds"), _amount("days")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "serve", parents=[options.model_options()], argument_default=argparse.SUPPRESS,
        formatter_class=options.field_defaults(lambda: ServeOptions),
        help="run as a DICOM node and/or watch folder, the model loaded once",
        description="Receive MR series over DICOM (C-STORE) and/or from a watch folder, segment each complete "
        "series with the model loaded once, write what 'atriumseg segment' writes to OUT and send the DICOM SEG "
        "to every --send-to node. Nobody may send unless --allow (or --allow-any) says so. Stops cleanly on "
        "SIGTERM (exit 0; a second SIGTERM stops at once). See README, 'Running next to a PACS'.",
    )
    p.add_argument("--storage", type=Path, required=True, help="folder for received instances, states and outbox")
    p.add_argument("--output", "-o", type=Path, required=True, help="folder for SEGs, records and report.csv")
    p.add_argument("--ae-title", help="this node's AE title")
    p.add_argument("--host", help="address to listen on")
    p.add_argument("--port", type=options.positive_int, help="port to listen on")
    p.add_argument("--send-to", action="append", type=_parsed(Destination.parse), metavar="AET@HOST:PORT",
                   help="send each SEG there by C-STORE; repeatable")
    p.add_argument("--allow", action="append", type=_parsed(AllowRule.parse), metavar="AET[@HOST]",
                   help="accept associations from this calling AE title (and only from this IP address); repeatable")
    p.add_argument("--allow-any", action="store_true",
                   help="accept any caller (only on a closed network; default: nobody but --allow)")
    p.add_argument("--series-timeout", type=_seconds, metavar="SECONDS",
                   help="a series is complete once its associations ended and nothing came for this long")
    p.add_argument("--watch", type=Path, metavar="DIR", help="also segment files and DICOM folders put in DIR")
    p.add_argument("--settle", type=_seconds, metavar="SECONDS",
                   help="a watched entry is taken once unchanged (size, modification time) for this long")
    p.add_argument("--keep-days", type=_days, metavar="DAYS",
                   help="remove a series' received instances this many days after its SEG was delivered or it "
                   "failed (default: keep them)")
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve DICOM over TLS with this certificate")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("--qc", action="store_true", help="a QC picture per series and qc/index.html in OUT")
    p.add_argument("--probabilities", action="store_true", help="also write each probability map")
    p.add_argument("--mesh", choices=MESH_FORMATS, help="also export each surface mesh")
    p.set_defaults(run=run)


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """The service's settings from the parsed arguments, or a :class:`UsageError` saying what is wrong."""
    try:
        return ServeOptions(**options.given_fields(args, ServeOptions))
    except ValueError as err:
        raise UsageError(str(err)) from err


def run(args: argparse.Namespace) -> int:
    from atriumseg.pipeline.io.writing import not_a_folder
    from atriumseg.pipeline.serve.cases import segment_with
    from atriumseg.pipeline.serve.service import serve

    settings = serve_options(args)
    options.check_output_folder(settings.output)
    problem = None if settings.watch is None else not_a_folder(settings.watch)
    if problem:
        raise UsageError(f"--watch {settings.watch}: {problem}")
    segmenter = options.load_segmenter(args)
    for noisy in ("atriumseg.pipeline.batch", "pynetdicom", "highdicom"):  # the service logs one line per series
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return serve(segment_with(segmenter, settings), settings)
