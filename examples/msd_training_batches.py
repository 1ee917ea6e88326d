"""Look at what training sees: an MSD-layout dataset, its header fix, and augmented 2D slices.

    python examples/msd_training_batches.py DATASET_DIR
"""

import sys

from monai.data import CacheDataset, DataLoader, Dataset

from atriumseg.pipeline.training.dataset import load_msd_dataset
from atriumseg.pipeline.training.trainer import TrainConfig, make_card
from atriumseg.transforms.augmentation import cached_transforms, training_transforms

dataset = load_msd_dataset(sys.argv[1])  # applies known header fixes (MSD Task02: true axes are A, S, L)
print(f"{dataset.name}: {len(dataset.cases)} cases, header fix: {dataset.orientation}")
card = make_card(TrainConfig(datasets=(dataset.root,), output=dataset.root / "unused", context=1), provenance={})
files = [{"image": str(c.image), "label": str(c.label)} for c in dataset.cases[:2]]
cached = CacheDataset(files, transform=cached_transforms(card, dataset.orientation, patch=32), progress=False)
loader = DataLoader(Dataset(cached, transform=training_transforms(card, patch=32, slices_per_volume=4)), batch_size=2)
batch = next(iter(loader))
print(f"image batch {tuple(batch['image'].shape)}, label batch {tuple(batch['label'].shape)}, "
      f"foreground fraction {batch['label'].float().mean():.3f}")
