"""The stored item index: built once, saved with the model, memory-mapped at load; upserts beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hllm.data.schema import DataError
from hllm.index import FAISS_FILE, INDEX_DIR, META_FILE, ExactIndex, build_index, open_index, read_index, save_index


def _vectors(n: int = 2000, dim: int = 32, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    centres = torch.randn(20, dim)  # clustered, like trained item vectors
    rows = centres[torch.randint(0, 20, (n,))] + 0.5 * torch.randn(n, dim)
    return torch.cat([torch.zeros(1, dim), torch.nn.functional.normalize(rows, dim=-1)])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_saved_index_reads_back_memory_mapped_with_identical_results(kind: str, tmp_path: Path) -> None:
    vectors = _vectors()
    users = torch.nn.functional.normalize(torch.randn(40, 32), dim=-1)
    exclude = [[1, 2, 3]] * 40
    built = build_index(vectors, kind, nlist=16, nprobe=4) if kind == "ivf" else build_index(vectors, kind)
    save_index(built, vectors, tmp_path)
    meta = json.loads((tmp_path / INDEX_DIR / META_FILE).read_text())
    assert meta["kind"] == built.kind and meta["items"] == 2000 and meta["params"] == built.params
    loaded = read_index(tmp_path, vectors)
    assert loaded.kind == built.kind and len(loaded) == 2000
    for a, b in zip(built.search(users, 10, exclude), loaded.search(users, 10, exclude), strict=True):
        assert torch.equal(a, b)
    assert not {0, 1, 2, 3} & set(loaded.search(users, 10, exclude)[1].flatten().tolist())


def test_exact_kind_is_recorded_and_needs_no_file(tmp_path: Path) -> None:
    vectors = _vectors(300)
    save_index(build_index(vectors, "auto"), vectors, tmp_path)
    assert json.loads((tmp_path / INDEX_DIR / META_FILE).read_text())["kind"] == "exact"
    assert not (tmp_path / INDEX_DIR / FAISS_FILE).exists()
    assert isinstance(read_index(tmp_path, vectors), ExactIndex)


def test_upserts_on_a_memory_mapped_index_go_beside_it(tmp_path: Path) -> None:
    vectors = _vectors()
    save_index(build_index(vectors, "ivf", nlist=16, nprobe=16), vectors, tmp_path)
    index = read_index(tmp_path, vectors)
    grown = torch.cat([vectors, _vectors(5, seed=7)[1:]])  # 5 new rows: 2001..2005
    replaced = 10
    grown[replaced] = -vectors[replaced]  # a known item re-embedded: its old vector must no longer match
    index.extend(grown, old_rows=len(vectors), replaced=[replaced])
    assert len(index) == 2005 and index.index.ntotal == 2000  # the mapped index itself is untouched
    assert index.search(grown[2001:2006], 1)[1][:, 0].tolist() == [2001, 2002, 2003, 2004, 2005]
    assert index.search(grown[replaced : replaced + 1], 1)[1][0, 0] == replaced
    assert replaced not in index.search(vectors[replaced : replaced + 1], 50)[1][0].tolist()
    scores, rows = index.search(grown[2001:2002], 5, exclude=[[2001]])
    assert 2001 not in rows[0].tolist() and torch.all(scores[0, :-1] >= scores[0, 1:])
    with pytest.raises(ValueError, match="upserted rows cannot be saved"):
        save_index(index, grown, tmp_path / "again")


def test_stored_index_of_other_vectors_or_corrupt_file_fails_naming_the_file(tmp_path: Path) -> None:
    vectors = _vectors()
    save_index(build_index(vectors, "ivf", nlist=16), vectors, tmp_path)
    meta_file = tmp_path / INDEX_DIR / META_FILE
    with pytest.raises(DataError, match="does not match") as info:
        read_index(tmp_path, vectors[:1500])
    assert str(meta_file) in str(info.value)
    with pytest.raises(DataError, match="other item vectors") as info:
        read_index(tmp_path, _vectors(seed=1))
    assert str(meta_file) in str(info.value)
    faiss_file = tmp_path / INDEX_DIR / FAISS_FILE
    faiss_file.write_bytes(faiss_file.read_bytes()[:1000])
    with pytest.raises(DataError, match="unreadable faiss index") as info:
        read_index(tmp_path, vectors)
    assert str(faiss_file) in str(info.value)
    meta_file.write_text("{not json")
    with pytest.raises(DataError, match="unreadable item index metadata") as info:
        open_index(vectors, "auto", tmp_path)
    assert str(meta_file) in str(info.value)


def test_open_index_uses_the_stored_kind_or_builds_the_asked_one(tmp_path: Path) -> None:
    vectors = _vectors()
    save_index(build_index(vectors, "ivf", nlist=16), vectors, tmp_path)
    assert open_index(vectors, "auto", tmp_path).kind == "faiss-ivf"
    assert open_index(vectors, "faiss", tmp_path).kind == "faiss-ivf"
    assert open_index(vectors, "exact", tmp_path).kind == "exact"
    assert open_index(vectors, "hnsw", tmp_path).kind == "faiss-hnsw"  # not stored: built
    assert open_index(vectors, "auto", None).kind == "exact"  # 2000 items: below FAISS_MIN_ITEMS
    with pytest.raises(ValueError, match="index kind"):
        open_index(vectors, "annoy", tmp_path)


def test_ef_search_follows_the_catalogue_size_and_the_query_kind(monkeypatch) -> None:
    from hllm import index as item_index

    assert item_index.hnsw_ef_search(2_000) == {"ef_search": 256, "ef_search_user": 128}
    assert item_index.hnsw_ef_search(100_000) == {"ef_search": 256, "ef_search_user": 128}
    assert item_index.hnsw_ef_search(100_001) == {"ef_search": 1536, "ef_search_user": 512}
    assert item_index.hnsw_ef_search(5_000_000) == {"ef_search": 1536, "ef_search_user": 512}  # beyond: last row
    torch.manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(301, 8), dim=-1)
    built = build_index(vectors, "hnsw")
    assert built.params["ef_search"] == 256 and built.params["ef_search_user"] == 128
    asked: list[int] = []  # the efSearch of every per-call faiss.SearchParametersHNSW the search builds
    import faiss

    real = faiss.SearchParametersHNSW

    def recording(**kwargs):
        asked.append(kwargs["efSearch"])
        return real(**kwargs)

    monkeypatch.setattr(faiss, "SearchParametersHNSW", recording)
    built.search(vectors[1:3], 5)  # item queries: the index's own efSearch, no per-call parameters
    built.search(vectors[1:3], 5, user_queries=True)
    assert asked == [128]
    older = build_index(vectors, "hnsw", ef_search=64)
    del older.params["ef_search_user"]  # an index registered before the split: user queries use ef_search
    older.search(vectors[1:3], 5, user_queries=True)
    assert asked == [128]
