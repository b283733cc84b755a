"""Reading the MovieLens releases (GroupLens) as raw interaction and item tables.

Three on-disk forms are recognised by the files in a folder:

- ``movielens-csv`` (ml-latest, ml-latest-small, ml-20m, ml-25m): ``ratings.csv``, ``movies.csv`` with a
  header row and ``|``-separated genres, optional ``tags.csv`` of free-text user tags;
- ``movielens-dat`` (ml-1m): ``ratings.dat`` and ``movies.dat``, ``::``-separated, no header, ISO-8859-1;
- ``movielens-100k`` (ml-100k): ``u.data`` (tab-separated), ``u.item`` (``|``-separated, ISO-8859-1, genres as
  19 binary flags) and ``u.genre`` naming the flags.

Every rating is kept as an interaction (implicit feedback), with the rating itself as an extra column. Values
stay text; the validation gate parses them and reports bad rows with their file and line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hllm.data.csvio import check_file, read_delimited
from hllm.data.schema import LINE_COLUMN, SOURCE_COLUMN, DataError, RawTables

logger = logging.getLogger(__name__)

FORMAT_CSV = "movielens-csv"
FORMAT_DAT = "movielens-dat"
FORMAT_100K = "movielens-100k"

# The files that identify each form, checked in this order, and the releases that ship it (for messages).
FORM_FILES: dict[str, tuple[str, ...]] = {
    FORMAT_CSV: ("ratings.csv", "movies.csv"),
    FORMAT_DAT: ("ratings.dat", "movies.dat"),
    FORMAT_100K: ("u.data", "u.item"),
}
_FORM_RELEASES = {
    FORMAT_CSV: "ml-latest-small, ml-25m",
    FORMAT_DAT: "ml-1m",
    FORMAT_100K: "ml-100k",
}

# ml-100k genre flag order, used when u.genre is absent (from the ml-100k README).
ML100K_GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# Placeholders meaning "no genre": they carry no text for the item tower, so they become an empty tag.
NO_GENRE = frozenset({"(no genres listed)", "unknown"})
MAX_USER_TAGS = 10
TAG_SEPARATOR = ", "

_INTERACTION_OUT = ("user_id", "item_id", "timestamp", "rating", SOURCE_COLUMN, LINE_COLUMN)
_ML100K_ITEM_FIELDS = ("item_id", "title", "release_date", "video_release_date", "imdb_url")


def detect_movielens_form(src: str | Path) -> str | None:
    """Return the MovieLens form of the files in ``src`` (``"movielens-csv"``, ...), or ``None`` if none fits."""
    folder = Path(src)
    if not folder.is_dir():
        return None
    for form, files in FORM_FILES.items():
        if all((folder / name).is_file() for name in files):
            return form
    return None


def read_movielens(src: str | Path) -> RawTables:
    """Read a MovieLens release folder in any of its three forms.

    Args:
        src: the folder holding the release files (e.g. ``ml-1m/``), not the zip.

    Returns:
        ``RawTables`` whose interactions hold ``user_id``, ``item_id``, ``timestamp``, ``rating`` and whose
        items hold ``item_id``, ``title``, ``tag`` (genres joined with ``", "``), ``description`` (empty) and,
        for the CSV form, ``user_tags``; both in file order with ``_source`` and ``_line`` columns. Ratings of
        movies missing from the movies file are kept as they are, for the validation gate to report.

    Raises:
        DataError: the folder is missing or matches no form, or a file cannot be parsed.
    """
    folder = Path(src)
    form = detect_movielens_form(folder)
    if form is None:
        raise _no_form_error(folder)
    if form == FORMAT_CSV:
        interactions, items = _read_csv_form(folder)
    elif form == FORMAT_DAT:
        interactions, items = _read_dat_form(folder)
    else:
        interactions, items = _read_100k_form(folder)
    logger.info(
        "read %s (%s): %d ratings by %d users, %d movies",
        folder,
        form,
        len(interactions),
        interactions["user_id"].nunique(),
        len(items),
    )
    return RawTables(interactions=interactions, items=items, source=str(folder), format=form)


def _no_form_error(folder: Path) -> DataError:
    if not folder.exists():
        return DataError("no such folder", path=folder)
    if not folder.is_dir():
        return DataError("is not a folder; expected a MovieLens release folder", path=folder)
    expected = "; ".join(f"{' + '.join(files)} ({_FORM_RELEASES[form]})" for form, files in FORM_FILES.items())
    found = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(found[:12]) + (f", ... ({len(found)} entries)" if len(found) > 12 else "")
    message = f"not a MovieLens folder: expected {expected}; found {shown or 'nothing'}"
    nested = [p.name for p in sorted(folder.iterdir()) if detect_movielens_form(p) is not None]
    if nested:
        message += f". Did you mean the subfolder {nested[0]!r}?"
    return DataError(message, path=folder)


def _sniff_encoding(path: Path) -> str:
    """UTF-8 when the whole file decodes as UTF-8, else ISO-8859-1 (the encoding of ml-1m and ml-100k).

    Text that is not ASCII and still decodes as UTF-8 is almost never Latin-1, so this reads the official
    Latin-1 files right and does not garble a file someone re-saved as UTF-8.
    """
    try:
        check_file(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def _interactions(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[:, list(_INTERACTION_OUT)].reset_index(drop=True)


def _items(item_id: pd.Series, title: pd.Series, tag: pd.Series, frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": item_id.to_numpy(),
            "title": title.to_numpy(),
            "tag": tag.to_numpy(),
            "description": "",
            SOURCE_COLUMN: frame[SOURCE_COLUMN].to_numpy(),
            LINE_COLUMN: frame[LINE_COLUMN].to_numpy(),
        }
    )


def genres_to_tag(genres: pd.Series, sep: str = "|") -> pd.Series:
    """Turn ``Adventure|Comedy`` into ``Adventure, Comedy``; placeholders like ``(no genres listed)`` become ``""``."""
    return genres.str.split(sep, regex=False).map(
        lambda names: TAG_SEPARATOR.join(n.strip() for n in names if n.strip() and n.strip() not in NO_GENRE)
    )


def _read_csv_form(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    ratings = read_delimited(folder / "ratings.csv", required=("userId", "movieId", "rating", "timestamp"))
    ratings = ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
    movies = read_delimited(folder / "movies.csv", required=("movieId", "title", "genres"))
    items = _items(movies["movieId"], movies["title"], genres_to_tag(movies["genres"]), movies)
    tags_path = folder / "tags.csv"
    user_tags = pd.Series(dtype=object)
    if tags_path.exists():
        tags = read_delimited(tags_path, required=("movieId", "tag"), allow_empty=True)
        user_tags = aggregate_user_tags(tags["movieId"], tags["tag"])
    items.insert(4, "user_tags", items["item_id"].map(user_tags).fillna("").astype(str))
    return _interactions(ratings), items


def aggregate_user_tags(item_ids: pd.Series, tags: pd.Series, limit: int = MAX_USER_TAGS) -> pd.Series:
    """Distinct user tags per item, most frequent first, at most ``limit``, joined with ``", "``.

    Tags are compared case-insensitively after trimming spaces (``Pixar`` and ``pixar`` count as one) and
    shown in their first spelling; ties keep the order of first appearance in the file.

    Args:
        item_ids: the item of each tag application.
        tags: the tag text of each application.
        limit: the most tags kept per item.

    Returns:
        The joined tags, indexed by item id, for items with at least one non-blank tag.
    """
    text = tags.astype(str).str.strip().to_numpy()
    keep = text != ""
    frame = pd.DataFrame(
        {
            "item": item_ids.astype(str).to_numpy()[keep],
            "tag": text[keep],
            "key": pd.Series(text[keep], dtype=object).str.casefold().to_numpy(),
            "order": np.arange(int(keep.sum())),
        }
    )
    if frame.empty:
        return pd.Series(dtype=object)
    counted = (
        frame.groupby(["item", "key"], sort=False)
        .agg(tag=("tag", "first"), count=("tag", "size"), order=("order", "min"))
        .reset_index()
        .sort_values(["item", "count", "order"], ascending=[True, False, True], kind="stable")
    )
    top = counted.groupby("item", sort=False).head(limit)
    return top.groupby("item", sort=False)["tag"].agg(TAG_SEPARATOR.join)


def _read_dat_form(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    ratings = read_delimited(
        folder / "ratings.dat",
        required=("user_id", "item_id", "rating", "timestamp"),
        sep="::",
        names=("user_id", "item_id", "rating", "timestamp"),
        encoding="latin-1",
    )
    movies_path = folder / "movies.dat"
    movies = read_delimited(
        movies_path,
        required=("item_id", "title", "genres"),
        sep="::",
        names=("item_id", "title", "genres"),
        encoding=_sniff_encoding(movies_path),
    )
    items = _items(movies["item_id"], movies["title"], genres_to_tag(movies["genres"]), movies)
    return _interactions(ratings), items


def _read_100k_genres(folder: Path) -> tuple[str, ...]:
    path = folder / "u.genre"
    if not path.exists():
        logger.info("%s: no u.genre, using the standard ml-100k genre names", folder)
        return ML100K_GENRES
    table = read_delimited(path, required=("genre", "index"), sep="|", names=("genre", "index"), encoding="latin-1")
    expected = [str(i) for i in range(len(table))]
    if table["index"].str.strip().tolist() != expected:
        bad = table.loc[table["index"].str.strip() != pd.Series(expected), LINE_COLUMN]
        raise DataError(
            f"genre indexes must run 0..{len(table) - 1} in order; found {table['index'].tolist()}",
            path=path,
            line=int(bad.iloc[0]) if len(bad) else None,
            column="index",
        )
    return tuple(table["genre"].str.strip())


def _read_100k_form(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    names = ("user_id", "item_id", "rating", "timestamp")
    ratings = read_delimited(folder / "u.data", required=names, sep="\t", names=names, encoding="latin-1")
    genres = _read_100k_genres(folder)
    flag_columns = [f"genre_{i}" for i in range(len(genres))]
    item_path = folder / "u.item"
    movies = read_delimited(
        item_path,
        required=("item_id", "title"),
        sep="|",
        names=(*_ML100K_ITEM_FIELDS, *flag_columns),
        encoding=_sniff_encoding(item_path),
    )
    flags = movies[flag_columns].to_numpy(dtype=object)
    bad = ~np.isin(flags, ["0", "1"])
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise DataError(
            f"genre flag must be 0 or 1, found {flags[row, col]!r}; expected {len(genres)} flags after the "
            f"{len(_ML100K_ITEM_FIELDS)} leading fields",
            path=item_path,
            line=int(movies[LINE_COLUMN].iloc[row]),
            column=genres[col],
        )
    named = np.array(genres, dtype=object)
    tag = [TAG_SEPARATOR.join(g for g in named[row == "1"] if g not in NO_GENRE) for row in flags]
    items = _items(movies["item_id"], movies["title"], pd.Series(tag, dtype=object), movies)
    return _interactions(ratings), items
