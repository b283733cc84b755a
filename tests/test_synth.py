"""The synthetic dataset: deterministic, canonical, temporally sound, and learnable from item text."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import CountVectorizer

from hllm.data.schema import INTERACTION_COLUMNS, ITEM_COLUMNS, Dataset
from hllm.data.splits import leave_one_out
from hllm.data.synth import COLD_RELEASE_WINDOW, SynthConfig, generate


@pytest.fixture(scope="module")
def config() -> SynthConfig:
    return SynthConfig()


@pytest.fixture(scope="module")
def dataset(config: SynthConfig) -> Dataset:
    return generate(config)


def test_same_seed_gives_identical_frames(dataset: Dataset) -> None:
    again = generate(SynthConfig())
    pd.testing.assert_frame_equal(dataset.interactions, again.interactions)
    pd.testing.assert_frame_equal(dataset.items, again.items)
    assert dataset.fingerprint() == again.fingerprint()


def test_different_seed_gives_different_data(dataset: Dataset) -> None:
    other = generate(SynthConfig(seed=1))
    assert other.fingerprint() != dataset.fingerprint()
    assert not dataset.items["title"].equals(other.items["title"])


def test_tables_match_canonical_schema(dataset: Dataset, config: SynthConfig) -> None:
    inter, items = dataset.interactions, dataset.items
    assert tuple(inter.columns) == INTERACTION_COLUMNS
    assert tuple(items.columns) == ITEM_COLUMNS
    assert inter["timestamp"].dtype == np.int64
    assert all(isinstance(v, str) for v in inter["user_id"]) and all(isinstance(v, str) for v in inter["item_id"])
    assert len(items) == config.n_items and items["item_id"].is_unique
    assert items["item_id"].str.fullmatch(r"i\d{5}").all()
    assert dataset.num_users == config.n_users
    assert set(inter["item_id"]) <= set(items["item_id"])
    assert inter["item_id"].nunique() >= 0.9 * config.n_items
    assert not inter.duplicated(["user_id", "item_id"]).any()  # no repeats, hence no duplicate triples
    assert dataset.metadata["source"] == "synthetic" and dataset.metadata["config"] == asdict(config)
    assert len(dataset.metadata["cold_items"]) == config.n_cold


def test_item_texts_are_non_empty_and_distinct(dataset: Dataset) -> None:
    items = dataset.items
    for column in ("title", "tag", "description"):
        assert (items[column].str.strip() != "").all()
    assert items["title"].is_unique
    assert items["description"].nunique() >= 0.9 * len(items)


def test_sequence_lengths_and_time_order(dataset: Dataset, config: SynthConfig) -> None:
    inter = dataset.interactions
    lengths = inter.groupby("user_id").size()
    assert lengths.min() >= config.min_seq_len and lengths.max() <= config.max_seq_len
    assert lengths.nunique() > 10  # lengths vary across users
    assert (inter.groupby("user_id", sort=False)["timestamp"].diff().dropna() >= 0).all()
    first = inter.groupby("user_id")["timestamp"].min()
    assert first.nunique() > 0.9 * config.n_users  # users start at different times
    assert inter["timestamp"].between(config.start, config.start + config.span_seconds).all()


def test_cold_items_appear_only_late(dataset: Dataset, config: SynthConfig) -> None:
    inter = dataset.interactions
    first_seen = inter.groupby("item_id")["timestamp"].min()
    release = config.start + int(COLD_RELEASE_WINDOW[0] * config.span_seconds)
    cold = first_seen.reindex(dataset.metadata["cold_items"]).dropna()
    assert len(cold) >= 0.7 * config.n_cold  # most cold items are found after their release
    assert (cold >= release).all()
    assert (first_seen.drop(cold.index) < release).all()  # every other item is found before the releases
    # Only a user's last event (the return visit) can come after the releases.
    rank_from_end = inter.groupby("user_id", sort=False).cumcount(ascending=False)
    assert (rank_from_end[inter["timestamp"] >= release] == 0).all()
    assert (inter["timestamp"] <= config.start + int(0.8 * config.span_seconds)).mean() > 0.5  # a cut at 80%


def _text_scores(dataset: Dataset) -> tuple[dict[str, int], np.ndarray]:
    """Item index and L2-normalised bag-of-words vectors of title + tag + description."""
    items = dataset.items
    texts = (items["title"] + " " + items["tag"] + " " + items["description"]).tolist()
    vectors = CountVectorizer().fit_transform(texts).toarray().astype(np.float64)
    return {item: i for i, item in enumerate(items["item_id"])}, vectors / np.linalg.norm(vectors, axis=1)[:, None]


def test_late_items_give_a_cold_start_slice_that_text_can_rank(dataset: Dataset) -> None:
    split = leave_one_out(dataset.interactions)
    in_training = {item for sequence in split.users["train"] for item in sequence}
    test = split.targets("test")
    cold = test[~test["target"].isin(in_training)]
    # The evaluation report's cold slice (test targets no training sequence holds) is big enough to compare on.
    assert len(cold) >= 50
    assert set(cold["target"]) <= set(dataset.metadata["cold_items"])
    assert split.targets("valid")["target"].isin(in_training).all()  # the late items are test targets only
    # Late items are described like their topic peers: text similarity to the history finds them, popularity
    # (zero training count) cannot.
    index, vectors = _text_scores(dataset)
    hits = 0
    for history, target in zip(cold["history"], cold["target"], strict=True):
        positions = [index[item] for item in history]
        scores = vectors @ vectors[positions[-3:]].sum(axis=0)
        scores[positions] = -np.inf
        hits += index[target] in np.argsort(-scores, kind="stable")[:10]
    assert hits / len(cold) > 0.15


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"n_items": 5, "n_topics": 12}, "n_items"),
        ({"min_seq_len": 2}, "min_seq_len"),
        ({"max_seq_len": 4}, "max_seq_len"),
        ({"cold_fraction": 1.0}, "cold_fraction"),
        ({"cold_fraction": -0.1}, "cold_fraction"),
        ({"n_topics": 0}, "n_topics"),
        ({"n_users": 0}, "n_users"),
        ({"span_days": 0}, "span_days"),
        ({"n_items": 40, "n_topics": 4, "cold_fraction": 0.5}, "max_seq_len"),
        ({"brand_loyalty": 1.5}, "brand_loyalty"),
    ],
)
def test_config_validation_names_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"SynthConfig\.{field}="):
        SynthConfig(**overrides)


def test_small_config_is_valid_and_fast_path_works() -> None:
    ds = generate(SynthConfig(n_users=20, n_items=30, n_topics=3, max_seq_len=10, seed=7))
    assert ds.num_items == 30 and ds.num_users == 20
    assert ds.interactions.groupby("user_id").size().between(5, 10).all()


def _recall_at_10(dataset: Dataset) -> tuple[float, float]:
    """Leave-one-out Recall@10 of (text cosine to the last 3 history items, history popularity)."""
    items = dataset.items
    index, vectors = _text_scores(dataset)
    sequences = [
        [index[item] for item in group] for _, group in dataset.interactions.groupby("user_id", sort=False)["item_id"]
    ]
    popularity = np.zeros(len(items))
    for sequence in sequences:
        np.add.at(popularity, sequence[:-1], 1.0)

    text_hits = popularity_hits = 0
    for sequence in sequences:
        history, target = sequence[:-1], sequence[-1]
        for scores, is_text in ((vectors @ vectors[history[-3:]].sum(axis=0), True), (popularity.copy(), False)):
            scores[history] = -np.inf
            hit = target in np.argsort(-scores, kind="stable")[:10]
            text_hits += hit and is_text
            popularity_hits += hit and not is_text
    return text_hits / len(sequences), popularity_hits / len(sequences)


def test_item_text_predicts_the_next_item_better_than_popularity(dataset: Dataset) -> None:
    text_recall, popularity_recall = _recall_at_10(dataset)
    assert popularity_recall > 0.03  # popularity is a real baseline, not noise
    assert text_recall >= 1.5 * popularity_recall
