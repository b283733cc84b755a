"""Downloading public datasets by name: fetched once, checked against a pinned MD5, unzipped safely.

The archive is streamed to ``<name>.zip.part`` and renamed only once its checksum matches, so an interrupted
or corrupted download never looks finished. A second call finds the archive and skips the network.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hllm.data.schema import DataError

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, total_bytes_or_None)`` after each chunk."""

CHUNK_BYTES = 1 << 20
USER_AGENT = "hllm-dataset-downloader/0.1 (+python urllib)"
# Top-level names that archivers add and that are not part of a dataset.
_ARCHIVER_LITTER = frozenset({"__MACOSX"})


@dataclass(frozen=True)
class DatasetSource:
    """A downloadable dataset archive.

    Attributes:
        name: the name users pass (``movielens-1m``).
        url: where the zip archive lives.
        md5: the published MD5 of the archive, lowercase hex.
        description: one line for listings.
    """

    name: str
    url: str
    md5: str
    description: str


_GROUPLENS = "https://files.grouplens.org/datasets/movielens"
DATASETS: dict[str, DatasetSource] = {
    source.name: source
    for source in (
        DatasetSource(
            "movielens-100k",
            f"{_GROUPLENS}/ml-100k.zip",
            "0e33842e24a9c977be4e0107933c0723",
            "MovieLens 100K (1998): 100,000 ratings, 943 users, 1,682 movies; ~5 MB",
        ),
        DatasetSource(
            "movielens-1m",
            f"{_GROUPLENS}/ml-1m.zip",
            "c4d9eecfca2ab87c1945afe126590906",
            "MovieLens 1M (2003): 1,000,209 ratings, 6,040 users, 3,706 rated movies; ~6 MB",
        ),
        DatasetSource(
            "movielens-25m",
            f"{_GROUPLENS}/ml-25m.zip",
            "6b51fb2759a8657d3bfcbfc42b592ada",
            "MovieLens 25M (2019): 25,000,095 ratings, 162,541 users, 62,423 movies; ~250 MB",
        ),
    )
}


def get_dataset_source(name: str) -> DatasetSource:
    """Return the registry entry for ``name``, or raise a `DataError` listing the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def file_md5(path: str | Path) -> str:
    """Return the lowercase hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_dataset(
    name: str,
    out_dir: str | Path,
    *,
    url: str | None = None,
    md5: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download, verify and unzip a registered dataset, reusing an archive already present.

    Args:
        name: a key of `DATASETS`.
        out_dir: folder for the archive and the extracted files; created if missing.
        url: fetch from here instead of the registered URL (a mirror).
        md5: expected MD5 instead of the registered one (pair it with ``url``).
        progress: optional ``callable(bytes_done, total_or_None)``, e.g. to drive a progress bar.
        timeout: seconds to wait for the server on connect and on each read.

    Returns:
        The folder holding the dataset files, e.g. ``out_dir/ml-1m`` (``out_dir`` itself when the archive has
        no single top-level folder).

    Raises:
        DataError: unknown name, network or HTTP failure, checksum mismatch, or an unsafe or broken archive.
    """
    source = get_dataset_source(name)
    url = url or source.url
    expected = (md5 or source.md5).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{32}", expected):
        raise DataError(f"expected md5 must be 32 hex digits, got {expected!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    archive = out / _archive_name(url, name)
    if archive.is_file():
        actual = file_md5(archive)
        if actual == expected:
            logger.info("%s already downloaded (md5 %s), skipping the download", archive, actual)
            return extract_zip(archive, out)
        logger.warning("%s has md5 %s, expected %s: downloading it again", archive, actual, expected)
    _fetch(url, archive, expected, progress=progress, timeout=timeout)
    return extract_zip(archive, out)


def _archive_name(url: str, name: str) -> str:
    base = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not base or base in (".", "..") or not base.lower().endswith(".zip"):
        return f"{name}.zip"
    return base


def _fetch(url: str, archive: Path, expected: str, *, progress: ProgressCallback | None, timeout: float) -> None:
    """Stream ``url`` to ``archive`` through a ``.part`` file, checking the MD5 before the rename."""
    part = archive.with_name(archive.name + ".part")
    logger.info("downloading %s to %s", url, archive)
    try:
        actual, size = _stream(url, part, progress=progress, timeout=timeout)
    except BaseException as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, (OSError, http.client.HTTPException)):  # URLError and HTTPError are OSErrors
            raise DataError(f"download failed: {_describe(exc)}", path=url) from exc
        raise
    if actual != expected:
        part.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch: expected md5 {expected}, got {actual} ({size:,} bytes); the download is "
            "corrupt or the file on the server changed, so it was deleted",
            path=url,
        )
    os.replace(part, archive)
    logger.info("downloaded %s (%d bytes, md5 %s)", archive, size, actual)


def _stream(url: str, part: Path, *, progress: ProgressCallback | None, timeout: float) -> tuple[str, int]:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    digest = hashlib.md5(usedforsecurity=False)
    done = 0
    with urllib.request.urlopen(request, timeout=timeout) as response, part.open("wb") as handle:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if progress is not None:
            progress(0, total)
        while chunk := response.read(CHUNK_BYTES):
            handle.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if total is not None and done != total:
        raise http.client.IncompleteRead(b"", total - done)
    return digest.hexdigest(), done


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot reach the server ({exc.reason})"
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed early, {exc.expected} bytes missing"
    if isinstance(exc, TimeoutError):
        return "timed out waiting for the server"
    return f"{type(exc).__name__}: {exc}"


def _member_parts(name: str, archive: Path) -> tuple[str, ...]:
    """Path parts of a zip member, or a `DataError` if it could land outside the extraction folder."""
    normalized = name.replace("\\", "/")
    parts = PurePosixPath(normalized).parts
    if normalized.startswith("/") or re.match(r"[A-Za-z]:", normalized) or ".." in parts:
        raise DataError(
            f"unsafe member path {name!r} (absolute or containing '..'); refusing to extract the archive",
            path=archive,
        )
    return parts


def extract_zip(archive: str | Path, out_dir: str | Path) -> Path:
    """Extract ``archive`` into ``out_dir`` after checking every member path; skip files already extracted.

    Args:
        archive: the zip file.
        out_dir: where to extract.

    Returns:
        ``out_dir/<top>`` when every member lies under one top-level folder ``<top>``, else ``out_dir``.

    Raises:
        DataError: the file is not a valid zip, or a member path is absolute or contains ``..``.
    """
    archive, out = Path(archive), Path(out_dir)
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            parts = [_member_parts(info.filename, archive) for info in members]
            root = out.resolve()
            for info in members:  # belt and braces: what the OS makes of the name must stay inside out_dir
                if not (out / info.filename).resolve().is_relative_to(root):
                    raise DataError(f"unsafe member path {info.filename!r}; refusing to extract", path=archive)
            files = [info for info in members if not info.is_dir()]
            if all(_already_extracted(out, info) for info in files):
                logger.info("%s already extracted in %s", archive, out)
            else:
                logger.info("extracting %s (%d files) to %s", archive, len(files), out)
                bundle.extractall(out)
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a valid zip archive: {exc}", path=archive) from exc
    tops = {p[0] for p in parts if p and p[0] not in _ARCHIVER_LITTER}
    nested = any(len(p) > 1 for p in parts if p and p[0] in tops)
    if len(tops) == 1 and nested:
        return out / tops.pop()
    return out


def _already_extracted(out: Path, info: zipfile.ZipInfo) -> bool:
    target = out / info.filename
    return target.is_file() and target.stat().st_size == info.file_size
