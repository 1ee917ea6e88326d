"""``--keep-days``: the received instances of a series are removed that many days after its SEG reached every
destination, or after it failed (a localizer, a single slice), so that patient data does not stay on the disk for
ever. Its state, OUT's outputs and the report stay."""

from __future__ import annotations

import logging
import shutil
import time

from atriumseg.pipeline.serve.state import FAILED, SEGMENTED, Ledger, SeriesState
from atriumseg.pipeline.serve.storage import Storage

log = logging.getLogger("atriumseg.serve")

DAY = 86400.0


def purge(storage: Storage, ledger: Ledger, keep_days: float | None, now: float | None = None) -> list[str]:
    """Remove the instances of every series delivered or failed more than ``keep_days`` ago; the keys purged.

    Each series is checked again and removed under its series lock and the ledger's lock: one whose state changed
    since the look (an instance re-sent and acknowledged meanwhile) keeps its instances."""
    if keep_days is None:
        return []
    now = time.time() if now is None else now
    purged = []
    for seen in ledger.all():
        if not _due(seen, now, keep_days):
            continue
        try:
            with ledger.series_lock(seen.key):
                done = ledger.compare_and_set(seen, lambda: True, lambda key=seen.key: _remove(storage, key))
        except OSError as err:  # not recorded as purged: the next pass tries again
            log.error("series %s: instances not removed (--keep-days %g): %s; tried again at the next purge",
                      seen.key, keep_days, err)
            continue
        if done is not None:
            purged.append(seen.key)
            log.info("series %s: instances removed (%s %.1f days ago, --keep-days %g)", seen.key,
                     "failed" if seen.status == FAILED else "delivered", (now - _settled(seen)) / DAY, keep_days)
    return purged


def _settled(state: SeriesState) -> float:
    """When a series' retention clock started (0: not yet): its delivery for a segmented series; for a failed one its
    failure, or its completion in a state written before failures were timed (its failure came right after)."""
    if state.status == SEGMENTED:
        return state.done
    if state.status == FAILED:
        return max(state.done, state.completed)
    return 0.0


def _due(state: SeriesState, now: float, keep_days: float) -> bool:
    started = _settled(state)
    return bool(started) and not state.purged and now - started >= keep_days * DAY


def _remove(storage: Storage, key: str) -> dict:
    folder = storage.series_folder(key)
    if folder.exists() or folder.is_symlink():
        shutil.rmtree(folder)
    return {"purged": True}
