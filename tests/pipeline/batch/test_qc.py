"""The QC contact sheet: every case linked relative to the page, captions escaped, flagged cases outlined."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import unquote

from atriumseg.pipeline.batch.qc import SheetEntry, contact_sheet


def test_contact_sheet_links_every_case_and_outlines_flagged_ones(tmp_path: Path) -> None:
    (tmp_path / "png").mkdir()
    entries = [
        ("case_001", "Dice 0.93, 41.0 mL, no flag raised", False),  # words in a caption never flag a case
        ("case <2> & 'co'", "small volume", True),
        ("case 3#", "", False),
        ("case_004", "unreadable or corrupt image", True),
    ]
    pngs = [tmp_path / "png" / f"{i}_{name}.png" for i, (name, _, _) in enumerate(entries)]
    for png in pngs[:3]:
        png.write_bytes(b"\x89PNG\r\n\x1a\n")
    sheet_entries = [SheetEntry(n, p, c, f) for (n, c, f), p in zip(entries, pngs, strict=True)]
    sheet = contact_sheet(sheet_entries, tmp_path / "index.html")

    text = sheet.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "png"], "temporary file left behind"
    for name, caption, _ in entries:
        assert f"<b>{html.escape(name)}</b> {html.escape(caption)}" in text
    assert "case <2>" not in text
    sources = [html.unescape(s) for s in re.findall(r'<img src="([^"]+)"', text)]
    assert [unquote(s) for s in sources] == [f"png/{p.name}" for p in pngs[:3]]
    assert all((tmp_path / unquote(s)).exists() for s in sources)
    cards = re.findall(r'<figure class="([^"]+)">.*?<b>(.*?)</b>', text)
    assert [(cls == "case flagged", html.unescape(name)) for cls, name in cards] == [
        (False, "case_001"), (True, "case <2> & 'co'"), (False, "case 3#"), (True, "case_004")
    ]
    assert "no image" in text and "4 cases, 2 flagged" in text
