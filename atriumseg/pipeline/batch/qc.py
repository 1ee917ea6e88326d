"""The QC contact sheet of a batch: one HTML page of every case's picture (:mod:`atriumseg.pipeline.analysis.overlay`)
with its status, flags and reason, flagged and failed cases outlined in red, so a reviewer looks there first.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from atriumseg.pipeline.analysis.overlay import CONVENTION
from atriumseg.pipeline.io.writing import write_atomically


@dataclass(frozen=True)
class SheetEntry:
    """One case of the contact sheet: its picture, a caption, and whether a reviewer should look first."""

    name: str
    png: Path
    caption: str
    flagged: bool = False


_STYLE = """
body { font-family: sans-serif; margin: 1em; background: #f4f4f4; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 8px; }
figure { margin: 0; padding: 4px; background: white; border: 3px solid transparent; }
figure.flagged { border-color: #d62728; background: #fde8e8; }
img { width: 100%; display: block; }
.missing { padding: 3em 0; text-align: center; color: #777; }
figcaption { font-size: 0.85em; padding-top: 2px; }
"""


def _card(entry: SheetEntry, folder: Path) -> str:
    name, png, caption = entry.name, Path(entry.png).resolve(), entry.caption
    flagged = " flagged" if entry.flagged else ""
    if png.exists():
        href = html.escape(quote(Path(os.path.relpath(png, folder)).as_posix()))
        picture = f'<a href="{href}"><img src="{href}" alt="{html.escape(name)}" loading="lazy"></a>'
    else:
        picture = '<div class="missing">no image</div>'
    return (
        f'<figure class="case{flagged}">{picture}'
        f"<figcaption><b>{html.escape(name)}</b> {html.escape(caption)}</figcaption></figure>"
    )


def contact_sheet(entries: list[SheetEntry], path: Path) -> Path:
    """A self-contained HTML page of thumbnails, one per entry in the given order, with flagged entries
    outlined in red; images are linked relative to the page, so keep them beside
    it or in a subfolder. Replaces ``path`` atomically.
    """
    path = Path(path)
    folder = path.parent.resolve()
    flagged = sum(entry.flagged for entry in entries)
    cards = "\n".join(_card(entry, folder) for entry in entries)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>atriumseg QC</title>'
        f"<style>{_STYLE}</style></head><body>\n"
        f"<h1>atriumseg QC</h1><p>{len(entries)} cases, {flagged} flagged or failed (outlined in red). "
        f"{html.escape(CONVENTION)}.</p>\n<div class=\"grid\">\n{cards}\n</div></body></html>\n"
    )
    return write_atomically(path, lambda tmp: tmp.write_text(page, encoding="utf-8", errors="backslashreplace"))
