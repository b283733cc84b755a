"""Real datasets from ../shared/data (research licences: read in place, never copied into the repo)."""

from __future__ import annotations

import pandas as pd
from testdata import shared_dataset

from hllm.data.readers import read_raw
from hllm.data.splits import leave_one_out, temporal_cut
from hllm.data.validation import require_pass, validate_tables


def test_amazon_office_reads_exactly_and_validates_clean(tmp_path) -> None:
    raw = read_raw(shared_dataset("amazon-office-2014"))
    assert raw.format == "hllm"
    report = validate_tables(raw, policy="strict", report_dir=tmp_path / "report")
    dataset = require_pass(report)
    assert (dataset.num_users, dataset.num_items, len(dataset.interactions)) == (4905, 2420, 53258)
    assert report.counts["interactions"]["rejected"] == 0 and report.counts["items"]["rejected"] == 0
    lengths = dataset.interactions.groupby("user_id").size()
    assert (lengths.min(), lengths.max()) == (5, 94)
    split = leave_one_out(dataset.interactions)
    assert len(split.users) == 4905
    cut = temporal_cut(dataset.interactions, int(pd.Timestamp("2014-02-06", tz="UTC").timestamp()))
    assert len(cut.cold_items) == 126  # as documented in shared/data/README.md


def test_movielens_latest_small_reads_in_movielens_form() -> None:
    raw = read_raw(shared_dataset("ml-latest-small"))
    assert raw.format.startswith("movielens")
    assert raw.interactions["user_id"].nunique() == 671 and len(raw.interactions) == 100004
    dataset = require_pass(validate_tables(raw, policy="strict"))
    assert (dataset.num_users, len(dataset.interactions)) == (671, 100004)
