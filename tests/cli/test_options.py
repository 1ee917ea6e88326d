"""Shared options: one-line usage errors for bad values, and help that shows a dataclass's own defaults."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from atriumseg.cli import options


@pytest.mark.parametrize(("text", "message"), [("0", "must be at least 1"), ("-2", "must be at least 1"),
                                               ("two", "expected a whole number")])
def test_positive_int_refuses_what_is_not_a_count(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        options.positive_int(text)


def test_axcodes_normalise_or_refuse() -> None:
    assert options.axcodes("asl") == "ASL"
    with pytest.raises(argparse.ArgumentTypeError, match="not three axis codes"):
        options.axcodes("RAR")


@dataclass(frozen=True)
class _Config:
    output: Path
    size: int = 7
    pair: tuple[float, float] = (1.5, 1.5)
    shard: tuple[int, int] = (0, 1)
    names: tuple[str, ...] = ()
    flag: bool = False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="x", argument_default=argparse.SUPPRESS,
                                formatter_class=options.field_defaults(lambda: _Config))
    p.add_argument("--output", type=Path, required=True, help="out")
    p.add_argument("--size", type=int, help="size")
    p.add_argument("--pair", type=float, help="pair")
    p.add_argument("--shard", help="shard")
    p.add_argument("--names", nargs="*", help="names")
    p.add_argument("--flag", action="store_true", help="flag")
    p.add_argument("--other", default=3, help="not a field")
    return p


def test_help_shows_the_dataclass_defaults() -> None:
    text = " ".join(_parser().format_help().split())
    assert "size (default 7)" in text and "pair (default 1.5)" in text and "shard (default 0/1)" in text
    assert text.count("(default") == 3  # not for an empty tuple, a flag off, nor an option outside the dataclass


def test_options_not_given_leave_the_dataclass_defaults() -> None:
    args = _parser().parse_args(["--output", "o", "--names", "a", "b"])
    assert _Config(**options.given_fields(args, _Config)) == _Config(Path("o"), names=("a", "b"))
    args = _parser().parse_args(["--output", "o", "--size", "3", "--flag"])
    assert _Config(**options.given_fields(args, _Config)) == _Config(Path("o"), size=3, flag=True)
