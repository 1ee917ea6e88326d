"""Use atriumseg's pieces inside your own MONAI code: the card's transform chain, the U-Net and SliceInferer.

    python examples/monai_building_blocks.py [MODEL_DIR]   # one network: an ensemble's member (default: the
                                                           # built-in model's first, atriumseg/models/default/axial)

Reproduces what ``Segmenter`` does, step by step, on a synthetic volume and checks both agree.
"""

import argparse
from pathlib import Path

import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer

from atriumseg.models.checkpoint import default_model_path, load_model
from atriumseg.models.ensemble import first_member
from atriumseg.pipeline.inference.restore import PROB_FLOOR
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.synthetic import make_affine, synthetic_case
from atriumseg.transforms.context import StackNeighbours
from atriumseg.transforms.preprocessing import inference_transforms

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model", nargs="?", type=Path, default=first_member(default_model_path()),
                    help="a model folder of one network (default: the built-in model's first member, axial)")
network, card = load_model(parser.parse_args().model)
case = synthetic_case((48, 50, 40), make_affine((48, 50, 40), (1.4, 1.4, 1.8), "PIR"), seed=5)
image = MetaTensor(torch.from_numpy(case.image)[None], affine=torch.from_numpy(case.affine))

pre = inference_transforms(card)  # orientation, spacing, intensity, padding: all from the card
prepared = pre({"image": image})["image"]
stacked = StackNeighbours(card.preprocessing.slice_dim, card.preprocessing.context)(prepared.as_tensor())
inferer = SliceInferer(spatial_dim=card.preprocessing.slice_dim, roi_size=(-1, -1), sw_batch_size=16, progress=False)
with torch.no_grad():
    prob = torch.sigmoid(inferer(stacked[None], network.eval())[0])
prob = MetaTensor(prob, meta=prepared.meta, applied_operations=prepared.applied_operations)
restored = pre.inverse({"image": prob})["image"]  # back on the input's own voxel grid
mask = (restored > card.postprocessing.threshold).to(torch.uint8)

reference = Segmenter(network, card, device="cpu", precision="float32", focus=False).probabilities(image)
agreement = ((restored - reference).abs() < PROB_FLOOR).float().mean().item()  # Segmenter zeroes p < 0.01
print(f"input {tuple(image.shape)} -> network input {tuple(stacked.shape)} -> mask {tuple(mask.shape)}")
print(f"voxels agreeing with Segmenter: {agreement:.4f}")
