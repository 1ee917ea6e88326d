"""A batch run in a process of its own, for the tests that need real processes (kill -9, concurrent runs).

    python batch_child.py MODEL OUTPUT INPUT... [--wait-for FILE] [--seconds-per-case S] [--hang-in-ok-record FILE]

``--wait-for`` waits until FILE exists before the run starts (after the model is loaded), so that
several processes start together; ``--seconds-per-case`` makes every case slower, so that they
overlap; ``--hang-in-ok-record`` stops for ever inside the first write of an ``ok`` record, once its
temporary file exists, after creating FILE: the moment to ``kill -9`` the process. Prints one JSON
object: the outcome's statuses and reasons per case, and the cases this process segmented.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time
from pathlib import Path

from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.runner import run_batch
from atriumseg.pipeline.batch.segment import segment_case
from atriumseg.pipeline.inference.segmenter import Segmenter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--wait-for", type=Path)
    parser.add_argument("--seconds-per-case", type=float, default=0.0)
    parser.add_argument("--hang-in-ok-record", type=Path)
    args = parser.parse_args()
    segmenter = Segmenter.from_path(args.model, device="cpu")
    segmented = []

    def segment(segmenter, planned, volume, options):
        segmented.append(planned.case.name)
        time.sleep(args.seconds_per_case)
        return segment_case(segmenter, planned, volume, options)

    if args.hang_in_ok_record:
        real_write_text = pathlib.Path.write_text

        def write_text(self, text, *rest, **kwargs):
            if self.name.startswith(".tmp-") and self.name.endswith(".json") and '"status": "ok"' in text:
                self.touch()
                args.hang_in_ok_record.touch()
                while True:
                    time.sleep(1)
            return real_write_text(self, text, *rest, **kwargs)

        pathlib.Path.write_text = write_text
    if args.wait_for:
        (args.wait_for.parent / f"ready-{os.getpid()}").touch()
        while not args.wait_for.exists():
            time.sleep(0.02)
    outcome = run_batch(segmenter, args.inputs, BatchOptions(output=args.output, show_progress=False), segment=segment)
    print(json.dumps({
        "pid": os.getpid(),
        "results": {r.case: [r.status, r.reason] for r in outcome.results},
        "segmented": segmented,
    }))


if __name__ == "__main__":
    main()
