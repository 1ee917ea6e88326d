"""Planning a run before any case is read: every output of a case named, cases that would overwrite an input
or another case's output refused, finished cases recognised, and each case claimed under its lock.

The rules (README, "Batch processing"):

- an output is never written over an input of the run (real paths compared, every file of a DICOM
  folder included), whatever ``overwrite`` says: such a case fails with the reason;
- discovery never enters the output folder and leaves out every file runs wrote there (:func:`own_files`);
- a case is locked (:mod:`.locks`) from before it is read until its record is written; a case another
  process holds is skipped with "being processed by PID n", and no record is written for it;
- a complete case (:func:`~.report.is_complete`) is never redone without ``overwrite``; any other case
  is (re)done, replacing the outputs its own record lists (all of its outputs when its record cannot be
  read); a file at an output path that no record of the case claims is kept, and the case skipped,
  unless ``overwrite``.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from atriumseg.pipeline.batch.inputs import InputCase, Skip, discover, in_shard, input_files
from atriumseg.pipeline.batch.locks import LOCKS, CaseBusy, CaseLock, lock_case
from atriumseg.pipeline.batch.options import DICOM_SEG, BatchOptions
from atriumseg.pipeline.batch.patient import refresh_patient
from atriumseg.pipeline.batch.records import Halt, Settled, log_settled, store
from atriumseg.pipeline.batch.report import (
    FAILED,
    OK,
    QC_INDEX,
    RECORDS,
    REPORT_FILES,
    SKIPPED,
    CaseResult,
    collect,
    is_complete,
    outputs,
    read_record,
    record_path,
    write_record,
)
from atriumseg.pipeline.io.names import SEG_SUFFIX, mask_suffix
from atriumseg.pipeline.io.writing import check_output_folder, remove_stale_temporaries

DICOM_SEG_NEEDS_DICOM = "dicom-seg needs a DICOM series input; use --format nii.gz or same"


@dataclass(frozen=True)
class CaseOutputs:
    """Every file a case may write. All derive from the case name CASE by appending to it: ``CASE.nii.gz``
    (or the input's format, or ``CASE.seg.dcm``), ``CASE_probabilities.nii.gz``, ``CASE.stl``, ``qc/CASE.png``."""

    mask: Path
    probabilities: Path | None = None
    mesh: Path | None = None
    qc_png: Path | None = None

    def all(self) -> list[Path]:
        """The paths this case writes, mask first."""
        return [p for p in (self.mask, self.probabilities, self.mesh, self.qc_png) if p is not None]


@dataclass(frozen=True)
class PlannedCase:
    """A case of the run and the outputs it will write."""

    case: InputCase
    outputs: CaseOutputs


@dataclass(frozen=True)
class Prepared:
    """A run ready to start: its options (output folder made absolute), the cases of this shard to run, the
    results already settled (strays, refused cases; recorded and logged), and the run's :class:`Halt`."""

    options: BatchOptions
    todo: list[PlannedCase]
    settled: list[CaseResult]
    halt: Halt


def case_outputs(
    case: InputCase, out_dir: Path, fmt: str = "nii.gz", probabilities: bool = False, mesh: str | None = None,
    qc: bool = False,
) -> CaseOutputs:
    """Every output path of a case, each its name CASE plus a suffix (never ``Path.stem``: names hold dots).

    With ``fmt='dicom-seg'`` a DICOM series case's mask is ``CASE.seg.dcm`` and its probability map NIfTI;
    any other case is refused with a ValueError (a SEG must reference a DICOM series).
    """
    out_dir = Path(out_dir)
    if fmt == DICOM_SEG:
        if case.series_uid is None:
            raise ValueError(DICOM_SEG_NEEDS_DICOM)
        suffix, prob_suffix = SEG_SUFFIX, ".nii.gz"
    else:
        suffix = mask_suffix(case.path, fmt) if case.series_uid is None else ".nii.gz"
        prob_suffix = suffix
    return CaseOutputs(
        mask=out_dir / f"{case.name}{suffix}",
        probabilities=out_dir / f"{case.name}_probabilities{prob_suffix}" if probabilities else None,
        mesh=out_dir / f"{case.name}.{mesh}" if mesh else None,
        qc_png=out_dir / "qc" / f"{case.name}.png" if qc else None,
    )


def _real(path: Path | str) -> Path:
    return Path(os.path.realpath(path))


def own_files(out_dir: Path) -> Skip:
    """What discovery leaves out: the output folder, its reports and every output its records list."""
    files = [out_dir / name for name in REPORT_FILES] + [out_dir / QC_INDEX]
    files += [p for record in collect(out_dir) for p in outputs(record)]
    return Skip(folders=frozenset({_real(out_dir)}), files=frozenset(map(_real, files)))


def _refused(case: InputCase, reason: str) -> CaseResult:
    return CaseResult(case.name, str(case.path), "", FAILED, reason)


def _apart(name: str, path: Path) -> str:
    """The record key of something that must not take ``name``'s record: ``NAME@hash`` of its path."""
    return f"{name}@{zlib.crc32(os.fsencode(path)):08x}"


def _refusal_key(out: Path, case: InputCase) -> str | None:
    """Where a case refused while planning is recorded: under its name, or nowhere when that holds the record of a
    case an earlier run finished (this run reports the refusal; the folder's report keeps that case and its
    outputs, which a record of the refusal would disown or, kept apart, list as failed for good)."""
    previous = read_record(out, case.name)
    return None if previous is not None and previous.status == OK else case.name


def plan_cases(
    cases: list[InputCase], options: BatchOptions
) -> tuple[list[PlannedCase], list[tuple[InputCase, CaseResult, str | None]]]:
    """Cases to run with their outputs, and the ones refused: an output over an input of the run, or an output
    or case name (one record and lock per name) another case claims first (recorded apart from that case, under
    ``CASE@hash``)."""
    protected = input_files(cases)
    todo, refused, claimed, named = [], [], {}, {}
    for case in cases:
        try:
            planned = case_outputs(case, options.output, options.fmt, options.probabilities, options.mesh, options.qc)
        except ValueError as err:
            refused.append((case, _refused(case, f"{case.path}: {err}"), None))
            continue
        over = next((p for p in planned.all() if _real(p) in protected), None)
        clash = next((p for p in planned.all() if p in claimed), None)
        if over is not None:
            reason = (f"{case.path}: its output {over} would overwrite an input of this run; "
                      "give an --output folder apart from the inputs")
            refused.append((case, _refused(case, reason), None))
        elif clash is not None or case.name in named:
            why = (f"output name {clash.name} collides with {claimed[clash]}" if clash is not None
                   else f"case name {case.name} is also that of {named[case.name]}")
            refused.append((case, _refused(case, f"{case.path}: {why}"), _apart(case.name, case.path)))
        else:
            claimed.update({p: case.path for p in planned.all()})
            named[case.name] = case.path
            todo.append(PlannedCase(case, planned))
    return todo, refused


def prepare(inputs: list[str | Path], options: BatchOptions) -> Prepared:
    """Check the output folder (:class:`~atriumseg.pipeline.io.writing.OutputFolderError` when unusable), clean
    stale temporaries, discover and plan the cases, and record what is settled before any case runs."""
    out = check_output_folder(options.output).absolute()
    options = replace(options, output=out)
    for folder in (out, out / RECORDS, out / "qc", out / LOCKS):
        remove_stale_temporaries(folder)
    index, count = options.shard
    cases, strays = discover(inputs, own_files(out))
    todo, refused = plan_cases(cases, options)
    halt = Halt()
    settled = [CaseResult(s.path.name, str(s.path), "", SKIPPED, s.reason) for s in strays] if index == 0 else []
    for result in settled:  # a stray never takes a case's record, nor another stray's of the same name
        store(out, result, halt, _apart(result.case, Path(result.input)))
    for case, result, key in refused:
        if in_shard(case, index, count):
            key = key or _refusal_key(out, case)
            if key is not None:
                store(out, result, halt, key)
            settled.append(result)
    for result in settled:
        log_settled(result)
    return Prepared(options, [p for p in todo if in_shard(p.case, index, count)], settled, halt)


def claim(planned: PlannedCase, options: BatchOptions) -> CaseLock | Settled:
    """Lock a case and decide whether it runs: its lock to run it, or how it is settled without running."""
    case, paths = planned.case, planned.outputs.all()
    try:
        lock = lock_case(options.output, case.name)
    except CaseBusy as busy:
        return Settled(CaseResult(case.name, str(case.path), "", SKIPPED, f"{case.path}: {busy}"), record=False)
    if options.overwrite:
        return lock
    previous = read_record(options.output, case.name)
    if previous is not None and previous.status == OK and _real(previous.input) != _real(case.path):
        lock.release()
        reason = (f"{case.path}: {options.output} already holds case {case.name}, segmented from {previous.input}; "
                  "give another --output, or --overwrite to redo it from this input")
        return Settled(CaseResult(case.name, str(case.path), "", SKIPPED, reason), record=False)
    if is_complete(previous):
        current = refresh_patient(previous, case, options.patients, options.anonymous)
        changed = current.to_dict() != previous.to_dict()
        try:
            if changed:  # under the case's lock, so a concurrent --overwrite run's newer record is never replaced
                write_record(options.output, current)
        except OSError:
            return Settled(current, record=True)  # stored, or the run halted, with every other record
        finally:
            lock.release()
        return Settled(current, record=False)
    if previous is not None:
        own = {_real(p) for p in outputs(previous)}
    else:  # a record of this case that cannot be read still says the case's outputs are a run's own
        own = {_real(p) for p in paths} if record_path(options.output, case.name).exists() else set()
    foreign = next((p for p in paths if p.exists() and _real(p) not in own), None)
    if foreign is not None:
        lock.release()
        reason = f"{foreign} exists and no earlier run of this case wrote it (use --overwrite to replace it)"
        return Settled(CaseResult(case.name, str(case.path), "", SKIPPED, reason), record=True)
    return lock
