"""The bad-input corpus: every malformed input gets a clear error naming file/line/column, and nothing lost.

Two kinds of case:
- unreadable inputs raise `DataError` at read time with a message naming the file (and line when known);
- readable inputs with bad rows fail the strict gate with a message naming the expectation, the column and
  the offending ``file:line``; under the quarantine policy exactly those rows are rejected (checked line by
  line against the quarantine files) and every other row is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from testdata import write_hllm

from hllm.config import DataConfig
from hllm.data.readers import read_raw
from hllm.data.schema import DataError
from hllm.data.validation import ValidationFailed, require_pass, validate_tables

BASE_ITEMS = (
    "item_id,title,tag,description\n"
    "i1,Blue pen,office,A pen\ni2,Red stapler,office,Staples\ni3,Desk lamp,,Bright\ni4,Paper clips,office,\n"
)  # item rows on lines 2-5; appended rows start on line 6
BASE_INTERACTIONS = "item_id,user_id,timestamp\n" + "".join(
    f"i{i},{u},{1400000000 + 100 * i}\n" for u in ("u1", "u2") for i in range(1, 5)
)  # interaction rows on lines 2-9; appended rows start on line 10
CONFIG = DataConfig(max_timestamp=2_000_000_000, max_quarantine_fraction=1.0)


# ---------------------------------------------------------------- unreadable inputs: DataError at read time
def _folder(tmp: Path, interactions: str | bytes | None = BASE_INTERACTIONS, items: str | None = BASE_ITEMS) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    if interactions is not None:
        data = interactions if isinstance(interactions, bytes) else interactions.encode()
        (tmp / "interactions.csv").write_bytes(data)
    if items is not None:
        (tmp / "items.csv").write_text(items)
    return tmp


def _missing_column(t: Path) -> Path:
    return _folder(t, "item_id,user_id\ni1,u1\n")


def _semicolons(t: Path) -> Path:
    return _folder(t, BASE_INTERACTIONS.replace(",", ";"))


def _tabs(t: Path) -> Path:
    return _folder(t, BASE_INTERACTIONS.replace(",", "\t"))


def _empty_file(t: Path) -> Path:
    return _folder(t, b"")


def _header_only(t: Path) -> Path:
    return _folder(t, "item_id,user_id,timestamp\n")


def _directory_instead_of_file(t: Path) -> Path:
    folder = _folder(t, None)
    (folder / "interactions.csv").mkdir()
    return folder


def _missing_items_file(t: Path) -> Path:
    return _folder(t, items=None)


def _huge_single_line(t: Path) -> Path:
    return _folder(t, b"item_id,user_id,timestamp" + b" 1400000000" * 20_000)


def _ragged_row(t: Path) -> Path:
    return _folder(t, BASE_INTERACTIONS + "i1,u1,1400000500,extra\n")


def _no_text_columns(t: Path) -> Path:
    return _folder(t, items="item_id,price\ni1,3\n")


def _file_instead_of_folder(t: Path) -> Path:
    return _folder(t) / "interactions.csv"


def _blank_first_line(t: Path) -> Path:
    return _folder(t, "\n" + BASE_INTERACTIONS)


def _corrupt_parquet(t: Path) -> Path:
    t.mkdir(parents=True)
    (t / "interactions.parquet").write_bytes(b"PAR1 this is not parquet")
    (t / "items.parquet").write_bytes(b"PAR1 nor this")
    return t


READ_ERRORS = {
    "missing column": (_missing_column, ["interactions.csv", "missing required column(s) ['timestamp']"]),
    "wrong delimiter (;)": (_semicolons, ["interactions.csv", "semicolon-delimited"]),
    "wrong delimiter (tab)": (_tabs, ["interactions.csv", "tab-delimited"]),
    "empty file": (_empty_file, ["interactions.csv", "file is empty"]),
    "header only": (_header_only, ["interactions.csv", "header but no data rows"]),
    "directory instead of file": (_directory_instead_of_file, ["interactions.csv", "is a directory"]),
    "missing item file": (_missing_items_file, ["items.csv", "no such file"]),
    "huge single line": (_huge_single_line, ["interactions.csv:1", "over 64 KiB", "line breaks"]),
    "ragged row": (_ragged_row, ["interactions.csv:10", "4 fields, expected 3", "must be quoted"]),
    "no text column": (_no_text_columns, ["items.csv", "no text column"]),
    "file instead of folder": (_file_instead_of_folder, ["interactions.csv", "expected a dataset folder"]),
    "blank first line": (_blank_first_line, ["interactions.csv", "first line is blank"]),
    "corrupt parquet": (_corrupt_parquet, ["interactions.parquet", "cannot read as Parquet"]),
}


@pytest.mark.parametrize("case", list(READ_ERRORS))
def test_unreadable_input_names_the_file(tmp_path: Path, case: str) -> None:
    build, fragments = READ_ERRORS[case]
    src = build(tmp_path / "src")
    with pytest.raises(DataError) as info:
        read_raw(src)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{case}: {fragment!r} not in {message!r}"


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        read_raw(tmp_path / "nowhere")


# ---------------------------------------------------------------- bad rows: strict fails, quarantine keeps the rest
@dataclass
class RowCase:
    interactions: str = ""  # appended to BASE_INTERACTIONS
    items: str = ""  # appended to BASE_ITEMS
    bad_interaction_lines: tuple[int, ...] = ()
    bad_item_lines: tuple[int, ...] = ()
    fragments: tuple[str, ...] = ()  # must appear in the strict failure message
    transform: str = ""  # "crlf" or "bom"


ROW_CASES = {
    "negative timestamp": RowCase("i1,u1,-5\n", bad_interaction_lines=(10,), fragments=("timestamp is between",)),
    "absurd timestamp (milliseconds)": RowCase(
        "i1,u1,1400000000000\n", bad_interaction_lines=(10,), fragments=("column 'timestamp'", "interactions.csv:10")
    ),
    "unparsable timestamps (mixed types)": RowCase(
        "i1,u1,2014-01-01\ni2,u1,1.5\ni3,u1,soon\n",
        bad_interaction_lines=(10, 11, 12),
        fragments=("timestamp is an integer", "timestamp='2014-01-01'"),
    ),
    "duplicate rows": RowCase(
        "i1,u1,1400000100\n", bad_interaction_lines=(10,), fragments=("not a duplicate of an earlier row",)
    ),
    "unknown item": RowCase(
        "i99,u1,1400000500\n", bad_interaction_lines=(10,), fragments=("accepted row in the item table", "i99")
    ),
    "empty user id": RowCase("i1,,1400000500\n", bad_interaction_lines=(10,), fragments=("user_id is present",)),
    "id with a newline": RowCase(
        '"i\n1",u1,1400000500\ni2,u1,1400000600\n',
        bad_interaction_lines=(10,),
        fragments=("control characters", "interactions.csv:10"),
    ),
    "non-UTF-8 bytes in a title": RowCase(
        items="i5,Caf\udce9 latte,,\n", bad_item_lines=(6,), fragments=("valid UTF-8", "items.csv:6")
    ),
    "non-UTF-8 bytes in an id": RowCase(
        "i1,u\udcff1,1400000500\n", bad_interaction_lines=(10,), fragments=("valid UTF-8",)
    ),
    "item without text (and its interactions)": RowCase(
        "i5,u1,1400000500\n",
        items="i5,,,\n",
        bad_interaction_lines=(10,),
        bad_item_lines=(6,),
        fragments=("the item has text", "items.csv:6"),
    ),
    "duplicate item id": RowCase(
        items="i1,Another pen,,\n", bad_item_lines=(6,), fragments=("item_id is unique", "items.csv:6")
    ),
    "user with fewer than 3 interactions": RowCase(
        "i1,u3,1400000000\ni2,u3,1400000001\n",
        bad_interaction_lines=(10, 11),
        fragments=("at least 3 accepted interactions", "user_id='u3'"),
    ),
    "user falls below 3 after a bad row": RowCase(
        "i1,u3,1400000000\ni2,u3,1400000001\ni99,u3,1400000002\n",
        bad_interaction_lines=(10, 11, 12),
        fragments=("at least 3 accepted interactions",),
    ),
    "huge text": RowCase(
        items="i5," + "x" * 30_000 + ",,\n", bad_item_lines=(6,), fragments=("title+tag+description",)
    ),
    "CRLF line ends": RowCase(
        "i1,u1,-5\n", bad_interaction_lines=(10,), fragments=("interactions.csv:10",), transform="crlf"
    ),
}


def _build(tmp: Path, case: RowCase) -> Path:
    interactions, items = BASE_INTERACTIONS + case.interactions, BASE_ITEMS + case.items
    if case.transform == "crlf":
        interactions, items = interactions.replace("\n", "\r\n"), items.replace("\n", "\r\n")
    return write_hllm(tmp, interactions, items)


@pytest.mark.parametrize("name", list(ROW_CASES))
def test_strict_policy_names_expectation_column_and_row(tmp_path: Path, name: str) -> None:
    case = ROW_CASES[name]
    report = validate_tables(read_raw(_build(tmp_path / "src", case)), CONFIG, policy="strict")
    assert not report.passed
    with pytest.raises(ValidationFailed) as info:
        require_pass(report)
    message = str(info.value)
    assert "ExpectColumn" in message and "column '" in message
    for fragment in case.fragments:
        assert fragment in message, f"{name}: {fragment!r} not in:\n{message}"


@pytest.mark.parametrize("name", list(ROW_CASES))
def test_quarantine_rejects_exactly_the_bad_rows(tmp_path: Path, name: str) -> None:
    case = ROW_CASES[name]
    raw = read_raw(_build(tmp_path / "src", case))
    report = validate_tables(raw, CONFIG, policy="quarantine", report_dir=tmp_path / "report")
    dataset = require_pass(report)

    for table, bad_lines, accepted in (
        ("interactions", case.bad_interaction_lines, dataset.interactions),
        ("items", case.bad_item_lines, dataset.items),
    ):
        read = len(getattr(raw, table))
        counts = report.counts[table]
        assert counts == {"read": read, "rejected": len(bad_lines), "accepted": read - len(bad_lines)}
        assert len(accepted) == read - len(bad_lines)  # nothing accepted is lost
        quarantine = tmp_path / "report" / "quarantine" / f"{table}.csv"
        if bad_lines:
            rejected = pd.read_csv(quarantine, dtype=str, keep_default_na=False, encoding_errors="surrogateescape")
            assert sorted(rejected["_line"].astype(int)) == sorted(bad_lines)
            assert rejected["reasons"].str.len().min() > 0
        else:
            assert not quarantine.exists()
    assert not any("\r" in v for v in dataset.interactions["timestamp"].astype(str))


def test_quarantine_file_keeps_the_original_bytes(tmp_path: Path) -> None:
    raw = read_raw(_build(tmp_path / "src", ROW_CASES["non-UTF-8 bytes in a title"]))
    validate_tables(raw, CONFIG, policy="quarantine", report_dir=tmp_path / "report")
    assert b"Caf\xe9 latte" in (tmp_path / "report" / "quarantine" / "items.csv").read_bytes()


# ---------------------------------------------------------------- unusual but valid inputs are accepted exactly
def test_ids_with_commas_quotes_unicode_round_trip(tmp_path: Path) -> None:
    items = BASE_ITEMS + '"i,5",Comma item,,\n"i""6",Quote item,,\nü7,Umlaut item,,\n'
    interactions = (
        BASE_INTERACTIONS + '"i,5","u ""3""",1400000000\n"i""6","u ""3""",1400000001\nü7,"u ""3""",1400000002\n'
    )
    dataset = require_pass(validate_tables(read_raw(write_hllm(tmp_path, interactions, items)), CONFIG))
    assert {"i,5", 'i"6', "ü7"} <= set(dataset.items["item_id"])
    rows = dataset.interactions[dataset.interactions["user_id"] == 'u "3"']
    assert rows["item_id"].tolist() == ["i,5", 'i"6', "ü7"]
    dataset.save(tmp_path / "out")
    assert pd.read_parquet(tmp_path / "out" / "interactions.parquet")["item_id"].tolist()[-3:] == ["i,5", 'i"6', "ü7"]


def test_bom_is_ignored(tmp_path: Path) -> None:
    dataset = require_pass(
        validate_tables(read_raw(write_hllm(tmp_path, "\ufeff" + BASE_INTERACTIONS, BASE_ITEMS)), CONFIG)
    )
    assert len(dataset.interactions) == 8 and dataset.interactions.columns[0] == "user_id"


def test_spaces_around_ids_are_stripped(tmp_path: Path) -> None:
    interactions = BASE_INTERACTIONS + " i1 , u1 , 1400000500\n"
    dataset = require_pass(validate_tables(read_raw(write_hllm(tmp_path, interactions, BASE_ITEMS)), CONFIG))
    last = dataset.interactions.iloc[-1]
    assert (last["user_id"], last["item_id"], last["timestamp"]) == ("u1", "i1", 1400000500)


def test_parquet_numeric_ids_match_across_tables(tmp_path: Path) -> None:
    pd.DataFrame({"user_id": [1, 1, 1], "item_id": [10.0, 11.0, 12.0], "timestamp": [1400000000] * 3}).to_parquet(
        tmp_path / "interactions.parquet"
    )
    pd.DataFrame({"item_id": [10, 11, 12], "title": ["a", "b", "c"]}).to_parquet(tmp_path / "items.parquet")
    dataset = require_pass(validate_tables(read_raw(tmp_path), CONFIG))
    assert dataset.interactions["item_id"].tolist() == ["10", "11", "12"]
    assert dataset.interactions["user_id"].tolist() == ["1", "1", "1"]


def test_quarantine_fails_when_most_rows_are_bad(tmp_path: Path) -> None:
    interactions = "item_id,user_id,timestamp\n" + "".join(f"i1,u{i},-1\n" for i in range(10))
    report = validate_tables(
        read_raw(write_hllm(tmp_path, BASE_INTERACTIONS + interactions[26:], BASE_ITEMS)),
        DataConfig(max_timestamp=2_000_000_000, max_quarantine_fraction=0.2),
        policy="quarantine",
    )
    assert not report.passed
    assert "max_quarantine_fraction=0.2" in report.describe_failure()
