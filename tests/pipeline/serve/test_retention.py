"""``--keep-days``: instances of delivered series go after that many days; nothing else does."""

from __future__ import annotations

from pathlib import Path

import pydicom

from atriumseg.pipeline.serve.retention import DAY, purge
from atriumseg.pipeline.serve.state import FAILED, SEGMENTED, Ledger
from atriumseg.pipeline.serve.storage import Storage
from serve.nodes import mr_series


def test_only_delivered_series_older_than_keep_days_lose_their_instances(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "st")
    ledger = Ledger(storage)
    source = pydicom.dcmread(mr_series(tmp_path / "series", "1.2.3")[0])
    now = 100 * DAY
    for key, changes in {"old": dict(status=SEGMENTED, done=now - 8 * DAY), "recent": dict(status=SEGMENTED,
                         done=now - 6 * DAY), "unsent": dict(status=SEGMENTED, done=0.0),
                         "failed": dict(status=FAILED, done=0.0)}.items():
        storage.write_instance(key, source)
        ledger.update(key, **changes)
    assert purge(storage, ledger, None, now=now) == []  # the default keeps everything
    assert purge(storage, ledger, 7, now=now) == ["old"]
    assert not storage.series_folder("old").exists() and ledger.get("old").purged
    assert all(storage.instances(k) for k in ("recent", "unsent", "failed"))
    assert purge(storage, ledger, 7, now=now) == []
