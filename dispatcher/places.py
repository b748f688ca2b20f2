"""Places with printed codes (龙游通): reading a places file, and the printable sheet of their QR codes.

* :func:`read_places` reads a CSV or YAML file of places and checks every row, reporting every problem
  with its file and line (:class:`PlacesError`); nothing is stored when one row is wrong.
* :func:`sheet_svg` and :func:`sheet_pages` / :func:`sheet_pdf` lay the places' QR codes out on A4, each
  encoding ``<base-url>/field/place/<code>`` with the place's name and code under it. segno makes the codes;
  Pillow draws the PDF pages (a CJK font is used when one is installed, else only the code is written).

Blocking (files, CPU); the CLI calls them (``dispatcher places load``, ``dispatcher places codes``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import segno
import yaml
from PIL import Image, ImageDraw, ImageFont

from dispatcher.field_store import Place

KINDS = ("household", "shop", "stall", "facility")
CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PHONE_PATTERN = re.compile(r"^\+?[0-9][0-9 -]{4,30}$")
COLUMNS = ("code", "kind", "name", "address", "zone", "lat", "lon", "contact_name", "contact_phone", "notes")
REQUIRED = ("code", "kind", "name", "address")
LIMITS = {"name": 128, "address": 256, "zone": 64, "contact_name": 64, "contact_phone": 32, "notes": 2000}


class PlacesError(ValueError):
    """A places file that cannot be loaded: ``problems`` are ``file:line: message`` lines, all of them."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def read_places(path: Path, township: str, *, zones: Collection[str] | None = None) -> list[Place]:
    """The places of a ``.csv`` or ``.yaml``/``.yml`` file, for ``township``; raises :class:`PlacesError`.

    ``zones``: when given, a place's zone must be one of them (the rule table's zones).
    """
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        rows = _csv_rows(text, path.name)
    elif path.suffix.lower() in (".yaml", ".yml"):
        rows = _yaml_rows(text, path.name)
    else:
        raise PlacesError([f"{path.name}: a places file is .csv, .yaml or .yml"])
    problems: list[str] = []
    places: list[Place] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        where = f"{path.name}:{line}"
        place = _place(row, township, zones, where, problems)
        if place is None:
            continue
        if place.code in first_line:
            problems.append(f"{where}: code {place.code!r} is already on line {first_line[place.code]}")
            continue
        first_line[place.code] = line
        places.append(place)
    if problems:
        raise PlacesError(problems)
    if not places:
        raise PlacesError([f"{path.name}: no places"])
    return places


def _csv_rows(text: str, name: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    if unknown or missing:
        said = [
            f"unknown column(s) {', '.join(unknown)}" if unknown else "",
            f"missing {', '.join(missing)}" if missing else "",
        ]
        raise PlacesError([f"{name}:1: {'; '.join(s for s in said if s)} (columns: {', '.join(COLUMNS)})"])
    rows: list[tuple[int, dict[str, Any]]] = []
    for row in reader:
        if None in row:
            rows.append((reader.line_num, {"__extra__": True}))
            continue
        rows.append((reader.line_num, {k: v for k, v in row.items() if v not in (None, "")}))
    return rows


def _yaml_rows(text: str, name: str) -> list[tuple[int, dict[str, Any]]]:
    """Each place mapping of ``places:`` (or of a top-level list) with the line it starts on."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise PlacesError([f"{name}:{line}: not YAML: {getattr(exc, 'problem', exc)}"]) from None
    if isinstance(root, yaml.MappingNode):
        keys = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
        if set(keys) != {"places"}:
            raise PlacesError([f"{name}:{root.start_mark.line + 1}: write one key, places: a list of places"])
        root = keys["places"]
    if not isinstance(root, yaml.SequenceNode):
        line = root.start_mark.line + 1 if root is not None else 1
        raise PlacesError([f"{name}:{line}: places must be a list"])
    rows = []
    for node in root.value:
        value = yaml.safe_load(yaml.serialize(node))
        rows.append((node.start_mark.line + 1, value if isinstance(value, dict) else {"__not_a_mapping__": True}))
    return rows


def _place(
    row: dict[str, Any], township: str, zones: Collection[str] | None, where: str, problems: list[str]
) -> Place | None:
    before = len(problems)
    if row.get("__extra__"):
        problems.append(f"{where}: more values than columns")
        return None
    if row.get("__not_a_mapping__"):
        problems.append(f"{where}: a place is a mapping (code: ..., kind: ..., name: ..., address: ...)")
        return None
    unknown = sorted(str(k) for k in row if k not in COLUMNS)
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in REQUIRED:
        if not str(row.get(key, "") or "").strip():
            problems.append(f"{where}: {key} is required")
    code = str(row.get("code", "")).strip()
    if code and not CODE_PATTERN.match(code):
        problems.append(f"{where}: code {code!r}: letters, digits, '.', '_' or '-', at most 64, starting alnum")
    kind = str(row.get("kind", "")).strip()
    if kind and kind not in KINDS:
        problems.append(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    text: dict[str, str | None] = {}
    for key, limit in LIMITS.items():
        value = row.get(key)
        text[key] = None if value is None else str(value).strip() or None
        if text[key] is not None and (len(text[key] or "") > limit or "\x00" in (text[key] or "")):
            problems.append(f"{where}: {key} is longer than {limit} characters or holds a NUL")
    if zones is not None and text["zone"] is not None and text["zone"] not in zones:
        problems.append(f"{where}: zone {text['zone']!r} is not a zone of the rule table")
    phone = text["contact_phone"]
    if phone is not None and not PHONE_PATTERN.match(phone):
        problems.append(f"{where}: contact_phone {phone!r} is not a phone number")
    lat, lon = _number(row.get("lat"), "lat", 90, where, problems), _number(row.get("lon"), "lon", 180, where, problems)
    if (lat is None) != (lon is None) and len(problems) == before:
        problems.append(f"{where}: give both lat and lon, or neither")
    if len(problems) > before:
        return None
    return Place(
        code=code,
        kind=kind,
        name=text["name"] or "",
        address=text["address"] or "",
        township=township,
        zone=text["zone"],
        lat=lat,
        lon=lon,
        contact_name=text["contact_name"],
        contact_phone=phone,
        notes=text["notes"],
    )


def _number(value: Any, key: str, bound: float, where: str, problems: list[str]) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        problems.append(f"{where}: {key} {value!r} is not a number")
        return None
    if not -bound <= number <= bound:  # NaN fails this too
        problems.append(f"{where}: {key} {value!r} is not within ±{bound}")
        return None
    return number


# -- the printable sheet -------------------------------------------------------------------------------

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
COLUMNS_PER_PAGE, ROWS_PER_PAGE = 3, 4


def place_url(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/field/place/{code}"


def find_cjk_font(dirs: Iterable[Path] = FONT_DIRS) -> Path | None:
    """Noto Sans CJK (or Source Han Sans) when installed, else None."""
    for folder in dirs:
        if not folder.is_dir():
            continue
        for pattern in ("NotoSansCJK*.tt[cf]", "NotoSansCJK*.otf", "NotoSansSC*.[ot]tf", "SourceHanSans*.[ot]t[cf]"):
            found = sorted(folder.rglob(pattern), key=lambda p: ("Regular" not in p.name, p.name))
            if found:
                return found[0]
    return None


def _qr(base_url: str, place: Place) -> segno.QRCode:
    return segno.make_qr(place_url(base_url, place.code), error="m")


def _dark_modules(qr: segno.QRCode) -> Iterable[tuple[int, int]]:
    for y, row in enumerate(qr.matrix):
        for x, dark in enumerate(row):
            if dark:
                yield x, y


def sheet_svg(places: Sequence[Place], base_url: str) -> str:
    """One SVG document (A4 wide, as tall as needed: 3 codes a row) with each code, its name and code.

    The labels are SVG text: the viewer's fonts draw the Chinese names.
    """
    cell_w, cell_h, qr_side = 70.0, 74.0, 50.0  # millimetres
    rows = (len(places) + COLUMNS_PER_PAGE - 1) // COLUMNS_PER_PAGE
    height = max(rows, 1) * cell_h
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="210mm" height="{height}mm" viewBox="0 0 210 {height}">',
        '<rect width="100%" height="100%" fill="#fff"/>',
    ]
    for index, place in enumerate(places):
        qr = _qr(base_url, place)
        side = qr.symbol_size(scale=1, border=4)[0]
        module = qr_side / side
        x0 = (index % COLUMNS_PER_PAGE) * cell_w + (cell_w - qr_side) / 2
        y0 = (index // COLUMNS_PER_PAGE) * cell_h + 4
        path = "".join(f"M{x + 4} {y + 4}h1v1h-1z" for x, y in _dark_modules(qr))
        parts.append(
            f'<g data-code="{escape(place.code)}" transform="translate({x0:.3f} {y0:.3f}) scale({module:.5f})">'
            f'<path fill="#000" shape-rendering="crispEdges" d="{path}"/></g>'
        )
        cx = x0 + qr_side / 2
        parts.append(
            f'<text x="{cx:.3f}" y="{y0 + qr_side + 6:.3f}" font-size="4.2" text-anchor="middle" '
            f'font-family="Noto Sans CJK SC, sans-serif">{escape(place.name)}</text>'
        )
        parts.append(
            f'<text x="{cx:.3f}" y="{y0 + qr_side + 11:.3f}" font-size="3.6" text-anchor="middle" '
            f'font-family="monospace">{escape(place.code)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def sheet_pages(
    places: Sequence[Place], base_url: str, *, dpi: int = 150, font: Path | None = None
) -> list[Image.Image]:
    """A4 pages (``dpi``) of 3 × 4 codes each, with the name (when a CJK font is found) and the code under each."""
    width, height = round(210 / 25.4 * dpi), round(297 / 25.4 * dpi)
    cell_w, cell_h = width // COLUMNS_PER_PAGE, height // ROWS_PER_PAGE
    cjk = font if font is not None else find_cjk_font()
    size = max(dpi // 8, 10)
    name_font = ImageFont.truetype(str(cjk), size) if cjk is not None else None
    code_font: Any = ImageFont.truetype(str(cjk), size) if cjk is not None else _latin_font(size)
    per_page = COLUMNS_PER_PAGE * ROWS_PER_PAGE
    pages = []
    for first in range(0, max(len(places), 1), per_page):
        page = Image.new("L", (width, height), 255)
        draw = ImageDraw.Draw(page)
        for index, place in enumerate(places[first : first + per_page]):
            qr = _qr(base_url, place)
            side = qr.symbol_size(scale=1, border=4)[0]
            scale = max(int(cell_w * 0.7) // side, 2)
            x0 = (index % COLUMNS_PER_PAGE) * cell_w + (cell_w - side * scale) // 2
            y0 = (index // COLUMNS_PER_PAGE) * cell_h + size
            for x, y in _dark_modules(qr):
                left, top = x0 + (x + 4) * scale, y0 + (y + 4) * scale
                draw.rectangle((left, top, left + scale - 1, top + scale - 1), fill=0)
            cx, ty = x0 + side * scale // 2, y0 + side * scale + 2
            if name_font is not None:
                draw.text((cx, ty), place.name, font=name_font, fill=0, anchor="ma")
                ty += size + 4
            draw.text((cx, ty), place.code, font=code_font, fill=0, anchor="ma")
        pages.append(page)
    return pages


def _latin_font(size: int) -> Any:
    for folder in FONT_DIRS:
        found = sorted(folder.rglob("DejaVuSans.ttf")) if folder.is_dir() else []
        if found:
            return ImageFont.truetype(str(found[0]), size)
    return ImageFont.load_default()


def sheet_pdf(places: Sequence[Place], base_url: str, *, dpi: int = 150, font: Path | None = None) -> bytes:
    """The pages of :func:`sheet_pages` as one PDF."""
    pages = sheet_pages(places, base_url, dpi=dpi, font=font)
    out = io.BytesIO()
    pages[0].save(out, "PDF", save_all=True, append_images=pages[1:], resolution=float(dpi))
    return out.getvalue()
