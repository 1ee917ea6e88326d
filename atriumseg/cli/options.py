"""What several commands share: option groups (declared once, used as ``parents=``), argument types that
turn bad values into one-line usage errors, help that shows a dataclass's own defaults, and the model."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atriumseg import defaults
from atriumseg.cli.app import UsageError
from atriumseg.geometry import validate_axcodes

if TYPE_CHECKING:
    from atriumseg.pipeline.inference.segmenter import Segmenter

DEVICE_HELP = "auto (CUDA if present), cpu, cuda, cuda:N"


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def axcodes(text: str) -> str:
    """Three axis codes such as ``ASL``."""
    try:
        return validate_axcodes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def model_options() -> argparse.ArgumentParser:
    """``--model``, ``--device``, ``--batch-size``: every command that runs a model."""
    group = argparse.ArgumentParser(add_help=False)
    group.add_argument("--model", "-m", type=Path, default=None,
                       help="model or ensemble folder (default: the built-in model)")
    group.add_argument("--device", default="auto", help=f"{DEVICE_HELP} (default auto)")
    group.add_argument("--batch-size", type=positive_int, default=defaults.BATCH_SIZE,
                       help=f"slices per forward pass (default {defaults.BATCH_SIZE})")
    return group


def orientation_option() -> argparse.ArgumentParser:
    """``--assume-orientation CODES``: the true axis codes of a mislabelled header."""
    group = argparse.ArgumentParser(add_help=False)
    group.add_argument(
        "--assume-orientation", type=axcodes, default=None, metavar="CODES",
        help="true axis codes of the stored voxels when the header is wrong (e.g. ASL for MSD Task02 as released)",
    )
    return group


def quiet_option() -> argparse.ArgumentParser:
    """``--quiet``: no progress bars."""
    group = argparse.ArgumentParser(add_help=False)
    group.add_argument("--quiet", action="store_true", help="no progress bars")
    return group


def check_output_folder(folder: Path) -> None:
    """An output folder that exists or can be made, and takes files, before any work; a :class:`UsageError` says
    what is wrong otherwise."""
    from atriumseg.pipeline.io.writing import OutputFolderError
    from atriumseg.pipeline.io.writing import check_output_folder as check

    try:
        check(folder)
    except OutputFolderError as err:
        raise UsageError(str(err)) from err


def check_output_file(path: Path, overwrite: bool) -> None:
    """An output file (``--output`` of a CSV) that can be written, checked before any work and creating nothing
    (:func:`~atriumseg.pipeline.io.writing.check_output_file`); a :class:`UsageError` says what is wrong."""
    from atriumseg.pipeline.io.writing import OutputFolderError
    from atriumseg.pipeline.io.writing import check_output_file as check

    try:
        check(path, overwrite)
    except (OutputFolderError, FileExistsError) as err:
        raise UsageError(str(err)) from err


def load_segmenter(args: argparse.Namespace, focus: bool = True) -> Segmenter:
    """The model named by ``--model`` (default: built-in), or a :class:`UsageError` saying why not."""
    from atriumseg.models.checkpoint import CheckpointError
    from atriumseg.pipeline.inference.segmenter import Segmenter

    try:
        return Segmenter.from_path(args.model, device=args.device, batch_size=args.batch_size, focus=focus)
    except (CheckpointError, ValueError) as err:
        raise UsageError(str(err)) from err


def _shown(value: Any) -> str | None:
    """A default as ``--help`` shows it, or None for one not worth showing (unset, off, empty)."""
    if value is None or value is False or value == ():
        return None
    if isinstance(value, tuple):
        return str(value[0]) if len(set(value)) == 1 else "/".join(map(str, value))
    return str(value)


def field_defaults(load: Callable[[], type]) -> type[argparse.HelpFormatter]:
    """A help formatter that shows each option's default as the dataclass ``load()`` declares it.

    A command whose options all default to ``argparse.SUPPRESS`` leaves unset options out of its namespace,
    so the dataclass applies its own defaults; its ``--help`` reads them from the same fields (``load`` runs
    only when help is shown, so a dataclass in a heavy module costs nothing otherwise).
    """

    class FieldDefaults(argparse.HelpFormatter):
        def _get_help_string(self, action: argparse.Action) -> str | None:
            text = action.help or ""
            if action.default is not argparse.SUPPRESS or not action.option_strings:
                return text
            declared = {f.name: f.default for f in dataclasses.fields(load()) if f.default is not dataclasses.MISSING}
            shown = _shown(declared.get(action.dest))
            return text if shown is None else f"{text} (default {shown.replace('%', '%%')})"

    return FieldDefaults


def given_fields(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The options given on the command line that are fields of the dataclass ``config`` (lists as tuples)."""
    names = {f.name for f in dataclasses.fields(config)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k in names}
