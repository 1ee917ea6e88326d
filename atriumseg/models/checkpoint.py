"""Saving and loading self-describing models: a folder with safetensors weights and a JSON card.

Loading never unpickles: weights come from safetensors only, so a checkpoint cannot run code.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from atriumseg._version import __version__
from atriumseg.models.card import CardError, ModelCard, ModelDesign
from atriumseg.models.unet import UNet
from atriumseg.pipeline.io.writing import write_together

WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "card.json"
STATE_NAME = "training_state.pt"  # a run's last/ only: optimizer state and progress for --resume


class CheckpointError(ValueError):
    """A model folder that cannot be loaded safely, with the reason."""


def build_network(design: ModelDesign) -> UNet:
    """A freshly initialised network with the architecture of ``design`` (a card, or a design alone)."""
    arch = design.architecture
    return UNet(in_channels=arch.in_channels, width=arch.width, depth=arch.depth)


def save_model(network: UNet, card: ModelCard, folder: Path) -> Path:
    """Write ``model.safetensors`` and ``card.json`` into ``folder``, each whole and flushed to disk, both
    written before either replaces its old file (a full disk leaves the old model whole); returns the folder."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    card = dataclasses.replace(card, package_version=card.package_version or __version__)
    state = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    metadata = {"format": "pt", "atriumseg_version": __version__}

    def weights(tmp: Path) -> None:
        try:
            save_file(state, tmp, metadata=metadata)
        except SafetensorError as err:  # a full disk, as safetensors reports it: an OSError to every caller
            raise OSError(f"cannot write the weights in {folder}: {err}") from err

    try:
        write_together({folder / WEIGHTS_NAME: weights, folder / CARD_NAME: card.save})
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()  # no empty folder left where the model was to be
        raise
    # safetensors creates its file for the owner alone (0600); the weights get the card's mode, which follows the
    # umask, so whoever may read the card may load the model
    (folder / WEIGHTS_NAME).chmod((folder / CARD_NAME).stat().st_mode & 0o777)
    return folder


def model_folder(path: Path) -> Path:
    """The model folder ``path`` names: the folder itself, or the folder of its card or weights file; a
    :class:`CheckpointError` for anything else (a pickled checkpoint is never taken for a model)."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.name == WEIGHTS_NAME or path.name == CARD_NAME:
        return path.parent
    if not path.exists():
        raise CheckpointError(f"model {path}: no such file or folder")
    raise CheckpointError(
        f"model {path}: not an atriumseg model; expected a folder with {WEIGHTS_NAME} and {CARD_NAME} "
        "(pickled .pt/.pth files are never loaded, since unpickling can execute code)"
    )


def load_card(path: Path) -> ModelCard:
    """The card of a model folder, without touching the weights."""
    folder = model_folder(path)
    if not (folder / CARD_NAME).is_file():
        raise CheckpointError(f"model {folder}: missing {CARD_NAME}")
    try:
        return ModelCard.load(folder / CARD_NAME)
    except CardError as err:
        from atriumseg.models.ensemble import is_ensemble, load_ensemble_card  # it imports this module

        if is_ensemble(folder):  # not a malformed card: a card of another kind
            first = folder / load_ensemble_card(folder).members[0]
            raise CheckpointError(
                f"model {folder}: an ensemble, not one network; load it with Segmenter.from_path or load_ensemble, "
                f"or load one member's folder (e.g. {first})"
            ) from err
        raise CheckpointError(f"model {folder}: {err}") from err


def load_model(path: Path) -> tuple[UNet, ModelCard]:
    """Rebuild the network and its card from a model folder, in eval mode on CPU.

    Raises :class:`CheckpointError` if the card is unknown or does not match the weights.
    """
    folder = model_folder(path)
    card = load_card(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"model {folder}: missing {WEIGHTS_NAME}")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"model {folder}: unreadable weights {weights.name}: {err}") from err
    broken = [name for name, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:  # a NaN weight gives NaN probabilities, so an empty mask, for every scan
        raise CheckpointError(f"model {folder}: {weights.name} holds values that are not finite numbers in "
                              f"{', '.join(broken[:3])}{' and more' if len(broken) > 3 else ''}")
    network = build_network(card)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"model {folder}: weights do not match the card's architecture {card.architecture}: "
            f"{str(err).splitlines()[0]}"
        ) from err
    return network.eval(), card


def default_model_path() -> Path:
    """The folder of the built-in default model shipped inside the package."""
    return Path(__file__).with_name("default")


def resolve_model_path(path: Path | None) -> Path:
    """``path``, or the built-in default model's folder when None; says so clearly if none is installed."""
    if path is not None:
        return Path(path)
    folder = default_model_path()
    if not (folder / CARD_NAME).is_file():
        raise CheckpointError("no default model is installed in this atriumseg; pass a model folder with --model PATH")
    return folder

