"""``--keep-days``: the received instances of a series whose SEG reached every destination are removed after that
many days, so the disk does not fill over months. Its state, OUT's outputs and the report stay."""

from __future__ import annotations

import logging
import shutil
import time

from atriumseg.pipeline.serve.state import SEGMENTED, Ledger
from atriumseg.pipeline.serve.storage import Storage

log = logging.getLogger("atriumseg.serve")

DAY = 86400.0


def purge(storage: Storage, ledger: Ledger, keep_days: float | None, now: float | None = None) -> list[str]:
    """Remove the instances of every delivered series done more than ``keep_days`` ago; the keys purged."""
    if keep_days is None:
        return []
    now = time.time() if now is None else now
    purged = []
    for state in ledger.all():
        if state.status == SEGMENTED and state.done and not state.purged and now - state.done >= keep_days * DAY:
            shutil.rmtree(storage.series_folder(state.key), ignore_errors=True)
            ledger.update(state.key, purged=True)
            purged.append(state.key)
            log.info("series %s: instances removed (delivered %.1f days ago, --keep-days %g)", state.key,
                     (now - state.done) / DAY, keep_days)
    return purged
