"""Reading delimited text files into all-string frames, with errors that name the file and line.

Values are kept as text (no type guessing): an id ``007`` stays ``007``, ``NA`` stays ``NA``. Bytes that are
not UTF-8 are kept as lone surrogates (``surrogateescape``) so that the validation gate can report and
quarantine exactly the rows that hold them instead of rejecting a whole file for one bad byte.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hllm.data.schema import LINE_COLUMN, SOURCE_COLUMN, DataError

# A header longer than this is not a header: typically a file with no line breaks at all.
MAX_HEADER_BYTES = 64 * 1024
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe", "::": "'::'"}
_TOKENIZE_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def check_file(path: str | Path) -> Path:
    """Return ``path`` if it is a non-empty regular file, else raise a `DataError` saying what it is."""
    path = Path(path)
    if not path.exists():
        raise DataError("no such file", path=path)
    if path.is_dir():
        raise DataError("is a directory, expected a file", path=path)
    if not path.is_file():
        raise DataError("is not a regular file", path=path)
    if path.stat().st_size == 0:
        raise DataError("file is empty (0 bytes)", path=path)
    return path


def _first_line(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.readline(MAX_HEADER_BYTES + 1)


def _guess_delimiter(header: str, expected: str) -> str | None:
    for delimiter, name in _OTHER_DELIMITERS.items():
        if delimiter != expected and delimiter in header and expected not in header:
            return name
    return None


def _line_numbers(frame: pd.DataFrame, path: Path, first_data_line: int) -> np.ndarray:
    """1-based line on which each record starts, accounting for quoted values that span lines."""
    n = len(frame)
    with path.open("rb") as handle:
        newlines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 22), b""))
    if newlines <= n + first_data_line - 1:  # no record spans several lines: the fast, common case
        return np.arange(first_data_line, first_data_line + n, dtype=np.int64)
    spans = np.ones(n, dtype=np.int64)
    for column in frame.columns:
        spans += frame[column].str.count("\n").to_numpy(dtype=np.int64)
    starts = np.empty(n, dtype=np.int64)
    if n:
        starts[0] = first_data_line
        starts[1:] = first_data_line + np.cumsum(spans[:-1])
    return starts


def read_delimited(
    path: str | Path,
    *,
    required: Sequence[str],
    sep: str = ",",
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    allow_empty: bool = False,
) -> pd.DataFrame:
    """Read a delimited file as strings, adding ``_source`` and ``_line`` columns.

    Args:
        path: the file.
        required: columns that must be present (after ``names`` is applied, if given).
        sep: the delimiter; ``"::"`` is read as a literal two-character separator (MovieLens ``.dat``).
        names: column names for a file without a header row; ``None`` means the first line is the header.
        encoding: text encoding; undecodable bytes are kept as surrogates for the gate to report.
        allow_empty: accept a file with a header but no rows.

    Returns:
        One row per record, every value a ``str``, column names stripped of spaces and BOMs.

    Raises:
        DataError: missing/empty/unreadable file, wrong delimiter, ragged rows or missing columns.
    """
    path = check_file(path)
    first = _first_line(path)
    if len(first) > MAX_HEADER_BYTES:
        raise DataError(
            f"the first line is over {MAX_HEADER_BYTES // 1024} KiB long; expected "
            + ("a header row" if names is None else "one record per line")
            + f" ({sep.join(required)}). Is this the right file, with line breaks?",
            path=path,
            line=1,
        )
    if not first.strip(b"\r\n\t \xef\xbb\xbf"):
        raise DataError("the first line is blank; expected a header row" if names is None else "blank file", path=path)
    try:
        frame = pd.read_csv(
            path,
            sep=sep if len(sep) == 1 else re.escape(sep),
            engine="c" if len(sep) == 1 else "python",
            header=0 if names is None else None,
            names=list(names) if names is not None else None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            encoding="utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding,
            encoding_errors="surrogateescape",
            quoting=3 if len(sep) > 1 else 0,  # '::' files are unquoted; quotes are part of titles there
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError("no header row and no data", path=path) from exc
    except pd.errors.ParserError as exc:
        match = _TOKENIZE_ERROR.search(str(exc))
        if match:
            expected, line, saw = (int(g) for g in match.groups())
            raise DataError(
                f"record has {saw} fields, expected {expected}; a value containing '{sep}' must be quoted",
                path=path,
                line=line,
            ) from exc
        raise DataError(f"cannot parse as '{sep}'-delimited text: {exc}", path=path) from exc
    except (UnicodeError, LookupError) as exc:
        raise DataError(f"cannot decode as {encoding}: {exc}", path=path) from exc

    frame = frame.fillna("")  # the python engine ('::' files) gives None for the fields of a short row
    frame.columns = [str(c).strip().lstrip("\ufeff").strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        header = first.decode("utf-8", errors="replace").strip()
        guess = _guess_delimiter(header, sep)
        hint = f"; the header looks {guess}-delimited, expected '{sep}'" if guess else ""
        raise DataError(f"missing required column(s) {missing}; found {list(frame.columns)}{hint}", path=path, line=1)
    first_data_line = 2 if names is None else 1
    frame[LINE_COLUMN] = _line_numbers(frame, path, first_data_line)
    # Blank lines (e.g. a trailing empty line) are not records; dropping them keeps line numbers true.
    value_columns = [c for c in frame.columns if c != LINE_COLUMN]
    blank = (frame[value_columns] == "").all(axis=1)
    frame = frame.loc[~blank].reset_index(drop=True)
    if frame.empty and not allow_empty:
        raise DataError("has a header but no data rows", path=path)
    frame[SOURCE_COLUMN] = str(path)
    return frame
