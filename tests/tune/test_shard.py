"""Sharded evaluation (`host.shard`): two local worker processes and a Dask LocalCluster of
two worker processes give the same outputs, bit for bit, as one worker; shard bounds cover
the rows in order."""

from __future__ import annotations

import pytest

import golden
from host.shard import ShardedEvaluator, shard_bounds

pytestmark = pytest.mark.xdist_group("tune-cnn")


def test_shard_bounds():
    assert shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(2, 5) == [(0, 1), (1, 2)]


def test_sharded_equals_one_worker(float_cnn, images, mixed_assignment):
    from distributed import Client, LocalCluster

    feeds = {"image": images}
    with ShardedEvaluator(float_cnn, feeds, backend="golden", batch=16) as one:
        expected = one.outputs(mixed_assignment)["logits"]
    assert expected.shape == (len(images), 10)
    with ShardedEvaluator(float_cnn, feeds, backend="golden", workers=2, batch=7) as pool:
        assert pool.where == "2 local workers"
        got = pool.map([mixed_assignment, mixed_assignment])
    for outputs in got:
        assert golden.mismatches(expected, outputs["logits"]) == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        with ShardedEvaluator(float_cnn, feeds, backend="golden", cluster=client,
                              batch=5) as dask:
            assert dask.workers == 2 and "Dask cluster" in dask.where
            outputs = dask.outputs(mixed_assignment)
    assert golden.mismatches(expected, outputs["logits"]) == 0
