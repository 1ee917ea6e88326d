"""Out-of-fold figures of a design's fold models at several mask thresholds: is the card's threshold the best one?

    python tools/threshold_sweep.py runs/cv_capt_fold0 runs/cv_capt_fold1 runs/cv_capt_fold2 runs/cv_capt_fold3 \\
        runs/cv_capt_fold4 --thresholds 0.3 0.35 0.4 0.45 0.5 0.52 0.55 0.6 0.7

Each fold model (as ``tools/cross_validate.py`` takes them: one whole cross-validation, each fold's ``last/`` or
fold ensemble) computes its probability map once per held-out case through the Segmenter users run; each threshold
then makes the mask as the card would with that threshold (the largest component kept where the card keeps it) and
is scored against the reference. It prints one Markdown row per dataset and threshold: Dice mean and worst, cases
below 0.85, mean signed and absolute volume error, and the cases scoring higher than at the card's own threshold.
Exploration, not a model's figures: a threshold picked on them has seen the cases it is scored on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atriumseg.pipeline.analysis.metrics import CaseMetrics, case_metrics, summarise
from atriumseg.pipeline.evaluation.evaluate import read_labelled
from atriumseg.pipeline.training.validation import fold_segmenters, held_out

Scores = dict[str, dict[float, list[tuple[str, CaseMetrics]]]]  # dataset -> threshold -> (case, metrics)


def sweep(fold_models: list[Path], thresholds: list[float], device: str = "auto") -> tuple[Scores, float]:
    """Every held-out case's metrics at each threshold (and the card's), per dataset, and the card's threshold."""
    scores: Scores = {}
    segmenters, _, _ = fold_segmenters(fold_models, device)
    own = segmenters[0][0].card.postprocessing.threshold  # one for all folds: fold_segmenters checks it
    levels = sorted({*thresholds, own})
    for segmenter, card in segmenters:
        for dataset, cases in held_out(card):
            for case in cases:
                image, label = read_labelled(case.image, case.label)
                prob = segmenter.probabilities(image.tensor, dataset.orientation)
                truth, affine = label.tensor[0].numpy() > 0.5, image.tensor.affine.numpy()
                for level in levels:
                    mask = segmenter.clean(segmenter.threshold(prob, level))[0].numpy()
                    metrics = case_metrics(mask, truth, affine)
                    scores.setdefault(dataset.name, {}).setdefault(level, []).append((case.name, metrics))
    return scores, own


def table(scores: Scores, own: float) -> str:
    """The sweep as a Markdown table: one row per dataset and threshold, the card's in bold."""
    lines = ["| dataset (cases) | threshold | Dice mean | worst | below 0.85 | volume error | \\|volume error\\| | "
             "cases higher than at the card's |", "| --- " * 8 + "|"]
    for name, by_level in scores.items():
        reference = {case: m.dice for case, m in by_level[own]}
        for level, rows in by_level.items():
            s = summarise(rows)
            higher = sum(m.dice > reference[case] for case, m in rows)
            mark = f"**{level:g}** (the card's)" if level == own else f"{level:g}"
            lines.append(f"| {name} ({s.cases}) | {mark} | {s.dice_mean:.4f} | {s.dice_worst:.3f} | "
                         f"{sum(m.dice < 0.85 for _, m in rows)} | {s.volume_error_mean_pct:+.1f}% | "
                         f"{s.abs_volume_error_mean_pct:.2f}% | {higher} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="the K fold models (as tools/cross_validate.py takes)")
    parser.add_argument("--thresholds", type=float, nargs="+", required=True, help="mask thresholds to score")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    args = parser.parse_args()
    if any(not 0.0 < t < 1.0 for t in args.thresholds):
        sys.exit(f"threshold_sweep: thresholds lie strictly between 0 and 1, got {args.thresholds}")
    try:
        print(table(*sweep(args.models, args.thresholds, args.device)))
    except ValueError as err:
        sys.exit(f"threshold_sweep: {err}")


if __name__ == "__main__":
    main()
