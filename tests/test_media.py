"""The photo store (dispatcher/media.py): sniffing, size, the pixel bound, EXIF, thumbnails, atomic puts."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from dispatcher.media import (
    THUMBNAIL_SIDE,
    LocalMediaStore,
    MediaVariant,
    PhotoRefused,
    inspect_photo,
    sniff,
)

MB = 1024 * 1024


def image_bytes(
    fmt: str, size: tuple[int, int] = (640, 480), exif: Image.Exif | None = None, mode: str = "RGB"
) -> bytes:
    image = Image.new(mode, size, (200, 30, 30) if mode == "RGB" else (200, 30, 30, 128))
    out = io.BytesIO()
    if exif is not None:
        image.save(out, fmt, exif=exif)
    else:
        image.save(out, fmt)
    return out.getvalue()


def exif_with_time_and_gps() -> Image.Exif:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2026:06:12 08:15:30"  # DateTimeOriginal
    exif.get_ifd(0x8769)[36881] = "+08:00"  # OffsetTimeOriginal
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (28.0, 50.0, 52.8)  # 28.848
    gps[3] = "E"
    gps[4] = (118.0, 54.0, 43.2)  # 118.912
    return exif


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_the_three_types_are_sniffed_from_the_bytes_and_thumbnailed(fmt: str, content_type: str) -> None:
    data = image_bytes(fmt, (1280, 960))
    assert sniff(data) == content_type
    photo = inspect_photo(data, max_bytes=10 * MB)
    assert (photo.content_type, photo.width, photo.height, photo.size) == (content_type, 1280, 960, len(data))
    assert photo.sha256 == hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(photo.thumbnail)) as thumb:
        assert thumb.format == "JPEG"
        assert thumb.size == (THUMBNAIL_SIDE, 240)


def test_a_transparent_png_gets_a_white_backed_thumbnail() -> None:
    photo = inspect_photo(image_bytes("PNG", (100, 50), mode="RGBA"), max_bytes=MB)
    with Image.open(io.BytesIO(photo.thumbnail)) as thumb:
        assert thumb.mode == "RGB" and thumb.size == (100, 50)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"GIF89a" + b"\0" * 100, "JPEG, PNG or WebP"),
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64, "this is HEIC"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "JPEG, PNG or WebP"),
        (b"", "JPEG, PNG or WebP"),
    ],
)
def test_other_types_are_refused_with_415_naming_the_accepted_ones(data: bytes, named: str) -> None:
    with pytest.raises(PhotoRefused) as refused:
        inspect_photo(data, max_bytes=MB)
    assert refused.value.status == 415
    assert named in str(refused.value)


def test_a_file_named_jpeg_that_is_a_png_is_a_png() -> None:
    # What the bytes say wins over names: the sniffed type is recorded.
    assert inspect_photo(image_bytes("PNG"), max_bytes=MB).content_type == "image/png"


def test_too_large_is_413() -> None:
    data = image_bytes("PNG", (300, 300))
    with pytest.raises(PhotoRefused) as refused:
        inspect_photo(data, max_bytes=len(data) - 1)
    assert refused.value.status == 413
    assert inspect_photo(data, max_bytes=len(data)).size == len(data)


def test_a_jpeg_header_on_garbage_or_a_truncated_jpeg_is_422() -> None:
    with pytest.raises(PhotoRefused) as garbage:
        inspect_photo(b"\xff\xd8\xff\xe0" + os.urandom(2000), max_bytes=MB)
    assert garbage.value.status == 422
    whole = image_bytes("PNG", (400, 400))
    with pytest.raises(PhotoRefused) as truncated:
        inspect_photo(whole[: len(whole) // 2], max_bytes=MB)
    assert truncated.value.status == 422


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims ``width`` × ``height`` pixels (the CRC recomputed)."""
    data = bytearray(image_bytes("PNG", (1, 1)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def test_a_decompression_bomb_is_refused_before_it_is_decoded() -> None:
    bomb = _png_claiming(100_000, 100_000)  # ten gigapixels in a few dozen bytes
    assert len(bomb) < 200
    with pytest.raises(PhotoRefused) as refused:
        inspect_photo(bomb, max_bytes=MB)
    assert refused.value.status == 422
    assert "pixels" in str(refused.value)


def test_the_pixel_bound_is_ours_below_pillows() -> None:
    with pytest.raises(PhotoRefused) as refused:
        inspect_photo(image_bytes("PNG", (200, 100)), max_bytes=MB, max_pixels=19_999)
    assert refused.value.status == 422 and "at most 19999 pixels" in str(refused.value)
    assert inspect_photo(image_bytes("PNG", (200, 100)), max_bytes=MB, max_pixels=20_000).width == 200


def test_exif_time_and_gps_are_read() -> None:
    photo = inspect_photo(image_bytes("JPEG", exif=exif_with_time_and_gps()), max_bytes=MB)
    assert photo.exif_taken_at == "2026-06-12T08:15:30+08:00"
    assert photo.exif_lat == pytest.approx(28.848)
    assert photo.exif_lon == pytest.approx(118.912)


def test_southern_and_western_exif_positions_are_negative_and_no_exif_is_none() -> None:
    exif = exif_with_time_and_gps()
    exif.get_ifd(0x8825)[1] = "S"
    exif.get_ifd(0x8825)[3] = "W"
    photo = inspect_photo(image_bytes("JPEG", exif=exif), max_bytes=MB)
    assert photo.exif_lat == pytest.approx(-28.848) and photo.exif_lon == pytest.approx(-118.912)
    bare = inspect_photo(image_bytes("JPEG"), max_bytes=MB)
    assert (bare.exif_taken_at, bare.exif_lat, bare.exif_lon) == (None, None, None)


def test_the_local_store_is_content_addressed_and_sharded(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    data = image_bytes("JPEG")
    sha = store.put(data, thumbnail=b"thumb")
    assert sha == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "media" / sha[:2] / sha).read_bytes() == data
    assert store.exists(sha)
    assert store.get(sha) == data
    assert store.get(sha, MediaVariant.THUMBNAIL) == b"thumb"
    info = store.info(sha)
    assert info is not None and (info.bytes, info.thumbnail_bytes) == (len(data), 5)
    assert store.put(data, thumbnail=b"thumb") == sha  # the same bytes again: the same address
    other = "0" * 64
    assert not store.exists(other) and store.get(other) is None and store.info(other) is None
    assert not store.exists("../../etc/passwd")


def test_a_failure_mid_put_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalMediaStore(tmp_path / "media")
    data = image_bytes("JPEG")
    sha = hashlib.sha256(data).hexdigest()
    real_replace = os.replace
    calls = []

    def failing_replace(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 2:  # the thumbnail went in; the original's rename fails (a full disk, a crash)
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        store.put(data, thumbnail=b"thumb")
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(calls) == 2
    assert not store.exists(sha)
    assert [p for p in (tmp_path / "media").rglob("*") if p.is_file()] == []  # no temporary, no thumbnail
    assert store.put(data, thumbnail=b"thumb") == sha and store.exists(sha)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_spoilt_photos_are_refused_never_raised_past_the_check(fmt: str) -> None:
    import random

    chance = random.Random(f"spoilt-{fmt}")  # deterministic
    whole = image_bytes(fmt, (64, 48), exif=exif_with_time_and_gps() if fmt == "JPEG" else None)
    outcomes: set[str | int] = set()
    for _ in range(150):
        spoilt = bytearray(whole)
        for _ in range(chance.randint(1, 12)):
            spoilt[chance.randrange(len(spoilt))] = chance.randrange(256)
        cut = spoilt[: chance.randint(len(spoilt) // 2, len(spoilt))]
        try:
            inspect_photo(bytes(cut), max_bytes=MB)
            outcomes.add("kept")
        except PhotoRefused as refused:
            assert refused.status in (415, 422)
            outcomes.add(refused.status)
    assert outcomes - {"kept"}  # some were refused: the check was exercised
