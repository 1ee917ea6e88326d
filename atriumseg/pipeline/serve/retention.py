"""``--keep-days``: the received instances of a series whose SEG reached every destination are removed after that
many days, so the disk does not fill over months. Its state, OUT's outputs and the report stay."""

from __future__ import annotations

import logging
import shutil
import time

from atriumseg.pipeline.serve.state import SEGMENTED, Ledger, SeriesState
from atriumseg.pipeline.serve.storage import Storage

log = logging.getLogger("atriumseg.serve")

DAY = 86400.0


def purge(storage: Storage, ledger: Ledger, keep_days: float | None, now: float | None = None) -> list[str]:
    """Remove the instances of every delivered series done more than ``keep_days`` ago; the keys purged.

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
            log.info("series %s: instances removed (delivered %.1f days ago, --keep-days %g)", seen.key,
                     (now - seen.done) / DAY, keep_days)
    return purged


def _due(state: SeriesState, now: float, keep_days: float) -> bool:
    return state.status == SEGMENTED and bool(state.done) and not state.purged and now - state.done >= keep_days * DAY


def _remove(storage: Storage, key: str) -> dict:
    folder = storage.series_folder(key)
    if folder.exists() or folder.is_symlink():
        shutil.rmtree(folder)
    return {"purged": True}
