"""The evaluation table: one CSV row per case, and the same figures with their summary as printed text."""

from __future__ import annotations

import csv
from dataclasses import fields
from pathlib import Path

from atriumseg.pipeline.analysis.metrics import CaseMetrics, Summary, summarise
from atriumseg.pipeline.io.writing import write_atomically

# (CaseMetrics field, printed heading, printed format); the CSV writes every field with 4 decimals
COLUMNS = (
    ("dice", "Dice", "{:.4f}"),
    ("hd95_mm", "HD95 mm", "{:.2f}"),
    ("asd_mm", "ASD mm", "{:.2f}"),
    ("predicted_ml", "pred mL", "{:.1f}"),
    ("true_ml", "true mL", "{:.1f}"),
    ("volume_error_pct", "vol err %", "{:+.1f}"),
    ("abs_volume_error_pct", "|vol err| %", "{:.1f}"),
)


def write_metrics_csv(rows: list[tuple[str, CaseMetrics]], path: Path, overwrite: bool = True) -> Path:
    """One line per case, atomically: case, then every :class:`CaseMetrics` field (dice ... abs_volume_error_pct);
    without ``overwrite``, never over an existing file (even one written while the cases were scored)."""
    names = [f.name for f in fields(CaseMetrics)]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["case", *names])
            for case, metrics in rows:
                writer.writerow([case, *(f"{getattr(metrics, n):.4f}" for n in names)])

    return write_atomically(Path(path), write, overwrite)


def summary_line(s: Summary) -> str:
    """The summary in one line: Dice mean, median and worst case, mean distances and mean volume errors."""
    over = "" if s.distance_cases == s.cases else f" over {s.distance_cases} cases (the others have an empty mask)"
    return (
        f"{s.cases} cases: Dice mean {s.dice_mean:.4f}, median {s.dice_median:.4f}, worst {s.dice_worst:.4f} "
        f"({s.worst_case}); HD95 mean {s.hd95_mean_mm:.2f} mm; ASD mean {s.asd_mean_mm:.2f} mm{over}; "
        f"volume error mean {s.volume_error_mean_pct:+.1f}%, absolute {s.abs_volume_error_mean_pct:.1f}%"
    )


def format_table(rows: list[tuple[str, CaseMetrics]]) -> str:
    """A per-case table with a heading, and the summary line under it."""
    width = max(16, 2 + max(len(name) for name, _ in rows))
    lines = [f"{'case':<{width}}" + "".join(f"{heading:>12}" for _, heading, _ in COLUMNS)]
    for name, m in rows:
        lines.append(f"{name:<{width}}" + "".join(f"{form.format(getattr(m, key)):>12}" for key, _, form in COLUMNS))
    lines.append(summary_line(summarise(rows)))
    return "\n".join(lines)
