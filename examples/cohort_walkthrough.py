"""Segment a small cohort, measure each left atrium, export meshes and plot the volumes.

    python examples/cohort_walkthrough.py OUTPUT_DIR [--model MODEL_DIR] [IMAGES...]

Without IMAGES it makes three synthetic volumes, so it runs anywhere (the built-in model, trained on real MRI,
finds no atrium in those: each is reported as such; a model trained on synthetic volumes segments them).
"""

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from matplotlib.figure import Figure

import atriumseg
from atriumseg.synthetic import make_affine, synthetic_case

parser = argparse.ArgumentParser()
parser.add_argument("output", type=Path)
parser.add_argument("images", nargs="*", type=Path)
parser.add_argument("--model", type=Path, default=None, help="model folder (default: built-in model)")
args = parser.parse_intermixed_args()  # images before or after --model
args.output.mkdir(parents=True, exist_ok=True)

images = args.images
if not images:
    for seed in (1, 2, 3):
        case = synthetic_case((48, 48, 40), make_affine((48, 48, 40), (1.5, 1.5, 1.5), "LPS"), seed=seed)
        images.append(args.output / f"synthetic_{seed}.nii.gz")
        nib.save(nib.Nifti1Image(case.image, case.affine), images[-1])

segmenter = atriumseg.Segmenter.from_path(args.model)  # load the model once for the whole cohort
volumes = {}
for path in images:
    name = path.name.split(".")[0]
    mask = atriumseg.segment(path, segmenter, output=args.output / f"{name}_mask.nii.gz", overwrite=True)
    if not np.asanyarray(mask.dataobj).any():
        print(f"{name}: no atrium found (empty mask), nothing to measure")
        continue
    m = atriumseg.measure(mask)
    atriumseg.save_mesh(atriumseg.mesh(mask, frame="LPS"), args.output / f"{name}.stl", overwrite=True)
    volumes[name] = m.volume_ml
    print(f"{name}: {m.volume_ml:.1f} mL, sphericity {m.sphericity:.2f}, centroid RAS {m.centroid_ras_mm}")

figure = Figure(figsize=(6, 3))
axes = figure.subplots()
axes.bar(list(volumes), list(volumes.values()))
axes.set_ylabel("left-atrium volume (mL)")
figure.tight_layout()
figure.savefig(args.output / "volumes.png")
