"""Places (龙游通): the places file checked line by line, `dispatcher places load`, and the printable QR sheet
(SVG and PDF) decoded back with zxing-cpp."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from dispatcher import places as sheet
from dispatcher.field_store import Place, SqlFieldStore
from dispatcher.places import PlacesError, read_places, sheet_pages, sheet_pdf, sheet_svg
from server.cli import app

EXAMPLE = Path(__file__).resolve().parent.parent / "rules" / "tables" / "ershili-places.yaml"
ZONES = {"five-way", "market", "town-centre"}
BASE = "https://dispatch.ershili.example"


def test_the_example_file_loads() -> None:
    places = read_places(EXAMPLE, "ershili", zones=ZONES)
    assert [p.code for p in places] == ["ESL-S-001", "ESL-S-002", "ESL-T-003", "ESL-H-004", "ESL-F-005", "ESL-F-006"]
    shop = places[0]
    assert (shop.kind, shop.name, shop.zone, shop.lat, shop.contact_phone) == (
        "shop", "五岔口便民超市", "five-way", 28.8482, "13800000001",
    )  # fmt: skip
    assert places[3].zone is None and places[3].lat is None and places[4].contact_phone is None


def test_a_csv_file_loads_and_its_problems_are_all_named_with_their_lines(tmp_path: Path) -> None:
    good = tmp_path / "places.csv"
    good.write_text(
        "code,kind,name,address,zone,lat,lon,contact_name,contact_phone\n"
        "ESL-S-101,shop,小卖部,集镇路1号,market,28.849,118.913,王五,13912345678\n"
        "ESL-H-102,household,刘家,后溪村,,,,,\n",
        encoding="utf-8",
    )
    assert [(p.code, p.zone, p.lat) for p in read_places(good, "ershili", zones=ZONES)] == [
        ("ESL-S-101", "market", 28.849),
        ("ESL-H-102", None, None),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "code,kind,name,address,zone,lat,lon,contact_phone\n"
        "ESL-1,shop,店,路1号,market,28.8,118.9,0570-1234567\n"  # line 2: fine
        "ESL-2,castle,堡,路2号,,,,139\n"  # line 3: kind, phone
        "ESL-3,shop,,路3号,moon,95,118.9,\n"  # line 4: name, zone, lat
        "ESL-1,shop,店,路1号,,,,\n"  # line 5: fine, the code again
        "bad code,stall,摊,路5号,,28.8,,\n",  # line 6: code, half a position
        encoding="utf-8",
    )
    with pytest.raises(PlacesError) as refused:
        read_places(bad, "ershili", zones=ZONES)
    problems = refused.value.problems
    assert all(re.match(r"^bad\.csv:\d+: ", p) for p in problems)
    lines = {int(p.split(":")[1]) for p in problems}
    assert lines == {3, 4, 5, 6}
    text = "\n".join(problems)
    for expected in ("bad.csv:3: contact_phone '139'", "bad.csv:3: kind 'castle'", "bad.csv:4: name is required",
                     "bad.csv:4: zone 'moon'", "bad.csv:4: lat '95'", "bad.csv:5: code 'ESL-1' is already on line 2",
                     "bad.csv:6: code 'bad code'"):  # fmt: skip
        assert expected in text, text
    header = tmp_path / "header.csv"
    header.write_text("code,kind,title\nX,shop,y\n", encoding="utf-8")
    with pytest.raises(PlacesError, match=r"header\.csv:1: unknown column\(s\) title; missing name, address"):
        read_places(header, "ershili")


def test_yaml_problems_carry_their_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "places:\n"
        "  - {code: A-1, kind: shop, name: 店, address: 路}\n"
        "  - code: A-2\n"
        "    kind: shop\n"
        "    name: 店\n"
        "    colour: red\n"
        "  - just text\n",
        encoding="utf-8",
    )
    with pytest.raises(PlacesError) as refused:
        read_places(bad, "ershili")
    assert refused.value.problems == [
        "bad.yaml:3: unknown key(s) colour",
        "bad.yaml:3: address is required",
        "bad.yaml:7: a place is a mapping (code: ..., kind: ..., name: ..., address: ...)",
    ]
    broken = tmp_path / "broken.yaml"
    broken.write_text("places:\n  - {code: A\n", encoding="utf-8")
    with pytest.raises(PlacesError, match=r"^broken\.yaml:\d+: not YAML"):
        read_places(broken, "ershili")


def test_places_load_stores_and_replaces_by_code(tmp_path: Path) -> None:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    runner = CliRunner()
    loaded = runner.invoke(app, ["places", "load", str(EXAMPLE), "--database-url", url])
    assert loaded.exit_code == 0, loaded.output
    assert "6 places of ershili stored" in loaded.output
    changed = tmp_path / "one.csv"
    changed.write_text("code,kind,name,address\nESL-S-001,shop,新名字,新地址\n", encoding="utf-8")
    assert runner.invoke(app, ["places", "load", str(changed), "--database-url", url]).exit_code == 0
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("code,kind,name,address\nESL-S-009,castle,x,y\n", encoding="utf-8")
    refused = runner.invoke(app, ["places", "load", str(wrong), "--database-url", url])
    assert refused.exit_code == 1 and "wrong.csv:2: kind 'castle'" in refused.output

    async def stored() -> list[Place]:
        store = SqlFieldStore(url)
        try:
            return await store.places("ershili")
        finally:
            await store.close()

    places = asyncio.run(stored())
    assert len(places) == 6 and "ESL-S-009" not in {p.code for p in places}
    assert next(p for p in places if p.code == "ESL-S-001").name == "新名字"


def many_places(n: int) -> list[Place]:
    return [
        Place(code=f"ESL-T-{i:03d}", kind="stall", name=f"摊位{i}号", address=f"市场{i}号", township="ershili")
        for i in range(n)
    ]


def decoded(image: Image.Image) -> set[str]:
    return {b.text for b in zxingcpp.read_barcodes(image)}


def test_the_pdf_sheet_has_every_code_and_decodes_back(tmp_path: Path) -> None:
    places = many_places(13)  # a full page of 12 and one more
    pages = sheet_pages(places, BASE)
    assert len(pages) == 2
    assert decoded(pages[0]) | decoded(pages[1]) == {f"{BASE}/field/place/{p.code}" for p in places}
    pdf = sheet_pdf(places, BASE)
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == 2


def test_without_a_cjk_font_the_sheet_still_carries_every_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sheet, "find_cjk_font", lambda *_: None)
    places = many_places(3)
    pages = sheet_pages(places, BASE)
    assert decoded(pages[0]) == {f"{BASE}/field/place/{p.code}" for p in places}


def rasterise(svg: str, px_per_mm: float = 6.0) -> Image.Image:
    """Our own SVG drawn back with Pillow: each code group's modules at its translation and scale."""
    width = 210 * px_per_mm
    height = float(re.search(r'viewBox="0 0 210 ([\d.]+)"', svg).group(1)) * px_per_mm  # type: ignore[union-attr]
    image = Image.new("L", (round(width), round(height)), 255)
    draw = ImageDraw.Draw(image)
    for tx, ty, scale, path in re.findall(
        r'transform="translate\(([\d.]+) ([\d.]+)\) scale\(([\d.]+)\)"><path[^>]* d="([^"]*)"', svg
    ):
        for x, y in re.findall(r"M(\d+) (\d+)h1v1h-1z", path):
            left = (float(tx) + int(x) * float(scale)) * px_per_mm
            top = (float(ty) + int(y) * float(scale)) * px_per_mm
            side = float(scale) * px_per_mm
            draw.rectangle((left, top, left + side - 1, top + side - 1), fill=0)
    return image


def test_the_svg_sheet_decodes_back_and_labels_each_code(tmp_path: Path) -> None:
    places = read_places(EXAMPLE, "ershili")
    out = tmp_path / "codes.svg"
    result = CliRunner().invoke(
        app, ["places", "codes", "--format", "svg", "--out", str(out), "--base-url", BASE, "--from", str(EXAMPLE)]
    )
    assert result.exit_code == 0, result.output
    svg = out.read_text(encoding="utf-8")
    assert decoded(rasterise(svg)) == {f"{BASE}/field/place/{p.code}" for p in places}
    for place in places:
        assert f">{place.name}</text>" in svg and f">{place.code}</text>" in svg
    assert sheet_svg(places[:1], BASE).count("<g data-code=") == 1


def test_places_codes_refuses_a_bad_format_or_nothing_to_print(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["places", "codes", "--format", "png", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "svg or pdf" in bad.output
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    empty = runner.invoke(app, ["places", "codes", "--out", str(tmp_path / "x.pdf"), "--database-url", url])
    assert empty.exit_code == 1 and "no places of ershili" in empty.output
    pdf = runner.invoke(
        app, ["places", "codes", "--out", str(tmp_path / "s.pdf"), "--from", str(EXAMPLE), "--base-url", BASE]
    )
    assert pdf.exit_code == 0 and (tmp_path / "s.pdf").read_bytes().startswith(b"%PDF")
