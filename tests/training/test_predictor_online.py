"""The Predictor's online operations: upsert from text (cold start), similar items, popularity fallback, and
the faiss index agreeing with exact search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_hllm_training import _overrides

from hllm import index as item_index
from hllm.data.schema import DataError
from hllm.data.synth import SynthConfig, generate
from hllm.index import ExactIndex, build_index, write_index
from hllm.predictor import Predictor
from hllm.training.build import load_run_config, run_training


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    dataset = generate(SynthConfig(n_users=60, n_items=48, n_topics=4, max_seq_len=10, seed=5))
    out = tmp_path_factory.mktemp("online")
    overrides = [*_overrides(epochs=1), "hllm.use_item_id_embedding=true", "hllm.item_id_in_target=true"]
    run_training(dataset, load_run_config(None, overrides), out, progress=False)
    return out / "model"


def test_training_writes_the_popularity_fallback(model_dir: Path) -> None:
    popular = json.loads((model_dir / "popular_items.json").read_text())
    predictor = Predictor.load(model_dir)
    assert predictor.popular == popular and len(popular) > 10
    assert predictor.popular_items(3, exclude=popular[:1]) == popular[1:4]


def test_upserted_item_is_recommendable_and_nearest_to_its_own_text(model_dir: Path) -> None:
    predictor = Predictor.load(model_dir)
    item = {"item_id": "fresh", "title": "Completely new titanium gadget", "tag": "new", "description": "cold"}
    assert predictor.upsert_items([item]) == (1, 0)
    assert predictor.similar_items(1, text=item)[0][0] == "fresh"
    ranked = [i for i, _ in predictor.recommend([[predictor.item_ids[0]]], k=len(predictor.item_ids) - 1)[0]]
    assert "fresh" in ranked  # the whole catalogue, the new item included
    history = predictor.recommend([["fresh"]], k=5)[0]
    assert "fresh" not in [i for i, _ in history]  # seen items stay excluded


def test_upserting_a_known_item_keeps_its_id_vector(model_dir: Path) -> None:
    predictor = Predictor.load(model_dir)
    known = predictor.item_ids[3]
    row = predictor.index[known]
    text = predictor.encode_texts([{"item_id": known, "title": "renamed"}])[0]
    id_part = predictor.model.model.item_id_embedding.weight[row].detach()
    assert predictor.upsert_items([{"item_id": known, "title": "renamed"}]) == (0, 1)
    assert torch.allclose(predictor.raw_vectors[row], text + id_part, atol=1e-5)
    assert len(predictor.item_ids) == len(Predictor.load(model_dir).item_ids)


def test_similar_items_and_bad_queries(model_dir: Path) -> None:
    predictor = Predictor.load(model_dir)
    first = predictor.item_ids[0]
    found = predictor.similar_items(5, item_id=first)
    assert len(found) == 5 and first not in [i for i, _ in found]
    with pytest.raises(DataError, match="unknown item id 'nope'"):
        predictor.similar_items(5, item_id="nope")
    with pytest.raises(ValueError, match="exactly one"):
        predictor.similar_items(5)
    with pytest.raises(DataError, match="duplicate item_id"):
        predictor.upsert_items([{"item_id": "a", "title": "x"}, {"item_id": "a", "title": "y"}])


def test_faiss_index_agrees_with_exact_search() -> None:
    torch.manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(2001, 32), dim=-1)
    users = torch.nn.functional.normalize(torch.randn(50, 32), dim=-1)
    exclude = [[1, 2, 3]] * 50
    _, exact_rows = ExactIndex(vectors).search(users, 10, exclude)
    approx_scores, approx_rows = build_index(vectors, "hnsw").search(users, 10, exclude)
    overlap = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx_rows, exact_rows, strict=True))
    assert overlap / 500 > 0.95
    assert not {0, 1, 2, 3} & set(approx_rows.flatten().tolist())
    assert torch.all(approx_scores[:, :-1] >= approx_scores[:, 1:] - 1e-6)
    assert build_index(vectors, "auto", faiss_min_items=1000).kind == "faiss-hnsw"
    assert build_index(vectors, "auto").kind == "exact"
    with pytest.raises(ValueError, match="index kind"):
        build_index(vectors, "annoy")


def test_faiss_index_extended_with_new_rows_finds_them() -> None:
    torch.manual_seed(1)
    vectors = torch.nn.functional.normalize(torch.randn(501, 16), dim=-1)
    index = build_index(vectors[:401], "hnsw")
    index.extend(vectors, old_rows=401)  # what an upsert of 100 new items does
    assert len(index) == 500
    assert index.search(vectors[450:455], 1)[1][:, 0].tolist() == [450, 451, 452, 453, 454]


def test_faiss_index_replaced_rows_are_found_by_their_new_vector_only() -> None:
    torch.manual_seed(2)
    vectors = torch.nn.functional.normalize(torch.randn(301, 16), dim=-1)
    index = build_index(vectors, "hnsw")
    moved = vectors.clone()
    moved[[5, 7]] = vectors[[200, 201]]  # rows 5 and 7 now look like rows 200 and 201
    index.extend(moved, old_rows=301, replaced=[5, 7])  # what re-embedding two known items does: no rebuild
    grown = torch.cat([moved, torch.nn.functional.normalize(torch.randn(2, 16), dim=-1)])
    index.extend(grown, old_rows=301)  # new rows after a replacement still map to their own rows
    assert len(index) == 302
    top = index.search(vectors[[5, 200]], 2, exclude=[[], [200]])[1]
    assert 5 not in top[0].tolist()  # the old vector of row 5 is gone
    assert top[1, 0].item() == 5  # its new vector is found
    assert index.search(grown[[301, 302]], 1)[1][:, 0].tolist() == [301, 302]
    assert all(len(set(row.tolist())) == 10 for row in index.search(grown[1:50], 10)[1])


class ListLog:
    """An in-memory shared catalogue log (what the SQLite/Redis logs of feature_repo do across processes)."""

    def __init__(self) -> None:
        self.entries: list = []

    def add(self, entries) -> None:
        self.entries.extend(entries)

    def since(self, cursor):
        start = cursor or 0
        return list(self.entries[start:]), len(self.entries)


def test_shared_catalogue_reaches_other_replicas_and_restarts_without_re_embedding(model_dir: Path) -> None:
    from hllm.catalogue import SharedCatalogue

    log = ListLog()
    one, two = (SharedCatalogue(Predictor.load(model_dir), log, "m:1") for _ in range(2))
    known = one.predictor.item_ids[2]
    items = [{"item_id": "fresh", "title": "Brand new lamp"}, {"item_id": known, "title": "renamed"}]
    assert one.upsert(items) == (1, 1)
    assert "fresh" not in two.predictor.index
    two.predictor.encode_texts = None  # the other replica must use the stored vectors, not embed again
    assert two.catch_up() == 2 and two.catch_up() == 0
    for row_id in ("fresh", known):
        rows = one.predictor.index[row_id], two.predictor.index[row_id]
        assert torch.equal(one.predictor.raw_vectors[rows[0]], two.predictor.raw_vectors[rows[1]])
    assert two.predictor.similar_items(1, item_id=known) == one.predictor.similar_items(1, item_id=known)
    restarted = SharedCatalogue(Predictor.load(model_dir), log, "m:1")  # a restart replays the log
    restarted.catch_up()
    assert torch.equal(restarted.predictor.raw_vectors, one.predictor.raw_vectors)
    canary = SharedCatalogue(Predictor.load(model_dir), log, "m:2")  # another model re-embeds the stored text
    canary.catch_up()
    row = canary.predictor.index["fresh"]
    assert torch.allclose(canary.predictor.raw_vectors[row], one.predictor.raw_vectors[one.predictor.index["fresh"]])


def test_predictor_reads_the_stored_index_and_upserts_beside_it(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    write_index(folder, "ivf", nlist=1, nprobe=1)  # what the register step does (IVF here to be read back)
    exact = Predictor.load(folder)  # the default (evaluation): exact search

    def no_build(*args, **kwargs):
        raise AssertionError("the stored index must be read, not built")

    monkeypatch.setattr(item_index, "build_index", no_build)
    predictor = Predictor.load(folder, index_kind="auto")
    assert predictor.ann.kind == "faiss-ivf"
    first = predictor.item_ids[0]
    (found,), (expected,) = predictor.recommend([[first]], k=5), exact.recommend([[first]], k=5)
    assert [i for i, _ in found] == [i for i, _ in expected]  # one inverted list probed: the whole catalogue
    assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=1e-5)
    item = {"item_id": "fresh", "title": "Completely new titanium gadget"}
    assert predictor.upsert_items([item, {"item_id": predictor.item_ids[3], "title": "renamed"}]) == (1, 1)
    assert predictor.similar_items(1, text=item)[0][0] == "fresh"
