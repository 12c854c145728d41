"""Reading user-supplied images safely, from a ``.zip`` (bytes or path) or a directory.

A zip is read in memory, never extracted to disk, and is checked *before* anything
is decompressed: entry names that escape the archive (``../``, absolute paths, drive
letters) are refused, and so are archives whose declared uncompressed size passes a
cap (in total or per file) or whose compression ratio is suspicious (a zip bomb).
While reading, bytes are counted again, so an entry that lies about its size in the
header is stopped at the cap rather than trusted. Entries whose byte ranges overlap
(one local header listed many times: an "overlapped" zip bomb) are refused, and so
is an archive or folder holding more than ``max_images`` image files. From a
directory only regular files are read: a FIFO or a device named ``x.png`` is
refused, never opened (reading it would block or never end).
"""
from __future__ import annotations

import io
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import MetaRepError
from ..limits import MAX_IMAGES

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
    max_images: int = MAX_IMAGES


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
    if not isinstance(source, (bytes, bytearray)):
        check_regular_or_dir(Path(source), "dataset zip")
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
            _check_no_overlap(infos, label)
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
            check_image_count(len(wanted), label, limits)
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


def check_image_count(n: int, label: str, limits: ArchiveLimits) -> None:
    if n > limits.max_images:
        raise MetaRepError(f"{label} holds {n:,} images; at most {limits.max_images:,} images "
                           "are allowed in one dataset")


def check_regular_or_dir(path: Path, what: str) -> os.stat_result:
    """``path``'s stat, refusing anything but a regular file or a directory: a FIFO
    would block the reader and a device (``/dev/zero``) never ends."""
    try:
        st = path.stat()
    except OSError:
        raise MetaRepError(f"{what} {str(path)!r} does not exist") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise MetaRepError(f"{what} {str(path)!r} is not a regular file or a directory (a FIFO, "
                           "socket or device); only regular files and directories are read")
    return st


def _check_no_overlap(infos: list[zipfile.ZipInfo], label: str) -> None:
    """Refuse entries whose byte ranges overlap: in a well-formed zip each entry's
    local header and data lie after the previous entry's (30 bytes of fixed header
    plus the compressed data is a lower bound on its length)."""
    previous = None
    for info in sorted(infos, key=lambda i: i.header_offset):
        if previous is not None and info.header_offset < previous.header_offset + 30 + previous.compress_size:
            raise MetaRepError(
                f"{label} has overlapping entries ({previous.filename!r} and {info.filename!r} share "
                "bytes); refused as a possible zip bomb")
        previous = info


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


def read_dir_images(root: Path, limits: ArchiveLimits = ArchiveLimits()
                    ) -> tuple[list[tuple[tuple[str, ...], Path]], int]:
    """Image files under a directory: ([(path parts, file path), ...], non-image files skipped).

    Symbolic links are not followed out of the directory (a link is read only if it
    resolves inside ``root``); only regular files are read; the walk stops as soon
    as more than ``limits.max_images`` images are found.
    """
    root_resolved = root.resolve()
    label = repr(str(root))
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
            try:
                regular = stat.S_ISREG(p.stat().st_mode)
            except OSError:
                regular = False  # a dangling link
            if not regular:
                raise MetaRepError(f"the file {'/'.join(p.relative_to(root).parts)!r} in {label} is not a "
                                   "regular file (a FIFO, socket, device or broken link); only regular "
                                   "files are read")
            out.append((p.relative_to(root).parts, p))
            if len(out) > limits.max_images:
                raise MetaRepError(f"{label} holds more than {limits.max_images:,} images; at most "
                                   f"{limits.max_images:,} images are allowed in one dataset")
    return out, skipped
