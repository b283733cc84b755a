"""The validation gate's reports, policies and configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testdata import GOOD_INTERACTIONS, GOOD_ITEMS, write_hllm

from hllm.config import DataConfig, load_config
from hllm.data.expectations import INTERACTIONS_SUITE, ITEMS_SUITE, USERS_SUITE
from hllm.data.readers import read_raw
from hllm.data.schema import DataError, load_dataset
from hllm.data.validation import require_pass, validate_tables


def test_clean_data_passes_and_writes_reports(good_dataset: Path, tmp_path: Path) -> None:
    report = validate_tables(read_raw(good_dataset), policy="strict", report_dir=tmp_path / "r")
    dataset = require_pass(report)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["passed"] is True
    assert summary["suites"] == [ITEMS_SUITE, INTERACTIONS_SUITE, USERS_SUITE]
    assert summary["counts"]["interactions"] == {"read": 6, "rejected": 0, "accepted": 6}
    assert summary["fingerprint"] == dataset.fingerprint()
    assert all(check["success"] for check in summary["checks"]) and len(summary["checks"]) == 14
    index = tmp_path / "r" / "data_docs" / "index.html"
    assert index.is_file() and ITEMS_SUITE.split(".")[1] in index.read_text()
    assert list((tmp_path / "r" / "data_docs" / "validations").rglob("*.html"))


def test_accepted_tables_are_canonical_and_keep_file_order(good_dataset: Path) -> None:
    dataset = require_pass(validate_tables(read_raw(good_dataset)))
    assert list(dataset.interactions.columns) == ["user_id", "item_id", "timestamp"]
    assert str(dataset.interactions["timestamp"].dtype) == "int64"
    assert dataset.interactions["item_id"].tolist() == ["i1", "i2", "i3", "i2", "i3", "i1"]
    assert list(dataset.items.columns) == ["item_id", "title", "tag", "description"]
    assert dataset.items.loc[2, "tag"] == ""  # empty stays empty, never NaN


def test_failed_strict_report_is_written_too(tmp_path: Path) -> None:
    src = write_hllm(tmp_path / "src", GOOD_INTERACTIONS + "i9,u1,1400000900\n", GOOD_ITEMS)
    report = validate_tables(read_raw(src), policy="strict", report_dir=tmp_path / "r")
    assert not report.passed and report.dataset is None
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    failed = [c for c in summary["checks"] if not c["success"]]
    assert [(c["column"], c["unexpected_count"]) for c in failed] == [("item_id", 1)]
    assert failed[0]["examples"] == ["interactions.csv:8: user_id='u1', item_id='i9', timestamp='1400000900'"]


def test_fingerprint_is_stable_and_content_sensitive(good_dataset: Path, tmp_path: Path) -> None:
    first = require_pass(validate_tables(read_raw(good_dataset)))
    again = require_pass(validate_tables(read_raw(good_dataset)))
    assert first.fingerprint() == again.fingerprint()
    first.save(tmp_path / "p")
    assert load_dataset(tmp_path / "p").fingerprint() == first.fingerprint()  # CSV and Parquet agree
    changed = write_hllm(tmp_path / "c", GOOD_INTERACTIONS.replace("1400000300", "1400000301"), GOOD_ITEMS)
    assert require_pass(validate_tables(read_raw(changed))).fingerprint() != first.fingerprint()


def test_prepared_parquet_reads_back_through_the_gate(good_dataset: Path, tmp_path: Path) -> None:
    dataset = require_pass(validate_tables(read_raw(good_dataset)))
    dataset.save(tmp_path / "p")
    again = require_pass(validate_tables(read_raw(tmp_path / "p")))
    assert again.interactions.equals(dataset.interactions) and again.items.equals(dataset.items)


def test_timestamp_bounds_come_from_config(good_dataset: Path) -> None:
    config = DataConfig(max_timestamp=1_400_000_250, max_quarantine_fraction=1.0)
    report = validate_tables(read_raw(good_dataset), config, policy="quarantine")
    # u2's row at 1400000300 is out of range; u2 is then left with 2 rows, below the minimum of 3.
    assert report.counts["interactions"]["rejected"] == 3
    assert set(report.dataset.interactions["user_id"]) == {"u1"}


def test_unknown_policy(good_dataset: Path) -> None:
    with pytest.raises(DataError, match="unknown policy 'lenient'"):
        validate_tables(read_raw(good_dataset), policy="lenient")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"min_interactions_per_user": 2}, "min_interactions_per_user=2"),
        ({"max_timestamp": 5}, "max_timestamp=5"),
        ({"max_quarantine_fraction": 1.5}, "max_quarantine_fraction=1.5"),
        ({"max_text_chars": 0}, "max_text_chars=0"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace(".", r"\.")):
        DataConfig(**kwargs)


def test_load_config_from_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "conf.yaml"
    path.write_text("data:\n  max_text_chars: 500\n  min_interactions_per_user: 4\n")
    config = load_config(DataConfig, path, ["data.max_text_chars=600", "max_quarantine_fraction=0.1"])
    assert (config.max_text_chars, config.min_interactions_per_user, config.max_quarantine_fraction) == (600, 4, 0.1)
    with pytest.raises(ValueError, match=r"unknown data key 'max_txt' \(did you mean 'max_text_chars'\?\)"):
        load_config(DataConfig, None, ["max_txt=3"])
    with pytest.raises(ValueError, match="not of the form key=value"):
        load_config(DataConfig, None, ["max_text_chars"])
