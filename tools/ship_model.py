"""Install a trained model or ensemble folder as the built-in default model: licence and attribution on the
card, validation re-measured through the shipped card (so ``atriumseg evaluate`` reproduces the card).

    python tools/ship_model.py RUN/last
    python tools/ship_model.py atriumseg/models/default --cross-validation ...   # new figures, same weights
    python tools/ship_model.py runs/axial_coronal --folds 5 --cross-validation LeftAtrium=cv/bssfp.csv \
        LA2018_LGE=cv/lge.csv --cv-command "atriumseg train ... --folds 5 --fold K; ... (K = 0..4)"

``--cross-validation`` takes, per dataset, an ``atriumseg evaluate`` CSV of out-of-fold cases (each
scored by the fold model that did not train on it); their summary becomes the card's
``provenance.cross_validation``, the model's expected accuracy. An ensemble (``assemble_ensemble``) ships
with its members; the figures and the licence go on the ensemble's card, each member keeps its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
from pathlib import Path

from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import CARD_NAME, WEIGHTS_NAME, default_model_path, load_model, save_model
from atriumseg.models.ensemble import assemble_ensemble, is_ensemble, load_ensemble_card
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.training.validation import (
    cross_validation_record,
    fold_card,
    held_out,
    read_metrics_csv,
    scored_with_tta,
    validate,
    validation_summary,
)

LICENCE = (
    "Trained on the Medical Segmentation Decathlon Task02_Heart (King's College London), CC-BY-SA 4.0, and on "
    "the 2018 Atrial Segmentation Challenge LGE-MRI training cases (University of Utah CARMA; research use; cite "
    "Xiong et al., Medical Image Analysis 67 (2021) 101832). These weights are shared under CC-BY-SA 4.0 for "
    "research use only. Not a medical device."
)


def measured_provenance(segmenter: Segmenter, card: ModelCard, provenance: dict, args: argparse.Namespace) -> dict:
    """``provenance`` with the validation of ``card``'s held-out cases re-measured by ``segmenter``, the licence,
    the held-out sample and, when given, the cross-validated figures: a model trained on every case needs them
    (not those of ``tools/cross_validate.py --tta``, an option's figures)."""
    pairs = [item.split("=", 1) for item in args.cross_validation]
    trained = [name for name, part in card.provenance.get("split", {}).items() if args.holdout in part.get("train", [])]
    if trained:
        raise SystemExit(f"ship_model: the model trained on {args.holdout} ({', '.join(trained)}); the held-out "
                         "sample must be a case no stage of it trained on (--holdout)")
    for _, csv in pairs:
        if Path(csv).name.endswith(".partial.csv"):
            raise SystemExit(f"ship_model: {csv} is the progress of a cross-validation whose folds are not all in, "
                             "never a card's figures")
        if scored_with_tta(Path(csv).parent):
            raise SystemExit(f"ship_model: {csv} holds figures of `segment --tta` (tools/cross_validate.py --tta), "
                             "not of the model as it runs by default")
    per_dataset = {dataset.name: validate(segmenter, cases, dataset.orientation) for dataset, cases in held_out(card)}
    if not any(per_dataset.values()) and not args.cross_validation:
        raise SystemExit("ship_model: the model held out no validation cases (it trained on every case); pass "
                         "--cross-validation so that its card states an expected accuracy")
    provenance = {**provenance, "validation": per_dataset, "validation_dice": validation_summary(per_dataset),
                  "licence": LICENCE, "holdout_sample": args.holdout}
    if pairs:
        rows = {name: read_metrics_csv(Path(csv)) for name, csv in pairs}
        provenance["cross_validation"] = cross_validation_record(rows, args.folds, args.cv_command)
    return provenance


def install_model(model: Path, target: Path, args: argparse.Namespace) -> dict:
    """Write the single model ``model`` into ``target`` with its re-measured card; returns its provenance."""
    network, card = load_model(model)
    provenance = measured_provenance(Segmenter(network, card, device="cpu"), card, card.provenance, args)
    save_model(network, dataclasses.replace(card, provenance=provenance), target)
    return provenance


def install_ensemble(model: Path, target: Path, args: argparse.Namespace) -> dict:
    """Write the ensemble ``model`` (its card and every member) into ``target``, the re-measured validation and
    the licence on the ensemble's card; returns its provenance."""
    ensemble = load_ensemble_card(model)
    segmenter = Segmenter.from_path(model, device="cpu")
    provenance = measured_provenance(segmenter, fold_card(model), ensemble.provenance, args)
    assemble_ensemble(target, {name: model / name for name in ensemble.members}, ensemble.postprocessing,
                      ensemble.package_version)  # in place too: each file is copied to a temporary, then renamed
    dataclasses.replace(ensemble, provenance=provenance).save(target)  # the original member sources, not target's
    return provenance


def remove_leftovers(target: Path) -> None:
    """Delete what an earlier built-in model of the other kind left in ``target``: a single model's weights
    beside an ensemble card, or member folders beside a single model."""
    if is_ensemble(target):
        (target / WEIGHTS_NAME).unlink(missing_ok=True)
        return
    for entry in target.iterdir():
        if entry.is_dir() and (entry / CARD_NAME).is_file():
            shutil.rmtree(entry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a trained model folder (e.g. RUN/last) or an ensemble folder")
    parser.add_argument("--holdout", default="la_023", help="the MSD case kept out of training and selection")
    parser.add_argument("--cross-validation", nargs="+", default=[], metavar="DATASET=CSV",
                        help="out-of-fold evaluate CSVs, one per dataset")
    parser.add_argument("--folds", type=int, default=0, help="folds of the cross-validation")
    parser.add_argument("--cv-command", default="", help="how the cross-validated figures were made")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = default_model_path()
    install = install_ensemble if is_ensemble(args.model) else install_model
    provenance = install(args.model, target, args)
    remove_leftovers(target)
    Segmenter.from_path(target, device="cpu")
    print(f"installed {args.model} as {target}: validation Dice {provenance['validation_dice']}")


if __name__ == "__main__":
    main()
