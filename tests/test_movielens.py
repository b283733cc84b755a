"""Reading the three MovieLens forms (CSV, ml-1m ``.dat``, ml-100k) from small hand-written folders."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hllm.data.movielens import (
    ML100K_GENRES,
    aggregate_user_tags,
    detect_movielens_form,
    read_movielens,
)
from hllm.data.schema import LINE_COLUMN, SOURCE_COLUMN, DataError

REAL_ML_LATEST_SMALL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-latest-small"

AMELIE = "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)"
MISERABLES = "Misérables, Les (1995)"


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# --------------------------------------------------------------------------------------------- CSV form


@pytest.fixture
def csv_folder(tmp_path: Path) -> Path:
    _write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n"
        "1,10,4.0,1000000001\n"
        "1,20,3.5,1000000002\n"
        "2,10,5.0,1000000003\n"
        "2,30,1.0,1000000004\n"
        "3,40,2.0,1000000005\n"
        "3,99,4.5,1000000006\n",  # movie 99 is not in movies.csv: kept for the gate to report
    )
    _write(
        tmp_path / "movies.csv",
        "movieId,title,genres\n"
        "10,Toy Story (1995),Adventure|Animation|Children\n"
        '20,"American President, The (1995)",Comedy|Drama|Romance\n'
        '30,"""Great Performances"" Cats (1998)",Musical\n'
        "40,Nothing Here (2001),(no genres listed)\n",
    )
    _write(
        tmp_path / "tags.csv",
        "userId,movieId,tag,timestamp\n"
        "1,10,pixar,1\n"
        "2,10,Pixar,2\n"
        "3,10,funny,3\n"
        "1,10,toys,4\n"
        "2,10,toys,5\n"
        "3,10,toys,6\n"
        "1,20,  politics ,7\n"
        '2,20,"romance, sweet",8\n'
        "1,10,,9\n"
        "1,99,orphan,10\n",
    )
    return tmp_path


def test_detects_each_form(tmp_path: Path, csv_folder: Path) -> None:
    assert detect_movielens_form(csv_folder) == "movielens-csv"
    dat = tmp_path / "dat"
    dat.mkdir()
    _write(dat / "ratings.dat", "1::1::5::1\n")
    _write(dat / "movies.dat", "1::A (1999)::Drama\n")
    assert detect_movielens_form(dat) == "movielens-dat"
    small = tmp_path / "small"
    small.mkdir()
    _write(small / "u.data", "1\t1\t5\t1\n")
    _write(small / "u.item", "1|A (1999)|" + "|" * 3 + "|0" * 19 + "\n")
    assert detect_movielens_form(small) == "movielens-100k"
    assert detect_movielens_form(tmp_path / "missing") is None
    assert detect_movielens_form(csv_folder / "ratings.csv") is None


def test_csv_form_interactions_keep_every_rating_in_file_order(csv_folder: Path) -> None:
    raw = read_movielens(csv_folder)
    assert raw.format == "movielens-csv"
    assert raw.source == str(csv_folder)
    inter = raw.interactions
    assert list(inter.columns) == ["user_id", "item_id", "timestamp", "rating", SOURCE_COLUMN, LINE_COLUMN]
    assert inter["user_id"].tolist() == ["1", "1", "2", "2", "3", "3"]
    assert inter["item_id"].tolist() == ["10", "20", "10", "30", "40", "99"]
    assert inter["timestamp"].tolist() == [str(1000000001 + i) for i in range(6)]
    assert inter["rating"].tolist() == ["4.0", "3.5", "5.0", "1.0", "2.0", "4.5"]
    assert inter[LINE_COLUMN].tolist() == [2, 3, 4, 5, 6, 7]
    assert set(inter[SOURCE_COLUMN]) == {str(csv_folder / "ratings.csv")}


def test_csv_form_items_titles_genres_and_user_tags(csv_folder: Path) -> None:
    items = read_movielens(csv_folder).items
    assert list(items.columns) == ["item_id", "title", "tag", "description", "user_tags", SOURCE_COLUMN, LINE_COLUMN]
    assert items["item_id"].tolist() == ["10", "20", "30", "40"]  # 99 is not invented
    assert items["title"].tolist() == [
        "Toy Story (1995)",
        "American President, The (1995)",
        '"Great Performances" Cats (1998)',
        "Nothing Here (2001)",
    ]
    assert items["tag"].tolist() == ["Adventure, Animation, Children", "Comedy, Drama, Romance", "Musical", ""]
    assert items["description"].tolist() == ["", "", "", ""]
    # toys x3, then pixar/Pixar x2 in its first spelling, then funny; blank tags are ignored.
    assert items["user_tags"].tolist() == ["toys, pixar, funny", "politics, romance, sweet", "", ""]
    assert items[LINE_COLUMN].tolist() == [2, 3, 4, 5]
    assert set(items[SOURCE_COLUMN]) == {str(csv_folder / "movies.csv")}


def test_csv_form_without_tags_file_has_empty_user_tags(csv_folder: Path) -> None:
    (csv_folder / "tags.csv").unlink()
    items = read_movielens(csv_folder).items
    assert items["user_tags"].tolist() == ["", "", "", ""]


def test_user_tags_keep_at_most_the_limit_most_frequent_first() -> None:
    # t00 applied once, t01 twice, ... t11 twelve times.
    tags = [f"t{i:02d}" for i in range(12) for _ in range(i + 1)]
    joined = aggregate_user_tags(pd.Series(["7"] * len(tags)), pd.Series(tags))
    assert joined.to_dict() == {"7": ", ".join(f"t{i:02d}" for i in range(11, 1, -1))}
    ties = aggregate_user_tags(pd.Series(["1", "1", "1", "2"]), pd.Series(["b", "a", "c", "z"]), limit=2)
    assert ties.to_dict() == {"1": "b, a", "2": "z"}


def test_csv_form_reports_missing_column_with_file(csv_folder: Path) -> None:
    _write(csv_folder / "ratings.csv", "userId,movieId,timestamp\n1,10,1\n")
    with pytest.raises(DataError, match=r"ratings\.csv.*rating"):
        read_movielens(csv_folder)


# --------------------------------------------------------------------------------------------- .dat form

MOVIES_DAT = (
    f"1::{AMELIE}::Comedy|Romance\n"
    '2::"Great Performances" Cats (1998)::Musical\n'
    "3::Shawshank Redemption, The (1994)::Drama\n"
    "4::Nothing Here (2000)::(no genres listed)\n"
)
RATINGS_DAT = "1::1::5::978300760\n1::3::3::978302109\n2::2::4::978301968\n3::4::1::978300275\n3::1::2::978824291\n"


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])
def test_dat_form_decodes_titles_and_genres(tmp_path: Path, encoding: str) -> None:
    _write(tmp_path / "ratings.dat", RATINGS_DAT)
    _write(tmp_path / "movies.dat", MOVIES_DAT, encoding=encoding)
    raw = read_movielens(tmp_path)
    assert raw.format == "movielens-dat"
    inter = raw.interactions
    assert inter["user_id"].tolist() == ["1", "1", "2", "3", "3"]
    assert inter["item_id"].tolist() == ["1", "3", "2", "4", "1"]
    assert inter["timestamp"].tolist() == ["978300760", "978302109", "978301968", "978300275", "978824291"]
    assert inter["rating"].tolist() == ["5", "3", "4", "1", "2"]
    assert inter[LINE_COLUMN].tolist() == [1, 2, 3, 4, 5]
    items = raw.items
    assert list(items.columns) == ["item_id", "title", "tag", "description", SOURCE_COLUMN, LINE_COLUMN]
    assert items["item_id"].tolist() == ["1", "2", "3", "4"]
    assert items["title"].tolist() == [
        AMELIE,
        '"Great Performances" Cats (1998)',
        "Shawshank Redemption, The (1994)",
        "Nothing Here (2000)",
    ]
    assert items["tag"].tolist() == ["Comedy, Romance", "Musical", "Drama", ""]
    assert items[LINE_COLUMN].tolist() == [1, 2, 3, 4]


def test_dat_form_ragged_row_names_file_and_line(tmp_path: Path) -> None:
    _write(tmp_path / "ratings.dat", "1::1::5::978300760\n1::3::3::978300761\n1::3::3::978300762::9\n")
    _write(tmp_path / "movies.dat", MOVIES_DAT, encoding="latin-1")
    with pytest.raises(DataError, match="5 fields, expected 4") as info:
        read_movielens(tmp_path)
    assert info.value.path == str(tmp_path / "ratings.dat")
    assert info.value.line == 3


# --------------------------------------------------------------------------------------------- ml-100k form


def _flags(*genres: str, names: tuple[str, ...] = ML100K_GENRES) -> str:
    return "|".join("1" if name in genres else "0" for name in names)


def _write_100k(folder: Path, genre_file: str | None) -> None:
    aladdin = _flags("Animation", "Children's")
    _write(folder / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t242\t1\t878887116\n")
    _write(
        folder / "u.item",
        f"242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya%20(1996)|{_flags('Comedy')}\n"
        f"302|L.A. Confidential (1997)|01-Jan-1997||http://x|{_flags('Crime', 'Film-Noir', 'Mystery', 'Thriller')}\n"
        f"267|unknown||||{_flags('unknown')}\n"
        f"1|{MISERABLES}|01-Jan-1995||http://x|{_flags('Drama', 'War')}\n"
        f"5|Aladdin (1992)|01-Jan-1992||http://x|{aladdin}\n",
        encoding="latin-1",
    )
    if genre_file is not None:
        _write(folder / "u.genre", genre_file, encoding="latin-1")


STANDARD_GENRE_FILE = "".join(f"{name}|{i}\n" for i, name in enumerate(ML100K_GENRES)) + "\n"


@pytest.mark.parametrize("genre_file", [STANDARD_GENRE_FILE, None], ids=["u.genre", "default-genres"])
def test_100k_form_maps_flags_to_genre_names(tmp_path: Path, genre_file: str | None) -> None:
    _write_100k(tmp_path, genre_file)
    raw = read_movielens(tmp_path)
    assert raw.format == "movielens-100k"
    inter = raw.interactions
    assert inter["user_id"].tolist() == ["196", "186", "22"]
    assert inter["item_id"].tolist() == ["242", "302", "242"]
    assert inter["timestamp"].tolist() == ["881250949", "891717742", "878887116"]
    assert inter["rating"].tolist() == ["3", "3", "1"]
    assert inter[LINE_COLUMN].tolist() == [1, 2, 3]
    items = raw.items
    assert list(items.columns) == ["item_id", "title", "tag", "description", SOURCE_COLUMN, LINE_COLUMN]
    assert items["item_id"].tolist() == ["242", "302", "267", "1", "5"]
    assert items["title"].tolist() == [
        "Kolya (1996)",
        "L.A. Confidential (1997)",
        "unknown",
        MISERABLES,
        "Aladdin (1992)",
    ]
    assert items["tag"].tolist() == [
        "Comedy",
        "Crime, Film-Noir, Mystery, Thriller",
        "",  # the 'unknown' genre is a placeholder, not text
        "Drama, War",
        "Animation, Children's",
    ]
    assert items["description"].tolist() == [""] * 5
    assert items[LINE_COLUMN].tolist() == [1, 2, 3, 4, 5]


def test_100k_form_uses_genre_names_from_u_genre(tmp_path: Path) -> None:
    _write_100k(tmp_path, STANDARD_GENRE_FILE.replace("Children's|4", "Kids|4"))
    items = read_movielens(tmp_path).items
    assert items.loc[items["item_id"] == "5", "tag"].item() == "Animation, Kids"


def test_100k_form_bad_flag_names_line_and_genre(tmp_path: Path) -> None:
    _write_100k(tmp_path, None)
    lines = (tmp_path / "u.item").read_bytes().decode("latin-1").splitlines()
    lines[3] = lines[3][:-1] + "x"  # the Western flag of the fourth movie
    _write(tmp_path / "u.item", "\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(DataError, match="genre flag must be 0 or 1") as info:
        read_movielens(tmp_path)
    assert info.value.line == 4
    assert info.value.column == "Western"


def test_100k_form_short_row_is_reported(tmp_path: Path) -> None:
    _write_100k(tmp_path, None)
    with (tmp_path / "u.item").open("ab") as handle:
        handle.write(b"9|Cut Short (1999)|01-Jan-1999||http://x|0|1\n")
    with pytest.raises(DataError, match="genre flag must be 0 or 1") as info:
        read_movielens(tmp_path)
    assert info.value.line == 6


def test_100k_form_bad_genre_index(tmp_path: Path) -> None:
    _write_100k(tmp_path, "unknown|0\nAction|2\n")
    with pytest.raises(DataError, match="genre indexes") as info:
        read_movielens(tmp_path)
    assert info.value.line == 2


# --------------------------------------------------------------------------------------------- no form


def test_folder_matching_no_form_lists_expected_files(tmp_path: Path) -> None:
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,1,1\n")
    with pytest.raises(DataError) as info:
        read_movielens(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    for name in ("movies.csv", "ratings.dat", "movies.dat", "u.data", "u.item", "found ratings.csv"):
        assert name in message


def test_folder_with_release_one_level_down_suggests_it(tmp_path: Path) -> None:
    release = tmp_path / "ml-1m"
    release.mkdir()
    _write(release / "ratings.dat", RATINGS_DAT)
    _write(release / "movies.dat", MOVIES_DAT, encoding="latin-1")
    (tmp_path / "ml-1m.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match="Did you mean the subfolder 'ml-1m'"):
        read_movielens(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        read_movielens(tmp_path / "nope")


# --------------------------------------------------------------------------------------------- real data


@pytest.mark.skipif(
    not (REAL_ML_LATEST_SMALL / "ratings.csv").is_file(),
    reason=f"real MovieLens data not found at {REAL_ML_LATEST_SMALL} (shared data folder absent)",
)
def test_real_ml_latest_small() -> None:
    raw = read_movielens(REAL_ML_LATEST_SMALL)
    assert raw.format == "movielens-csv"
    assert len(raw.interactions) == 100_004
    assert raw.interactions["user_id"].nunique() == 671
    assert raw.interactions["item_id"].nunique() == 9_066
    assert len(raw.items) == 9_125
    assert raw.items["item_id"].is_unique
    toy_story = raw.items.loc[raw.items["item_id"] == "1"].iloc[0]
    assert toy_story["title"] == "Toy Story (1995)"
    assert toy_story["tag"] == "Adventure, Animation, Children, Comedy, Fantasy"
    assert (raw.items["tag"] == "").sum() == 18  # the '(no genres listed)' movies
    assert (raw.items["user_tags"] != "").sum() == 689  # movies with at least one user tag
