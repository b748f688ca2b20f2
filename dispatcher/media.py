"""Photos as evidence: a content-addressed store behind a small port, and the checks a photo passes first.

* :class:`MediaStore` is the port: ``put`` bytes → their SHA-256 (hex), ``get``, ``exists``, ``info``.
  :class:`LocalMediaStore` keeps them in a directory (``DISPATCHER_MEDIA_DIR``), sharded by the hash's
  first two hex digits, each file written to a temporary name and renamed, so a reader never sees half a
  photo and a failure leaves nothing behind. An S3-compatible adapter would implement the same port (none
  is shipped: see docs/field.md).
* :func:`inspect_photo` decides whether bytes are a photo we keep: the type sniffed from the bytes (JPEG,
  PNG, WebP only), the size, a real decode with Pillow under a bound on pixels (its decompression-bomb
  guard), the EXIF time and GPS, and a JPEG thumbnail. It raises :class:`PhotoRefused` with a message for
  the phone; it does no I/O and is CPU-bound (callers run it in a thread).

Blocking functions here run in whatever thread calls them; the gateway calls them through
``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, ImageOps, UnidentifiedImageError

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
THUMBNAIL_SIDE = 320  # pixels, the long side
DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel phone photo; beyond that a decode would hold too much memory


class MediaVariant(StrEnum):
    ORIGINAL = "original"
    THUMBNAIL = "thumbnail"


@dataclass(frozen=True, slots=True)
class BlobInfo:
    sha256: str
    bytes: int
    thumbnail_bytes: int | None


class MediaStore(Protocol):
    """Content-addressed bytes. Methods block (file or network I/O): call them from a thread."""

    def put(self, data: bytes, *, thumbnail: bytes | None = None) -> str:
        """Store ``data`` (and its thumbnail) under the SHA-256 hex of ``data``; returns it.

        All or nothing: when it raises, nothing new is readable and no partial file is left. Storing the
        same bytes again is harmless (the same address, the same content).
        """
        ...

    def get(self, sha256: str, variant: MediaVariant = MediaVariant.ORIGINAL) -> bytes | None:
        """The bytes stored under ``sha256`` (or its thumbnail), or None."""
        ...

    def exists(self, sha256: str) -> bool:
        """Whether the original is stored (it is written last: its presence means the put completed)."""
        ...

    def info(self, sha256: str) -> BlobInfo | None: ...


def is_media_id(text: str) -> bool:
    return bool(SHA256_PATTERN.match(text))


class LocalMediaStore:
    """:class:`MediaStore` in a local directory: ``<root>/<first 2 hex>/<sha256>`` and ``<sha256>.thumb.jpg``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str, variant: MediaVariant = MediaVariant.ORIGINAL) -> Path:
        if not is_media_id(sha256):
            raise ValueError(f"not a media id (64 lowercase hex digits): {sha256!r}")
        name = sha256 if variant is MediaVariant.ORIGINAL else f"{sha256}.thumb.jpg"
        return self.root / sha256[:2] / name

    def put(self, data: bytes, *, thumbnail: bytes | None = None) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        shard = self.root / sha256[:2]
        shard.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        try:
            # The thumbnail first, the original last: ``exists`` (the original) means both are there.
            if thumbnail is not None:
                written.append(_write_atomically(self._path(sha256, MediaVariant.THUMBNAIL), thumbnail))
            original = self._path(sha256)
            if not original.exists():
                written.append(_write_atomically(original, data))
        except BaseException:
            for path in written:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        return sha256

    def get(self, sha256: str, variant: MediaVariant = MediaVariant.ORIGINAL) -> bytes | None:
        if not self.exists(sha256):
            return None
        try:
            return self._path(sha256, variant).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, sha256: str) -> bool:
        return is_media_id(sha256) and self._path(sha256).is_file()

    def info(self, sha256: str) -> BlobInfo | None:
        if not self.exists(sha256):
            return None
        thumb = self._path(sha256, MediaVariant.THUMBNAIL)
        return BlobInfo(
            sha256=sha256,
            bytes=self._path(sha256).stat().st_size,
            thumbnail_bytes=thumb.stat().st_size if thumb.is_file() else None,
        )


def _write_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it into place."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


# -- what a photo must be --------------------------------------------------------------------------


class PhotoRefused(ValueError):
    """Bytes we do not keep as a photo; ``status`` is the HTTP answer (413, 415 or 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


ACCEPTED = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
ACCEPTED_TEXT = "JPEG, PNG or WebP (HEIC photos: convert them to JPEG on the phone first)"


def sniff(data: bytes) -> str | None:
    """The content type the bytes themselves say (whatever the client claimed), or None: not one we take."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _is_heic(data: bytes) -> bool:
    return len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc")


@dataclass(frozen=True, slots=True)
class Photo:
    """A photo that passed :func:`inspect_photo`: what the ``media`` row records, and its thumbnail."""

    sha256: str
    content_type: str
    size: int  # bytes
    width: int
    height: int
    exif_taken_at: str | None
    exif_lat: float | None
    exif_lon: float | None
    thumbnail: bytes


def inspect_photo(data: bytes, *, max_bytes: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """Check ``data`` and describe it; raises :class:`PhotoRefused` (413 too large, 415 not a type we take,
    422 not decodable or too many pixels). Pure: no I/O, no clock."""
    if len(data) > max_bytes:
        raise PhotoRefused(413, f"the photo is {len(data)} bytes; at most {max_bytes} are taken")
    content_type = sniff(data)
    if content_type is None:
        heic = " (this is HEIC)" if _is_heic(data) else ""
        raise PhotoRefused(415, f"not a photo type taken here{heic}: send {ACCEPTED_TEXT}")
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice it, and raises beyond: both are refusals here. Its other
            # warnings (a damaged EXIF tag skipped) change nothing of what is kept.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format != ACCEPTED[content_type]:
                    raise PhotoRefused(422, f"the bytes start as {content_type} but decode as {image.format}")
                width, height = image.size
                if width * height > max_pixels:
                    raise PhotoRefused(
                        422, f"the photo is {width}×{height} pixels; at most {max_pixels} pixels are taken"
                    )
                image.load()  # a truncated or corrupt body fails here, not later
                exif_taken_at, exif_lat, exif_lon = _exif(image)
                thumbnail = _thumbnail(image)
    except PhotoRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoRefused(422, f"the photo has too many pixels to decode safely: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise PhotoRefused(422, f"the {content_type} could not be decoded: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a decoder's own failure on hostile bytes (struct.error, IndexError...)
        raise PhotoRefused(422, f"the {content_type} could not be decoded ({type(exc).__name__})") from None
    return Photo(
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=content_type,
        size=len(data),
        width=width,
        height=height,
        exif_taken_at=exif_taken_at,
        exif_lat=exif_lat,
        exif_lon=exif_lon,
        thumbnail=thumbnail,
    )


def _thumbnail(image: Image.Image) -> bytes:
    small = ImageOps.exif_transpose(image.copy()) or image.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    if small.mode not in ("RGB", "L"):
        rgba = small.convert("RGBA")
        small = Image.new("RGB", rgba.size, (255, 255, 255))
        small.paste(rgba, mask=rgba.getchannel("A"))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=80)
    return out.getvalue()


_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL, _DATETIME = 36867, 36881, 306


def _exif(image: Image.Image) -> tuple[str | None, float | None, float | None]:
    """(taken at as the camera wrote it, in ISO form with its offset when given; latitude; longitude)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged tag is skipped (Pillow warns): the photo still counts
            exif = image.getexif()
            sub = exif.get_ifd(_EXIF_IFD)
            gps = exif.get_ifd(_GPS_IFD)
    except Exception:  # noqa: BLE001 - a broken EXIF block loses the EXIF, not the photo
        return None, None, None
    taken = _exif_time(sub.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME), sub.get(_OFFSET_TIME_ORIGINAL))
    lat = _degrees(gps.get(2), gps.get(1), "S")
    lon = _degrees(gps.get(4), gps.get(3), "W")
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        lat = lon = None
    return taken, lat, lon


def _exif_time(value: Any, offset: Any) -> str | None:
    if not isinstance(value, str):
        return None
    match = re.match(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})", value.strip())
    if match is None:
        return None
    y, mo, d, h, mi, s = match.groups()
    text = f"{y}-{mo}-{d}T{h}:{mi}:{s}"
    if isinstance(offset, str) and re.match(r"^[+-]\d{2}:\d{2}$", offset.strip()):
        text += offset.strip()
    return text


def _degrees(value: Any, ref: Any, negative: str) -> float | None:
    try:
        d, m, s = (float(part) for part in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    degrees = d + m / 60 + s / 3600
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    return -degrees if isinstance(ref, str) and ref.strip().upper() == negative else degrees
