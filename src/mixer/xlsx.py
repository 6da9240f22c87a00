"""A minimal reader for ``.xlsx`` workbooks (first sheet, first row as header), stdlib only.

The Tulu hardcoded examples ship as an Excel workbook; reading its cells needs no more
than the zip's shared-string table and the first sheet's XML, so no Excel library is
required. Cells are read as text (numbers as written in the sheet); rich-text runs are
joined; empty trailing rows are skipped.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import polars as pl

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


def _col(ref: str) -> int:
    """Zero-based column index of a cell reference like ``C12``."""
    n = 0
    for ch in re.match(r"[A-Z]+", ref).group(0):  # type: ignore[union-attr]
        n = n * 26 + ord(ch) - 64
    return n - 1


def _text(node: ET.Element | None) -> str:
    return "" if node is None else "".join(t.text or "" for t in node.iter(f"{{{NS['m']}}}t"))


def _first_sheet(z: zipfile.ZipFile) -> str:
    wb = ET.fromstring(z.read("xl/workbook.xml"))
    sheet = wb.find("m:sheets/m:sheet", NS)
    if sheet is None:
        raise ValueError("workbook has no sheets")
    rid = sheet.get(REL)
    rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
    for r in rels:
        if r.get("Id") == rid:
            target = r.get("Target", "")
            return target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    return "xl/worksheets/sheet1.xml"


def read_rows(path: str | Path) -> list[list[str]]:
    with zipfile.ZipFile(path) as z:
        shared = []
        if "xl/sharedStrings.xml" in z.namelist():
            shared = [_text(si) for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", NS)]
        sheet = ET.fromstring(z.read(_first_sheet(z)))
    rows = []
    for row in sheet.iterfind("m:sheetData/m:row", NS):
        cells: dict[int, str] = {}
        for i, c in enumerate(row.findall("m:c", NS)):
            kind, ref = c.get("t"), c.get("r")
            if kind == "s":
                v = c.find("m:v", NS)
                value = shared[int(v.text)] if v is not None and v.text else ""
            elif kind == "inlineStr":
                value = _text(c.find("m:is", NS))
            else:
                v = c.find("m:v", NS)
                value = v.text or "" if v is not None else ""
            cells[_col(ref) if ref else i] = value
        if cells:
            width = max(cells) + 1
            rows.append([cells.get(k, "") for k in range(width)])
    while rows and not any(x.strip() for x in rows[-1]):
        rows.pop()
    return rows


def read_xlsx(path: str | Path) -> pl.DataFrame:
    """The first sheet as a frame of strings, header from the first row."""
    try:
        rows = read_rows(path)
    except (zipfile.BadZipFile, KeyError, ET.ParseError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .xlsx workbook ({e})") from None
    if not rows:
        return pl.DataFrame()
    header = [h.strip() or f"column_{k}" for k, h in enumerate(rows[0])]
    width = len(header)
    body = [r[:width] + [""] * (width - len(r)) for r in rows[1:]]
    return pl.DataFrame({h: [r[k] for r in body] for k, h in enumerate(header)}, schema={h: pl.Utf8 for h in header})
