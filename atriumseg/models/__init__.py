"""The network and its self-describing checkpoint."""

from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import CheckpointError, load_model, save_model
from atriumseg.models.unet import UNet

__all__ = ["CheckpointError", "ModelCard", "UNet", "load_model", "save_model"]
