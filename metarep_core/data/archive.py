"""Reading user-supplied images safely, from a ``.zip`` (bytes or path) or a directory.

A zip is read in memory, never extracted to disk, and is checked *before* anything
is decompressed: entry names that escape the archive (``../``, absolute paths, drive
letters) are refused, and so are archives whose declared uncompressed size passes a
cap (in total or per file) or whose compression ratio is suspicious (a zip bomb).
While reading, bytes are counted again, so an entry that lies about its size in the
header is stopped at the cap rather than trusted.
"""
from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import MetaRepError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on what a user archive may hold (bytes are uncompressed sizes)."""

    max_total_bytes: int = 200 * 2**20
    max_file_bytes: int = 20 * 2**20
    # A file that big and that compressible is not an image: real images compress
    # a little (PNG/JPEG are already compressed), zeros compress ~1000x.
    max_ratio: float = 100.0
    ratio_min_bytes: int = 2**20
    max_entries: int = 200_000


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} KB"


def _check_entry_name(name: str) -> PurePosixPath:
    """The entry's path inside the archive, or MetaRepError if it would escape it."""
    posix = name.replace("\\", "/")
    path = PurePosixPath(posix)
    if (posix.startswith("/") or (len(posix) > 1 and posix[1] == ":")
            or any(part == ".." for part in path.parts)):
        raise MetaRepError(
            f"the zip entry {name!r} points outside the archive (absolute path or '..'); "
            "only relative paths inside the archive are allowed")
    return path


def _hidden(parts: tuple[str, ...]) -> bool:
    # macOS adds __MACOSX/ and ._* resource forks, Finder .DS_Store files.
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def read_zip_images(source: bytes | str | os.PathLike,
                    limits: ArchiveLimits = ArchiveLimits()) -> tuple[list[tuple[tuple[str, ...], bytes]], int]:
    """Image files of a zip: ([(path parts, bytes), ...], number of non-image files skipped)."""
    label = "the uploaded file" if isinstance(source, (bytes, bytearray)) else repr(str(source))
    try:
        fh = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
    except OSError as exc:
        raise MetaRepError(f"cannot read {label}: {exc.strerror}") from None
    try:
        try:
            zf = zipfile.ZipFile(fh)
        except zipfile.BadZipFile:
            raise MetaRepError(f"{label} is not a zip file (or is corrupt); upload a .zip of "
                               "class folders") from None
        with zf:
            infos = zf.infolist()
            if len(infos) > limits.max_entries:
                raise MetaRepError(f"{label} has {len(infos)} entries; at most "
                                   f"{limits.max_entries} are allowed")
            wanted, skipped, total = [], 0, 0
            for info in infos:
                path = _check_entry_name(info.filename)  # every entry, even skipped ones
                if info.is_dir() or _hidden(path.parts):
                    continue
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    skipped += 1
                    continue
                _check_sizes(info, limits)
                total += info.file_size
                wanted.append((path.parts, info))
            if total > limits.max_total_bytes:
                raise MetaRepError(
                    f"{label} would decompress to {_mb(total)} of images; the cap is "
                    f"{_mb(limits.max_total_bytes)} (possible zip bomb)")
            out, budget = [], limits.max_total_bytes
            for parts, info in wanted:
                data = _read_capped(zf, info, min(limits.max_file_bytes, budget))
                budget -= len(data)
                out.append((parts, data))
            return out, skipped
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise MetaRepError(f"{label} is a corrupt or unsupported zip file ({exc})") from None
    except RuntimeError as exc:  # encrypted entries
        raise MetaRepError(f"{label} cannot be read: {exc}") from None
    finally:
        fh.close()


def _check_sizes(info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    if info.file_size > limits.max_file_bytes:
        raise MetaRepError(
            f"the zip entry {info.filename!r} is {_mb(info.file_size)} uncompressed; the cap per "
            f"file is {_mb(limits.max_file_bytes)}")
    if (info.file_size >= limits.ratio_min_bytes
            and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
        raise MetaRepError(
            f"the zip entry {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}x "
            f"(to {_mb(info.file_size)}); more than {limits.max_ratio:.0f}x is refused as a "
            "possible zip bomb")


def _read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """The entry's bytes, counting them: stop at ``cap`` whatever the header claimed."""
    chunks, n = [], 0
    with zf.open(info) as f:
        while chunk := f.read(1 << 16):
            n += len(chunk)
            if n > cap or n > info.file_size:
                raise MetaRepError(
                    f"the zip entry {info.filename!r} decompresses past its declared size or "
                    f"the cap ({_mb(cap)}); refused as a possible zip bomb")
            chunks.append(chunk)
    return b"".join(chunks)


def read_dir_images(root: Path) -> tuple[list[tuple[tuple[str, ...], Path]], int]:
    """Image files under a directory: ([(path parts, file path), ...], non-image files skipped).

    Symbolic links are not followed out of the directory (a link is read only if it
    resolves inside ``root``).
    """
    root_resolved = root.resolve()
    out, skipped = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped += 1
                continue
            if not p.resolve().is_relative_to(root_resolved):
                raise MetaRepError(f"the file {str(p)!r} links outside the folder {str(root)!r}")
            out.append((p.relative_to(root).parts, p))
    return out, skipped
