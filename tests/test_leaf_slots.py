"""Leaves placed on Spark partitions by size, kept there by the partitioner's own hash."""

import pytest
from pyspark.sql import functions as F

from pipelines.train.leaf_slots import balanced_slots, slot_keys


def test_balanced_slots_longest_first_onto_the_least_loaded_slot():
    sizes = {0: 5, 1: 4, 2: 3, 3: 3, 4: 3, 5: 2}
    slots = balanced_slots(sizes, 2)
    # 5 -> s0, 4 -> s1, 3 (leaf 2) -> s1 (7), 3 (leaf 3) -> s0 (8), 3 (leaf 4) -> s1 (10), 2 -> s0
    assert slots == {0: 0, 1: 1, 2: 1, 3: 0, 4: 1, 5: 0}
    loads = [sum(n for leaf, n in sizes.items() if slots[leaf] == s) for s in (0, 1)]
    assert loads == [10, 10]
    # equal sizes: as many leaves on every slot (hashing 16 ids onto 2 partitions rarely is)
    even = balanced_slots({leaf: 1 for leaf in range(16)}, 2)
    assert sorted(even.values()).count(0) == 8
    with pytest.raises(ValueError, match="slots"):
        balanced_slots(sizes, 0)


def test_slot_keys_land_on_their_slot_when_spark_repartitions_by_them(spark):
    slot_of = {leaf: leaf % 3 for leaf in range(10)}
    keys = slot_keys(spark, slot_of, 3)
    assert len(set(keys.values())) == len(keys)
    df = spark.createDataFrame(list(keys.items()), "leaf_id long, key long").repartition(3, "key")
    placed = {
        int(r["leaf_id"]): int(r["p"])
        for r in df.select("leaf_id", F.spark_partition_id().alias("p")).collect()
    }
    assert placed == slot_of
    with pytest.raises(ValueError, match="slot"):
        slot_keys(spark, {0: 3}, 3)
