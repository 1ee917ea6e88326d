"""MONAI transform chains: preprocessing and its inversion, augmentation, header fixes, neighbour stacking."""

from atriumseg.transforms.augmentation import cached_transforms, training_transforms
from atriumseg.transforms.context import StackNeighbours, StackNeighboursd
from atriumseg.transforms.orientation import AssumeOrientation, AssumeOrientationd
from atriumseg.transforms.preprocessing import inference_transforms

__all__ = [
    "AssumeOrientation",
    "AssumeOrientationd",
    "StackNeighbours",
    "StackNeighboursd",
    "cached_transforms",
    "inference_transforms",
    "training_transforms",
]
