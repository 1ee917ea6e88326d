"""What the service is doing, for people and scripts: ``STORAGE/status.json`` (rewritten as states change) and
:func:`read_status`/:func:`format_status` behind ``atriumseg status STORAGE``, which read the durable states
themselves, so they are right even when the service is not running."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from atriumseg.pipeline.io.writing import not_a_folder, process_running
from atriumseg.pipeline.serve.outbox import Outbox
from atriumseg.pipeline.serve.state import FAILED, Ledger
from atriumseg.pipeline.serve.storage import Storage


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(seconds)) if seconds else ""


def snapshot(service: dict, ledger: Ledger, outbox: Outbox, storage: Storage) -> dict:
    """The whole picture as JSON-ready data: the service, every series, the outbox and the refused count."""
    return {
        "service": {**service, "pid": os.getpid(), "updated": _when(time.time())},
        "series": [state.to_dict() for state in ledger.all()],
        "outbox": [asdict(d) for d in outbox.deliveries()],
        "refused": storage.refused_count(),
    }


def read_status(root: Path) -> dict:
    """The state of a storage folder, running service or not: ``service.running`` says whether its process lives."""
    storage = Storage(root, create=False)  # read only: never create folders in what may be a mistyped path
    problem = not_a_folder(root)
    if problem:
        raise FileNotFoundError(f"{root}: {problem}; give the --storage folder of 'atriumseg serve'")
    if not storage.state_root.is_dir():
        raise FileNotFoundError(f"{root}: not an atriumseg storage folder (no state/ in it); give the --storage "
                                "folder of 'atriumseg serve'")
    ledger = Ledger(storage)
    ledger.load()
    try:
        service = json.loads(storage.status_file.read_text(encoding="utf-8")).get("service", {})
    except (OSError, ValueError):
        service = {}
    report = snapshot(service, ledger, Outbox(storage), storage)
    report["service"] = {**service, "running": bool(service.get("pid")) and process_running(int(service["pid"]))}
    return report


LISTED = 5  # names the status line shows before it counts the rest


def _listed(names: list[str]) -> str:
    """``names`` joined, the first :data:`LISTED` of them and a count of the rest (``--json`` lists them all)."""
    more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
    return ", ".join(names[:LISTED]) + more


def format_status(report: dict) -> str:
    """A table of :func:`read_status`'s report."""
    service = report["service"]
    if service.get("running"):
        door = f"{service.get('ae_title', '')} on {service['address']}" if service.get("address") else "no DICOM door"
        watch = f", watching {service['watch']}" if service.get("watch") else ""
        settling = service.get("settling") or []
        head = (f"service: running (pid {service['pid']}, {door}{watch}); in hand: {service.get('in_hand') or '-'}; "
                f"queued: {len(service.get('queue', []))}"
                + (f"; settling in the watch folder: {_listed(settling)}" if settling else ""))
    else:
        head = "service: not running" + (f" (last seen {service['updated']})" if service.get("updated") else "")
    lines = [head, f"{'series':<40} {'status':<10} {'inst':>5} {'mL':>7}  sent / reason"]
    for s in report["series"]:
        volume = f"{s['volume_ml']:.1f}" if s.get("volume_ml") is not None else "-"
        sent = ", ".join(f"{d}" for d, uid in s["sent"].items() if uid == s["seg_uid"])
        detail = (s["reason"] if s["status"] == FAILED else sent or "-") + (" (purged)" if s["purged"] else "")
        lines.append(f"{s['key']:<40} {s['status']:<10} {s['instances']:>5} {volume:>7}  {detail}")
    for d in report["outbox"]:
        wait = max(0.0, d["next_try"] - time.time())
        lines.append(f"outbox: series {d['key']} to {d['destination']}: {d['attempts']} tries, next in {wait:.0f} s"
                     + (f" ({d['last_error']})" if d["last_error"] else ""))
    if report["refused"]:
        lines.append(f"refused objects: {report['refused']} (reasons in refused.jsonl)")
    return "\n".join(lines)
