import math

import pytest

from pipelines.evaluate.metrics import ranking_metrics


def test_ranking_metrics_hand_computed(spark):
    recs = spark.createDataFrame(
        [(0, 10, 1), (0, 11, 2), (0, 12, 3), (1, 20, 1), (1, 21, 2), (1, 22, 3)],
        "user long, item long, rank int",
    )
    # user 0: test {11, 13} -> hit at rank 2; user 1: test {20} -> hit at rank 1;
    # user 2: test {30}, no recommendations -> 0.
    test = spark.createDataFrame([(0, 11), (0, 13), (1, 20), (2, 30)], "user long, item long")
    m = ranking_metrics(recs, test, k=3)
    assert m["users"] == 3
    assert m["recall@3"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    ndcg0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m["ndcg@3"] == pytest.approx((ndcg0 + 1.0 + 0.0) / 3)
    # Only the first k ranks count.
    m1 = ranking_metrics(recs, test, k=1)
    assert m1["recall@1"] == pytest.approx(1 / 3)
