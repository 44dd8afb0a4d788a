"""Generate tally/web/badge_font.json: the advance widths of DejaVu Sans (regular and
bold) for every character the fonts map, read with fontTools from the TTF files that
matplotlib ships (DejaVu fonts licence, a Bitstream Vera derivative: free to use and
redistribute; see matplotlib's mpl-data/fonts/ttf/LICENSE_DEJAVU).

    .venv/bin/python tools/badge_font.py        # rewrite the table
    .venv/bin/python tools/badge_font.py --check  # exit 1 if it is out of date

Widths are kept in font units (units_per_em per em), grouped by width so the file
stays small: {"units_per_em": 2048, "regular": {"1303": "AB..."}, ...}.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import orjson
from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
TABLE = Path(__file__).resolve().parent.parent / "tally" / "web" / "badge_font.json"


def widths(path: Path) -> tuple[int, dict[str, str]]:
    """(units_per_em, {advance width: the characters that have it})."""
    font = TTFont(path, lazy=True)
    advances = font["hmtx"].metrics
    by_width: dict[int, list[str]] = {}
    for code, glyph in sorted(font.getBestCmap().items()):
        if code > 0xFFFF or not chr(code).isprintable():
            continue
        by_width.setdefault(advances[glyph][0], []).append(chr(code))
    upm = int(font["head"].unitsPerEm)
    return upm, {str(w): "".join(chars) for w, chars in sorted(by_width.items())}


def build() -> bytes:
    upm, regular = widths(FONTS / "DejaVuSans.ttf")
    upm_bold, bold = widths(FONTS / "DejaVuSans-Bold.ttf")
    assert upm == upm_bold
    table = {
        "font": "DejaVu Sans",
        "source": "matplotlib mpl-data/fonts/ttf DejaVuSans.ttf, DejaVuSans-Bold.ttf",
        "units_per_em": upm,
        "regular": regular,
        "bold": bold,
    }
    return orjson.dumps(table, option=orjson.OPT_INDENT_2) + b"\n"


def main() -> int:
    data = build()
    if "--check" in sys.argv:
        if TABLE.read_bytes() != data:
            print(f"{TABLE} is out of date: run tools/badge_font.py", file=sys.stderr)
            return 1
        return 0
    TABLE.write_bytes(data)
    print(f"wrote {TABLE} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
