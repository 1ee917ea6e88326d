"""``main()``: every command registered, one exit code per outcome, a fast start, a quiet closed pipe."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atriumseg import cli
from atriumseg.cli import app


def test_every_registered_command_is_a_module_with_register_and_run() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(cli.COMMANDS)
    for name, command in sub.choices.items():
        assert command.get_default("run").__module__ == f"atriumseg.cli.{name}"


@pytest.mark.slow
def test_help_imports_neither_torch_nor_monai() -> None:
    code = (
        "import sys\nfrom atriumseg.cli import main\n"
        "try:\n    main(['segment', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "print(sorted(m for m in ('torch', 'monai', 'highdicom', 'pydicom') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_the_console_script_module_runs_main(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "atriumseg", "report", str(tmp_path / "nowhere")],
                            capture_output=True, text=True)
    assert result.returncode == cli.EXIT_USAGE
    assert "nowhere: no such folder" in result.stderr


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["segmnet"])
    assert stop.value.code == cli.EXIT_USAGE
    assert "invalid choice: 'segmnet'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "code"),
    [(cli.UsageError("bad"), cli.EXIT_USAGE), (KeyboardInterrupt(), cli.EXIT_INTERRUPTED),
     (OSError("disk"), cli.EXIT_CASE_FAILED), (ValueError("value"), cli.EXIT_CASE_FAILED),
     (RuntimeError("runtime"), cli.EXIT_CASE_FAILED)],
)
def test_each_outcome_has_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, error: BaseException, code: int
) -> None:
    def failing(args: argparse.Namespace) -> int:
        raise error

    real = app.build_parser

    def parser() -> argparse.ArgumentParser:
        built = real()
        sub = next(a for a in built._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["report"].set_defaults(run=failing)
        return built

    monkeypatch.setattr(app, "build_parser", parser)
    with caplog.at_level(logging.ERROR):
        assert cli.main(["report", "anything"]) == code
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


@pytest.mark.slow
def test_sigterm_stops_any_command_with_exit_130(tmp_path: Path, synthetic_dataset: Path) -> None:
    """A training run (no signal handling of its own) stopped by SIGTERM exits 130 as after Ctrl-C, not 143."""
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "atriumseg", "train", str(synthetic_dataset), "-o", str(run),
                                "--width", "8", "--depth", "3", "--patch", "32", "--epochs", "1000", "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "metrics.csv").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # training has begun: the command's handlers are in place
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == cli.EXIT_INTERRUPTED, stderr[-2000:]
    assert "interrupted" in stderr
