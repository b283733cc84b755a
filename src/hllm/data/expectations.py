"""The Great Expectations suites of the validation gate, defined in code and versioned.

Each suite runs on a frame prepared here: the parsed columns plus ``chk_*`` boolean columns for rules that GX
has no single expectation for (first occurrence of a key, valid UTF-8, known item). Every expectation carries
``meta`` with the source column it is about and a sentence saying what it requires; the gate reports those and
uses GX's ``unexpected_index_list`` to know exactly which rows failed. Bump a suite's version whenever its
rules change: the version is written into every validation summary.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hllm.config import DataConfig
from hllm.data.schema import ITEM_TEXT_FIELDS

SUITE_VERSION = 1
ITEMS_SUITE = f"hllm.items.v{SUITE_VERSION}"
INTERACTIONS_SUITE = f"hllm.interactions.v{SUITE_VERSION}"
USERS_SUITE = f"hllm.interactions_per_user.v{SUITE_VERSION}"

_SURROGATES = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INTEGER = re.compile(r"^[+-]?\d{1,18}$")


@dataclass(frozen=True)
class Rule:
    """One expectation: which GX class, on which prepared column, about which source column, and why."""

    expectation: str
    column: str
    source_column: str
    description: str
    kwargs: tuple[tuple[str, object], ...] = ()


def _has(pattern: re.Pattern[str], frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    found = pd.Series(False, index=frame.index)
    for column in columns:
        found |= frame[column].astype(str).str.contains(pattern, regex=True)
    return found


def _clean_id(series: pd.Series) -> pd.Series:
    """Stripped id, ``None`` when empty. Undecodable bytes become U+FFFD here (GX hashes the frame and
    cannot hash lone surrogates); such rows fail the UTF-8 rule, and the raw rows keep the original bytes."""
    stripped = series.astype(str).str.strip().str.replace(_SURROGATES, "\ufffd", regex=True)
    return stripped.where(stripped != "", None)


def _id_ok(series: pd.Series, max_chars: int) -> pd.Series:
    text = series.fillna("")
    return ~text.str.contains(_CONTROL, regex=True) & (text.str.len() <= max_chars)


def prepare_items(raw: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    """Items frame the items suite runs on: ``item_id`` cleaned, ``text_chars`` and ``chk_*`` columns."""
    frame = pd.DataFrame(index=raw.index)
    frame["item_id"] = _clean_id(raw["item_id"])
    text_columns = [c for c in ITEM_TEXT_FIELDS if c in raw.columns]
    frame["text_chars"] = sum(raw[c].astype(str).str.strip().str.len() for c in text_columns)
    value_columns = [c for c in raw.columns if not c.startswith("_")]
    frame["chk_valid_utf8"] = ~_has(_SURROGATES, raw, value_columns)
    frame["chk_id_ok"] = _id_ok(frame["item_id"], config.max_id_chars)
    frame["chk_first_id"] = ~frame["item_id"].duplicated(keep="first") | frame["item_id"].isna()
    return frame


def items_rules(config: DataConfig) -> list[Rule]:
    return [
        Rule("ExpectColumnValuesToNotBeNull", "item_id", "item_id", "item_id is present (not empty)"),
        Rule(
            "ExpectColumnValuesToBeInSet",
            "chk_id_ok",
            "item_id",
            f"item_id has no control characters (newline, tab, ...) and at most {config.max_id_chars} characters",
            (("value_set", [True]),),
        ),
        Rule(
            "ExpectColumnValuesToBeInSet",
            "chk_first_id",
            "item_id",
            "item_id is unique (later rows repeating an id are rejected, the first is kept)",
            (("value_set", [True]),),
        ),
        Rule(
            "ExpectColumnValuesToBeBetween",
            "text_chars",
            "title/tag/description",
            f"the item has text: title+tag+description hold 1 to {config.max_text_chars} characters",
            (("min_value", 1), ("max_value", config.max_text_chars)),
        ),
        Rule(
            "ExpectColumnValuesToBeInSet",
            "chk_valid_utf8",
            "all columns",
            "every value is valid UTF-8",
            (("value_set", [True]),),
        ),
    ]


def prepare_interactions(raw: pd.DataFrame, item_ids: set[str], config: DataConfig) -> pd.DataFrame:
    """Interactions frame the interactions suite runs on (``timestamp`` parsed, ``chk_*`` columns)."""
    frame = pd.DataFrame(index=raw.index)
    frame["user_id"] = _clean_id(raw["user_id"])
    frame["item_id"] = _clean_id(raw["item_id"])
    stamp = raw["timestamp"].astype(str).str.strip()
    integral = stamp.str.match(_INTEGER)
    # float64 is exact for integers far beyond any sane unix time; unparsable values become NaN (null).
    frame["timestamp"] = pd.to_numeric(stamp.where(integral, None), errors="coerce").astype("float64")
    value_columns = [c for c in ("user_id", "item_id", "timestamp") if c in raw.columns]
    frame["chk_valid_utf8"] = ~_has(_SURROGATES, raw, value_columns)
    frame["chk_ids_ok"] = _id_ok(frame["user_id"], config.max_id_chars) & _id_ok(frame["item_id"], config.max_id_chars)
    key = frame[["user_id", "item_id", "timestamp"]]
    frame["chk_first_event"] = ~key.duplicated(keep="first") | key.isna().any(axis=1)
    frame["chk_item_known"] = frame["item_id"].isin(item_ids) | frame["item_id"].isna()
    return frame


def interactions_rules(config: DataConfig) -> list[Rule]:
    upper = config.resolved_max_timestamp()
    return [
        Rule("ExpectColumnValuesToNotBeNull", "user_id", "user_id", "user_id is present (not empty)"),
        Rule("ExpectColumnValuesToNotBeNull", "item_id", "item_id", "item_id is present (not empty)"),
        Rule(
            "ExpectColumnValuesToBeInSet",
            "chk_ids_ok",
            "user_id/item_id",
            f"ids have no control characters (newline, tab, ...) and at most {config.max_id_chars} characters",
            (("value_set", [True]),),
        ),
        Rule(
            "ExpectColumnValuesToNotBeNull",
            "timestamp",
            "timestamp",
            "timestamp is an integer (unix seconds)",
        ),
        Rule(
            "ExpectColumnValuesToBeBetween",
            "timestamp",
            "timestamp",
            f"timestamp is between {config.min_timestamp} and {upper} "
            f"({_date(config.min_timestamp)} to {_date(upper)}, unix seconds)",
            (("min_value", config.min_timestamp), ("max_value", upper)),
        ),
        Rule(
            "ExpectColumnValuesToBeInSet",
            "chk_first_event",
            "user_id/item_id/timestamp",
            "(user_id, item_id, timestamp) is not a duplicate of an earlier row",
            (("value_set", [True]),),
        ),
        Rule(
            "ExpectColumnValuesToBeInSet",
            "chk_item_known",
            "item_id",
            "item_id has an accepted row in the item table",
            (("value_set", [True]),),
        ),
        Rule(
            "ExpectColumnValuesToBeInSet",
            "chk_valid_utf8",
            "all columns",
            "every value is valid UTF-8",
            (("value_set", [True]),),
        ),
    ]


def prepare_users(accepted: pd.DataFrame) -> pd.DataFrame:
    """Per-row count of the user's accepted interactions, for the per-user suite."""
    frame = pd.DataFrame(index=accepted.index)
    frame["user_id"] = accepted["user_id"]
    frame["user_interactions"] = accepted.groupby("user_id")["user_id"].transform("size").astype(np.int64)
    return frame


def users_rules(config: DataConfig) -> list[Rule]:
    return [
        Rule(
            "ExpectColumnValuesToBeBetween",
            "user_interactions",
            "user_id",
            f"the user has at least {config.min_interactions_per_user} accepted interactions "
            "(leave-one-out needs train, validation and test items)",
            (("min_value", config.min_interactions_per_user),),
        )
    ]


def _date(timestamp: int) -> str:
    return pd.Timestamp(timestamp, unit="s").strftime("%Y-%m-%d")


SUITES: dict[str, Callable[[DataConfig], list[Rule]]] = {
    ITEMS_SUITE: items_rules,
    INTERACTIONS_SUITE: interactions_rules,
    USERS_SUITE: users_rules,
}
