"""Cycle prices (`host.cycles`): a layer's price is what the accelerator's counters count
when the layer runs on the Verilator backend; the count does not depend on the values; a
price is measured once and read from the cache afterwards, without opening a simulator."""

from __future__ import annotations

import numpy as np
import pytest

from host.cycles import CyclePrices, gemm_calls
from host.precision import PrecisionRunner, find_layers
from host.tune import layer_inputs

pytestmark = pytest.mark.xdist_group("tune-cnn")


def test_cycles_do_not_depend_on_the_values(verilator_accelerator):
    rng = np.random.default_rng(5)
    counted = set()
    for _ in range(2):
        a = rng.integers(-128, 128, (40, 72)).astype(np.int8)
        b = rng.integers(-8, 8, (72, 24)).astype(np.int8)
        verilator_accelerator.matmul(a, b, mode="a8w4")
        counted.add(verilator_accelerator.last_stats.cycles)
    assert len(counted) == 1


def test_layer_prices_are_the_counters_and_cached(tmp_path, float_cnn, images,
                                                  mixed_assignment, verilator_accelerator):
    cache = tmp_path / "cycles.json"
    opened = []

    def open_verilator():
        opened.append(1)
        from host import Accelerator

        return Accelerator(backend="verilator")

    layers = {layer.name: layer for layer in find_layers(float_cnn)}
    shapes = {name: value.shape for name, value in layer_inputs(
        float_cnn, {"image": images}, list(layers.values())).items()}
    report = PrecisionRunner(float_cnn, verilator_accelerator, mixed_assignment).run(
        {"image": images})
    with CyclePrices(cache_file=cache, open_accelerator=open_verilator) as prices:
        for node in report.nodes:
            precision = mixed_assignment.layers[node.name]
            assert prices.layer(layers[node.name], precision, shapes[node.name]) \
                == node.cycles, node.name
        measured = prices.measured
    assert measured == len({call for node in report.nodes for call in gemm_calls(
        layers[node.name], mixed_assignment.layers[node.name], shapes[node.name])})
    assert opened == [1]

    def refuse():
        raise AssertionError("a cached price opened the simulator")

    with CyclePrices(cache_file=cache, open_accelerator=refuse) as again:
        total = sum(again.layer(layers[node.name], mixed_assignment.layers[node.name],
                                shapes[node.name]) for node in report.nodes)
        assert again.measured == 0
    assert total == report.cycles
