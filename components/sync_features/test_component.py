from __future__ import annotations

import json
from pathlib import Path

from kfp import dsl
from testdata import artifact

from hllm.data.schema import load_dataset
from hllm_components.sync_features.component import component
from hllm_feature_repo.store import online_histories, open_store


def test_sync_materializes_user_histories_in_order(prepared, tmp_path: Path) -> None:
    summary = artifact(dsl.Artifact, tmp_path / "summary")
    component.python_func(dataset=prepared, feast_home=str(tmp_path / "feast"), summary=summary, history_length=5)
    written = json.loads(Path(summary.path).read_text())
    interactions = load_dataset(prepared.path).interactions
    assert written["users"] == interactions["user_id"].nunique() and written["history_rows"] == len(interactions)
    user = interactions["user_id"].iloc[0]
    expected = interactions[interactions["user_id"] == user].sort_values("timestamp", kind="stable").tail(5)
    (history,) = online_histories(open_store(tmp_path / "feast"), [user])
    assert history["item_ids"] == expected["item_id"].tolist()
    assert history["timestamps"] == expected["timestamp"].tolist()
