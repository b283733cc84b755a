"""Feast definitions for HLLM: who (user), what (item), the user's recent items, the item's text.

The offline sources are Parquet files that `hllm.features.write_feature_tables` writes under
``$HLLM_FEAST_OFFLINE_URI`` (default ``$HLLM_FEAST_HOME/offline``). Served online: the last ``HISTORY_LENGTH``
item ids of a user with their timestamps, oldest first, and each item's text.
"""

import os
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
from feast.data_format import ParquetFormat
from feast.types import Array, Int64, String
from feast.value_type import ValueType

HISTORY_LENGTH = 50
_OFFLINE = os.environ.get("HLLM_FEAST_OFFLINE_URI") or os.path.join(
    os.environ.get("HLLM_FEAST_HOME", "data"), "offline"
)

# The person being recommended to; join key of every per-user feature.
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="A user of the catalogue.")
# A catalogue item; join key of the item features.
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="A catalogue item.")

# Batch history: one row per user and event, the history as of that event (point-in-time correct).
interactions_source = FileSource(
    name="interactions_history",
    path=f"{_OFFLINE}/user_history.parquet",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="Each user's recent items after each interaction, written by hllm.features.",
)
# Live events: the service pushes a user's updated history here after each event (issue: serving).
interactions_push = PushSource(name="interactions_push", batch_source=interactions_source)

# Catalogue text, as of the dataset's snapshot time.
items_source = FileSource(
    name="item_text",
    path=f"{_OFFLINE}/item_text.parquet",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="Item text fields (title, tag, description).",
)

# The last HISTORY_LENGTH items of a user and their unix timestamps, oldest first; ttl 0 = never expires.
user_recent_items = FeatureView(
    name="user_recent_items",
    entities=[user],
    ttl=timedelta(0),
    schema=[
        Field(name="recent_item_ids", dtype=Array(String)),
        Field(name="recent_timestamps", dtype=Array(Int64)),
        Field(name="history_length", dtype=Int64),
    ],
    online=True,
    source=interactions_push,
    tags={"owner": "hllm"},
)

# What the Item LLM reads: an item's text fields.
item_text = FeatureView(
    name="item_text",
    entities=[item],
    ttl=timedelta(0),
    schema=[
        Field(name="title", dtype=String),
        Field(name="tag", dtype=String),
        Field(name="description", dtype=String),
    ],
    online=True,
    source=items_source,
    tags={"owner": "hllm"},
)

# Version 1 of what the online service reads per request (a user's history); bump the name on schema changes.
hllm_v1 = FeatureService(name="hllm_v1", features=[user_recent_items], description="HLLM online features, v1.")
# Version 1 of the catalogue features (new items are embedded from these).
hllm_items_v1 = FeatureService(name="hllm_items_v1", features=[item_text], description="HLLM item text, v1.")
