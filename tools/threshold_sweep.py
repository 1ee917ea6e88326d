"""Out-of-fold figures of a design's fold models at several mask thresholds and member weights: is the card's rule
the best one?

    python tools/threshold_sweep.py runs/cv_capt_fold0 runs/cv_capt_fold1 runs/cv_capt_fold2 runs/cv_capt_fold3 \\
        runs/cv_capt_fold4 --thresholds 0.3 0.35 0.4 0.45 0.5 0.52 0.55 0.6 0.7
    python tools/threshold_sweep.py runs/cv_tri3b_fold0 runs/cv_tri3b_fold4 --partial --thresholds 0.45 \\
        --weights 1,1,0.35 1,1,0.7

Each fold model (as ``tools/cross_validate.py`` takes them: one whole cross-validation, each fold's ``last/`` or
fold ensemble; ``--partial``: some of its folds) computes its members' probability maps once per held-out case
through the Segmenter users run. Each mix (the card's fusion of the members as they are, and each of ``--weights``:
one weight per member, in the card's order, for the card's fusion rule weighted) and each threshold then makes the
mask as the card would (the largest component kept where the card keeps it), scored against the reference. It prints
one Markdown row per dataset, mix and threshold: Dice mean and worst, cases below 0.85, mean signed and absolute
volume error, and the cases scoring higher than under the card's own rule. Exploration, not a model's figures: a
rule picked on them has seen the cases it is scored on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monai.data import MetaTensor

from atriumseg.pipeline.analysis.metrics import CaseMetrics, case_metrics, summarise
from atriumseg.pipeline.evaluation.evaluate import read_labelled
from atriumseg.pipeline.inference.fusion import check_weights, fuse
from atriumseg.pipeline.training.validation import fold_segmenters, held_out

Weights = tuple[float, ...] | None  # one per member; None: the card's fusion as it is
Scores = dict[str, dict[tuple[Weights, float], list[tuple[str, CaseMetrics]]]]  # dataset -> (mix, threshold) -> rows


def sweep(fold_models: list[Path], thresholds: list[float], device: str = "auto", partial: bool = False,
          weights: list[tuple[float, ...]] = ()) -> tuple[Scores, float]:
    """Every held-out case's metrics under each mix (the card's, then each of ``weights``) at each threshold (and the
    card's), per dataset, and the card's threshold. ``weights`` that do not give one weight per member of every fold
    model raise :class:`ValueError`."""
    scores: Scores = {}
    segmenters, _, _ = fold_segmenters(fold_models, device, partial)
    own = segmenters[0][0].card.postprocessing.threshold  # one for all folds: fold_segmenters checks it
    levels = sorted({*thresholds, own})
    for segmenter, _ in segmenters:
        if any(len(mix) != len(segmenter.members) for mix in weights):
            raise ValueError(f"--weights give one weight per member; the fold models have {len(segmenter.members)} "
                             f"members, got {[','.join(f'{w:g}' for w in mix) for mix in weights]}")
    for segmenter, card in segmenters:
        for dataset, cases in held_out(card):
            for case in cases:
                image, label = read_labelled(case.image, case.label)
                maps = list(segmenter.member_probabilities(image.tensor, dataset.orientation))
                truth, affine = label.tensor[0].numpy() > 0.5, image.tensor.affine.numpy()
                for mix in [None, *weights]:
                    prob = MetaTensor(fuse(maps, segmenter.card.postprocessing.fusion, mix), meta=image.tensor.meta)
                    for level in levels:
                        mask = segmenter.clean(segmenter.threshold(prob, level))[0].numpy()
                        rows = scores.setdefault(dataset.name, {}).setdefault((mix, level), [])
                        rows.append((case.name, case_metrics(mask, truth, affine)))
    return scores, own


def table(scores: Scores, own: float) -> str:
    """The sweep as a Markdown table: one row per dataset, mix and threshold, the card's rule in bold."""
    lines = ["| dataset (cases) | member weights | threshold | Dice mean | worst | below 0.85 | volume error | "
             "\\|volume error\\| | cases higher than under the card's |", "| --- " * 9 + "|"]
    for name, by_rule in scores.items():
        reference = {case: m.dice for case, m in by_rule[(None, own)]}
        for (mix, level), rows in by_rule.items():
            s = summarise(rows)
            higher = sum(m.dice > reference[case] for case, m in rows)
            weights = "the card's" if mix is None else ":".join(f"{w:g}" for w in mix)
            mark = f"**{level:g}** (the card's)" if (mix, level) == (None, own) else f"{level:g}"
            lines.append(f"| {name} ({s.cases}) | {weights} | {mark} | {s.dice_mean:.4f} | {s.dice_worst:.3f} | "
                         f"{sum(m.dice < 0.85 for _, m in rows)} | {s.volume_error_mean_pct:+.1f}% | "
                         f"{s.abs_volume_error_mean_pct:.2f}% | {higher} |")
    return "\n".join(lines)


def _weights(text: str) -> tuple[float, ...]:
    """One ``--weights`` entry: comma-separated weights, one per member, none negative, not all 0."""
    try:
        mix = tuple(float(w) for w in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: weights are numbers separated by commas, as 1,1,0.5") from err
    try:
        check_weights(mix)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from err
    return mix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="the K fold models (as tools/cross_validate.py takes)")
    parser.add_argument("--thresholds", type=float, nargs="+", required=True, help="mask thresholds to score")
    parser.add_argument("--weights", type=_weights, nargs="+", default=[], metavar="W,W,...",
                        help="mixes of an ensemble's members to score beside the card's: one weight per member, in "
                             "the card's order (1,1,0.5: the last member at half the others' weight)")
    parser.add_argument("--partial", action="store_true", help="accept some of the K folds (each once)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    args = parser.parse_args()
    if any(not 0.0 < t < 1.0 for t in args.thresholds):
        sys.exit(f"threshold_sweep: thresholds lie strictly between 0 and 1, got {args.thresholds}")
    try:
        print(table(*sweep(args.models, args.thresholds, args.device, args.partial, args.weights)))
    except ValueError as err:
        sys.exit(f"threshold_sweep: {err}")


if __name__ == "__main__":
    main()
