"""Column-name constants and StructTypes shared by every stage.

Edges are directed rows ``(src, dst[, weight, ts, rel])`` over dense ``int64`` node ids; the id
dictionary maps each dense id back to the original string id (per node ``kind``: node, user,
item, entity, relation).
"""

from __future__ import annotations

from pyspark.sql import types as T

SRC = "src"
DST = "dst"
WEIGHT = "weight"
TS = "ts"
REL = "rel"
NODE_ID = "node_id"
ORIGINAL_ID = "original_id"
KIND = "kind"
USER = "user"
ITEM = "item"
LEAF_ID = "leaf_id"
ROLE = "role"
VECTOR = "vector"
SCORE = "score"
RANK = "rank"

# Rejected rows: everything needed to find and fix the source line.
SOURCE_FILE = "source_file"
LINE_NUMBER = "line_number"
RAW = "raw"
REASON = "reason"

EDGE_SCHEMA = T.StructType(
    [
        T.StructField(SRC, T.LongType(), False),
        T.StructField(DST, T.LongType(), False),
    ]
)

INTERACTION_SCHEMA = T.StructType(
    [
        T.StructField(USER, T.LongType(), False),
        T.StructField(ITEM, T.LongType(), False),
    ]
)

DICTIONARY_SCHEMA = T.StructType(
    [
        T.StructField(KIND, T.StringType(), False),
        T.StructField(ORIGINAL_ID, T.StringType(), False),
        T.StructField(NODE_ID, T.LongType(), False),
    ]
)

REJECTED_SCHEMA = T.StructType(
    [
        T.StructField(SOURCE_FILE, T.StringType(), False),
        T.StructField(LINE_NUMBER, T.LongType(), False),
        T.StructField(RAW, T.StringType(), True),
        T.StructField(REASON, T.StringType(), False),
    ]
)
