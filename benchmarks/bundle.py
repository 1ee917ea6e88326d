"""A model (or ensemble) exported as a MONAI bundle and run by MONAI's own runner on the bundled sample, against
atriumseg segmenting the same file with the same model: agreement, accuracy and seconds.

The runner runs in a fresh process where atriumseg cannot be imported (the bundle must not need it);
atriumseg segments in another fresh process, the baseline of the time ratio. Both are timed end to end
(start-up, reading, inference, writing). Reported: the masks' shapes and affines against the input's,
the Dice of the bundle's mask against atriumseg's and of both against the sample's reference label.

    python -m benchmarks.bundle [--models MODEL ...]      # default: the built-in model
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from benchmarks.common import dice, machine, print_table, setup_logging, write_results

log = logging.getLogger("benchmarks.bundle")


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds ``command`` took; its error output is raised when it fails."""
    started = time.perf_counter()
    run = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed: {run.stderr[-2000:]}")
    return time.perf_counter() - started


def measure(model: str | None, image: Path, label: Path, scratch: Path) -> dict[str, Any]:
    """Export ``model``, run the bundle and ``atriumseg segment`` on ``image``; their masks compared."""
    from atriumseg.pipeline.export.monai_bundle import export_monai_bundle

    bundle = export_monai_bundle(scratch / "bundle", model)
    inputs, masks, ours = scratch / "in", scratch / "masks", scratch / "ours"
    inputs.mkdir()
    (inputs / image.name).symlink_to(image)
    shadow = scratch / "shadow" / "atriumseg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('the bundle must not need atriumseg')\n")
    hidden = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    runner = [sys.executable, "-m", "monai.bundle", "run", "--config_file", f"{bundle}/configs/inference.json",
              "--meta_file", f"{bundle}/configs/metadata.json", "--bundle_root", str(bundle),
              "--dataset_dir", str(inputs), "--output_dir", str(masks)]
    ours_command = [sys.executable, "-m", "atriumseg", "segment", str(image), "-o", str(ours), "--quiet",
                    *(["--model", str(Path(model).resolve())] if model else [])]  # it runs in the scratch folder
    bundle_s, ours_s = timed(runner, hidden, scratch), timed(ours_command, dict(os.environ), scratch)
    source = nib.load(image)
    written = nib.load(next(masks.glob("*_seg.nii*")))
    got = np.asarray(written.dataobj) > 0
    theirs = np.asarray(nib.load(next(ours.glob("*.nii*"))).dataobj) > 0
    truth = np.asarray(nib.load(label).dataobj) > 0
    return {
        "model": model or "built-in", "same_grid": written.shape == source.shape
        and bool(np.allclose(written.affine, source.affine, atol=1e-5)),
        "dice_vs_atriumseg": dice(got, theirs), "dice_vs_reference": dice(got, truth),
        "atriumseg_dice_vs_reference": dice(theirs, truth), "bundle_voxels": int(got.sum()),
        "atriumseg_voxels": int(theirs.sum()), "bundle_s": bundle_s, "atriumseg_s": ours_s,
    }


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bundle", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=[None], help="model or ensemble folders (default: built-in)")
    args = parser.parse_args(argv)
    setup_logging()
    from atriumseg.demo import sample_paths

    image, label = sample_paths()
    rows = []
    for model in args.models:
        log.info("exporting and running %s", model or "the built-in model")
        with tempfile.TemporaryDirectory(prefix="atriumseg-bundle-") as tmp:
            rows.append(measure(model, image, label, Path(tmp)))
    info = machine(torch.device("cpu"))
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads")
    print_table(
        f"MONAI bundle run by `python -m monai.bundle run` on {image.name} (never trained on), against "
        "`atriumseg segment` with the same model (fresh processes, end to end)",
        ["model", "input's grid", "Dice vs atriumseg", "Dice vs reference", "atriumseg's Dice", "voxels bundle/ours",
         "bundle s", "atriumseg s", "bundle vs atriumseg"],
        [[r["model"], "yes" if r["same_grid"] else "NO", f"{r['dice_vs_atriumseg']:.4f}",
          f"{r['dice_vs_reference']:.4f}", f"{r['atriumseg_dice_vs_reference']:.4f}",
          f"{r['bundle_voxels']}/{r['atriumseg_voxels']}", f"{r['bundle_s']:.1f}", f"{r['atriumseg_s']:.1f}",
          f"{r['bundle_s'] / r['atriumseg_s']:.2f}x"] for r in rows],
    )
    log.info("wrote %s", write_results("bundle", {"machine": info, "rows": rows}))


if __name__ == "__main__":
    main()
