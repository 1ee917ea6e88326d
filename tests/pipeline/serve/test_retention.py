"""``--keep-days``: instances of delivered series and of failed series go after that many days; nothing else does."""

from __future__ import annotations

import threading
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


def test_failed_series_lose_their_instances_keep_days_after_they_failed(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "st")
    ledger = Ledger(storage)
    source = pydicom.dcmread(mr_series(tmp_path / "series", "1.2.3")[0])
    now = 100 * DAY
    for key, changes in {
        "failed_long_ago": dict(completed=now - 8 * DAY, done=now - 8 * DAY),
        "failed_lately": dict(completed=now - 6 * DAY, done=now - 6 * DAY),
        "failed_untimed": dict(completed=now - 8 * DAY),  # a state from before failures were timed: its completion
        "failed_after_a_delivery": dict(completed=now - 2 * DAY, done=now - 30 * DAY),  # done: its old SEG's delivery
    }.items():
        storage.write_instance(key, source)
        ledger.update(key, status=FAILED, reason="a single slice: not a 3D series", **changes)
    assert purge(storage, ledger, 7, now=now) == ["failed_long_ago", "failed_untimed"]
    assert ledger.get("failed_long_ago").purged and ledger.get("failed_long_ago").status == FAILED
    assert storage.instances("failed_lately") and storage.instances("failed_after_a_delivery")


def test_a_series_whose_instances_cannot_be_removed_is_not_called_purged_and_is_tried_again(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "st")
    ledger = Ledger(storage)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    storage.series_folder("linked").symlink_to(elsewhere)  # rmtree refuses a link: the instances stay
    storage.write_instance("plain", pydicom.dcmread(mr_series(tmp_path / "series", "1.2.3")[0]))
    for key in ("linked", "plain"):
        ledger.update(key, status=SEGMENTED, done=1 * DAY)
    assert purge(storage, ledger, 7, now=10 * DAY) == ["plain"]  # the other series are still purged
    assert not ledger.get("linked").purged and storage.series_folder("linked").exists()
    storage.series_folder("linked").unlink()
    assert purge(storage, ledger, 7, now=10 * DAY) == ["linked"]


def _delivered(tmp_path: Path, storage: Storage, ledger: Ledger, key: str) -> list[Path]:
    files = mr_series(tmp_path / key, key)[:2]
    storage.write_instance(key, pydicom.dcmread(files[0]))
    ledger.update(key, status=SEGMENTED, seg_uid="9.9", done=1 * DAY)
    return files


def test_an_instance_resent_after_the_look_keeps_its_series_folder(tmp_path: Path, monkeypatch) -> None:
    storage = Storage(tmp_path / "st")
    ledger = Ledger(storage)
    files = _delivered(tmp_path, storage, ledger, "1.2.4")
    looked = ledger.all()

    def all_then_a_resend() -> list:
        with ledger.series_lock("1.2.4"):  # as the SCP stores: written and recorded under the series lock
            storage.write_instance("1.2.4", pydicom.dcmread(files[1]))
            ledger.touch("1.2.4", 20 * DAY, "SCANNER")
        return looked

    monkeypatch.setattr(ledger, "all", all_then_a_resend)
    assert purge(storage, ledger, 7, now=100 * DAY) == []
    assert len(storage.instances("1.2.4")) == 2 and not ledger.get("1.2.4").purged


def test_a_purge_waits_for_an_instance_being_stored_and_then_leaves_it(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "st")
    ledger = Ledger(storage)
    files = _delivered(tmp_path, storage, ledger, "1.2.6")
    result: list[list[str]] = []
    with ledger.series_lock("1.2.6"):  # the SCP is between writing the file and recording it
        storage.write_instance("1.2.6", pydicom.dcmread(files[1]))
        thread = threading.Thread(target=lambda: result.append(purge(storage, ledger, 7, now=100 * DAY)))
        thread.start()
        thread.join(0.3)
        assert thread.is_alive() and len(storage.instances("1.2.6")) == 2
        ledger.touch("1.2.6", 20 * DAY, "SCANNER")
    thread.join(5)
    assert result == [[]] and len(storage.instances("1.2.6")) == 2 and not ledger.get("1.2.6").purged
