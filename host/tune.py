"""`lpmac tune`: one accelerator mode per layer of a float ONNX model, chosen by measured
sensitivity under an accuracy (or fidelity) budget and priced by the accelerator's own cycle
counts (docs/mixed-precision.md has the method, the formulas and the measured results).

    result = tune("float.onnx", dataset, out="tuned/", metric="accuracy", budget=1.0)
    result.assignment.save(...); result.cycles, result.baseline_cycles

Steps:

1. Reference: the float model in ONNX Runtime over the dataset (its metric is `float_metric`).
2. Calibration (the first `calibration` rows): every layer's input; for each option of a
   layer (mode x rotation) the activation scale / zero point and the weight scales
   (`host.precision.activation_quant`, `weight_scales`: MSE-optimal clipping).
3. Cycles of each option: its GEMMs on the Verilator build for one batch of `batch` rows
   (`host.cycles.CyclePrices`, measured once per shape and cached).
4. Sensitivity, Hessian: the traces of the task loss's Hessian with respect to each layer's
   weights and input activations, by Hutchinson's estimator E[v^T H v] (Rademacher v) with
   v^T H v from a central second difference of the loss in ONNX Runtime;
   Omega_H(l, o) = 1/2 (tr(H_W) mse(dW) + tr(H_X) mse(dX)).
5. Inter-layer dependencies: the measured loss increase of each option in the context of
   every other layer at the baseline (A8W8), exact arithmetic (`GoldenFunctions`); the
   augmented sensitivity adds to Omega_H the part of that increase the per-layer Hessian
   term does not explain (the cross terms between layers).
6. Search, per ordering (Hessian-only, augmented): per layer a convex chain of ever cheaper
   options; all layers' moves sorted by sensitivity per saved cycle; a bisection over the
   prefix of that order for the most aggressive assignment within budget, every probe a real
   evaluation of the model over the dataset (sharded, `host.shard`); then (augmented
   orderings) the moves past that prefix tried one by one, each kept if the model stays
   within budget (`refine` evaluations at most); plus a sweep of prefixes for the Pareto
   curves; and the same search without rotation (Hadamard report).
7. Result: the evaluated assignment with the fewest cycles that meets the budget, written
   with `pareto.md` and `pareto.png`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import golden
from golden.config import MODE_INFO, ArrayConfig

from .precision import (
    FloatLayer,
    LayerPrecision,
    PrecisionAssignment,
    QuantizedLayer,
    activation_quant,
    find_layers,
    model_sha256,
    quantize_activations,
    weight_scales,
)
from .rotation import rotation_blocks

__all__ = ["METRICS", "TUNE_MODES", "UNIFORM_MODES", "Option", "Point", "TuneResult", "tune",
           "load_dataset", "metric_value", "meets", "hutchinson_trace", "calibrate",
           "calibrate_layer", "layer_inputs"]

METRICS = ("accuracy", "cosine", "sqnr")
DEFAULT_BUDGET = {"accuracy": 1.0, "cosine": 0.99, "sqnr": 30.0}
TUNE_MODES = ("a8w8", "a8w4", "a4w4", "mxint8", "mxint4", "mxint8w4")
UNIFORM_MODES = ("a8w8", "a8w4", "a4w4", "mxint8", "mxint4", "mxint8w4")
BASELINE = "a8w8"
ROTATION_PREFERENCE = (32, 64, 16)

Progress = Callable[[str], None]


# --- Data and metrics ----------------------------------------------------------------------

def load_dataset(path: str | Path, input_names: list[str]) -> tuple[dict[str, np.ndarray],
                                                                    np.ndarray | None]:
    """(feeds, labels) from an .npz with one array per model input (named as the input) and
    optionally `labels` (class indices)."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the dataset {path}: {error}") from None
    with archive:
        names = list(archive.files)
        missing = [name for name in input_names if name not in names]
        if missing:
            raise ValueError(f"the dataset {path} has no array {missing[0]} (the model's "
                             f"inputs: {', '.join(input_names)}; it holds {', '.join(names)})")
        extra = [name for name in names if name not in input_names and name != "labels"]
        if extra:
            raise ValueError(f"the dataset {path} holds {extra[0]}, which is neither a model "
                             "input nor labels")
        feeds = {name: archive[name] for name in input_names}
        labels = archive["labels"] if "labels" in names else None
    rows = {value.shape[0] if value.ndim else 0 for value in feeds.values()}
    if len(rows) != 1 or 0 in rows:
        raise ValueError(f"every array of {path} must have the same, non-zero number of rows")
    if labels is not None:
        if labels.ndim != 1 or labels.shape[0] != rows.copy().pop() \
                or labels.dtype.kind not in "iu":
            raise ValueError(f"labels in {path} must be integer class indices, one per row")
    return feeds, labels


def metric_value(metric: str, outputs: np.ndarray, reference: np.ndarray,
                 labels: np.ndarray | None) -> float:
    """accuracy: percent of rows whose argmax is the label; cosine: mean cosine similarity of
    the rows with the float model's; sqnr: 10 log10(sum y^2 / sum (y - y_float)^2) in dB."""
    outputs = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    reference = np.asarray(reference, np.float64).reshape(len(reference), -1)
    if metric == "accuracy":
        assert labels is not None
        return float(np.mean(outputs.argmax(axis=1) == labels) * 100)
    if metric == "cosine":
        norms = np.linalg.norm(outputs, axis=1) * np.linalg.norm(reference, axis=1)
        return float(np.mean((outputs * reference).sum(axis=1) / np.maximum(norms, 1e-30)))
    noise = float(((outputs - reference) ** 2).sum())
    return float("inf") if noise == 0 else 10 * math.log10(float((reference ** 2).sum())
                                                           / noise)


def meets(metric: str, value: float, float_metric: float, budget: float) -> bool:
    """Whether `value` is within budget: accuracy at most `budget` points below the float
    model's; cosine or SQNR at least `budget`."""
    if metric == "accuracy":
        return value >= float_metric - budget - 1e-9
    return value >= budget


def _loss(kind: str, outputs: np.ndarray, reference: np.ndarray,
          labels: np.ndarray | None) -> float:
    """The task loss of the sensitivities: mean cross-entropy for labelled data, else
    1 - cosine similarity to the float outputs (mean over rows)."""
    outputs = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    if kind == "accuracy":
        assert labels is not None
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-log_softmax[np.arange(len(labels)), labels].mean())
    return 1.0 - metric_value("cosine", outputs, reference, None)


# --- Hessian traces ------------------------------------------------------------------------

def hutchinson_trace(loss: Callable[[np.ndarray], float], point: np.ndarray, *, samples: int,
                     step: float, seed: int) -> float:
    """Hutchinson's estimate of tr(H) of `loss` at `point`: the mean over Rademacher vectors
    v of v^T H v, each from the central second difference
    (loss(p + h v) - 2 loss(p) + loss(p - h v)) / h^2 (exact for a quadratic loss)."""
    rng = np.random.default_rng(seed)
    centre = loss(point)
    total = 0.0
    for _ in range(samples):
        v = rng.choice(np.array([-1.0, 1.0], np.float32), size=point.shape)
        delta = (np.float32(step) * v).astype(point.dtype)
        total += (loss(point + delta) - 2 * centre + loss(point - delta)) / step ** 2
    return total / samples


class _PerturbedModel:
    """The float model with each layer's weights and input as extra graph inputs, so ONNX
    Runtime computes the loss at perturbed weights and activations."""

    def __init__(self, model: Any, layers: list[FloatLayer]) -> None:
        import onnx
        import onnxruntime as ort
        from onnx import helper

        from .runner import _load, _quiet_options

        proto = onnx.ModelProto()
        proto.CopyFrom(_load(model)[0])
        graph = proto.graph
        self.weight_inputs: dict[str, str] = {}
        self.noise_inputs: dict[str, str] = {}
        by_name = {node.name or node.output[0]: node for node in graph.node}
        initializers = {t.name: t for t in graph.initializer}
        for index, layer in enumerate(layers):
            node = by_name[layer.name]
            weight = node.input[1]
            tensor = initializers[weight]
            name = f"lpmac_weight_{index}"
            graph.input.append(helper.make_tensor_value_info(name, tensor.data_type,
                                                             list(tensor.dims)))
            node.input[1] = name
            self.weight_inputs[layer.name] = name
            noise = f"lpmac_noise_{index}"
            added = f"lpmac_input_{index}"
            graph.input.append(onnx.ValueInfoProto(name=noise))
            graph.input[-1].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
            graph.node.append(helper.make_node("Add", [node.input[0], noise], [added]))
            node.input[0] = added
            self.noise_inputs[layer.name] = noise
        from .runner import _topological

        sorted_nodes = _topological(list(graph.node))
        del graph.node[:]
        graph.node.extend(sorted_nodes)
        options = _quiet_options(ort)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self.session = ort.InferenceSession(proto.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])
        self.output = self.session.get_outputs()[0].name

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.output], feeds)[0]


def _stored_weight(model: Any, layer: FloatLayer) -> np.ndarray:
    from onnx import numpy_helper

    from .runner import _load

    proto = _load(model)[0]
    node = next(n for n in proto.graph.node if (n.name or n.output[0]) == layer.name)
    tensor = next(t for t in proto.graph.initializer if t.name == node.input[1])
    return numpy_helper.to_array(tensor).astype(np.float32)


# --- Calibration ---------------------------------------------------------------------------

def calibrate_layer(layer: FloatLayer, mode: str, rotation: int | None,
                    x: np.ndarray) -> LayerPrecision:
    """The precision of `layer` in `mode` (and rotation) calibrated on its float inputs `x`:
    activation scale / zero point and per-channel weight scales for the integer modes."""
    info = MODE_INFO[mode]
    if info.mx:
        return LayerPrecision(layer.name, mode, rotation)
    rotated = layer.rotated_input(x, rotation)
    activation = activation_quant(rotated, info.activation_bits)
    matrices = layer.matrices(layer.rotated_weight(rotation))
    scales = np.concatenate([weight_scales(m, info.weight_bits) for m in matrices])
    return LayerPrecision(layer.name, mode, rotation, activation,
                          tuple(float(s) for s in scales))


def layer_inputs(model: str | Path, feeds: Mapping[str, np.ndarray],
                 layers: list[FloatLayer]) -> dict[str, np.ndarray]:
    """Each layer's float input on `feeds` (the float model in ONNX Runtime)."""
    import onnx
    import onnxruntime as ort

    from .runner import _quiet_options

    proto = onnx.load(str(model))
    present = {o.name for o in proto.graph.output}
    for name in dict.fromkeys(layer.input for layer in layers):
        if name not in present:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
    session = ort.InferenceSession(proto.SerializeToString(), _quiet_options(ort),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(None, dict(feeds)), strict=True))
    return {layer.name: values[layer.input] for layer in layers}


def calibrate(model: str | Path, feeds: Mapping[str, np.ndarray],
              modes: str | Mapping[str, str | tuple[str, int | None]]) -> PrecisionAssignment:
    """An assignment of `model` calibrated on `feeds`: one mode for every layer, or
    {layer: mode or (mode, rotation block)} (layers left out stay in float)."""
    layers = find_layers(model)
    inputs = layer_inputs(model, feeds, layers)
    chosen: dict[str, LayerPrecision] = {}
    for layer in layers:
        spec = modes if isinstance(modes, str) else modes.get(layer.name)
        if spec is None:
            continue
        mode, rotation = (spec, None) if isinstance(spec, str) else spec
        chosen[layer.name] = calibrate_layer(layer, mode, rotation, inputs[layer.name])
    return PrecisionAssignment(model_sha256(model), chosen, Path(model).name)


# --- Options, points, result ---------------------------------------------------------------

@dataclass
class Option:
    """One way to run one layer: its precision, cycles and sensitivities."""

    layer: str
    precision: LayerPrecision
    cycles: int
    mse_weights: float = 0.0
    mse_inputs: float = 0.0
    hessian: float = 0.0
    measured: float = 0.0
    augmented: float = 0.0

    @property
    def label(self) -> str:
        rotation = f"+H{self.precision.rotation}" if self.precision.rotation else ""
        return f"{self.precision.mode}{rotation}"


@dataclass
class Point:
    """One evaluated assignment."""

    name: str
    kind: str               # uniform, frontier, bisection, chosen ...
    ordering: str | None
    cycles: int
    metric: float
    meets: bool
    assignment: PrecisionAssignment
    prefix: int | None = None

    @property
    def four_bit_layers(self) -> int:
        return sum(1 for layer in self.assignment.layers.values()
                   if MODE_INFO[layer.mode].weight_bits == 4)

    @property
    def rotated_layers(self) -> int:
        return sum(1 for layer in self.assignment.layers.values() if layer.rotation)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "ordering": self.ordering,
                "prefix": self.prefix, "cycles": self.cycles, "metric": self.metric,
                "meets": self.meets, "four_bit_layers": self.four_bit_layers,
                "rotated_layers": self.rotated_layers}


@dataclass
class TuneResult:
    assignment: PrecisionAssignment
    summary: dict[str, Any]
    points: list[Point]
    options: dict[str, list[Option]]
    files: dict[str, str] = field(default_factory=dict)


# --- The tuner -----------------------------------------------------------------------------

class _Tuner:
    def __init__(self, model: Path, feeds: dict[str, np.ndarray], labels: np.ndarray | None, *,
                 metric: str, budget: float, backend: str, workers: int, cluster: Any,
                 batch: int, calibration: int, samples: int, config: ArrayConfig,
                 progress: Progress | None, prices: Any = None, seed: int = 0) -> None:
        self.model = Path(model)
        self.feeds = feeds
        self.labels = labels
        self.metric = metric
        self.budget = budget
        self.backend = backend
        self.config = config
        self.progress = progress or (lambda message: None)
        self.rows = next(iter(feeds.values())).shape[0]
        self.batch = min(batch, self.rows)
        self.calibration = min(calibration, self.rows)
        self.samples = samples
        self.seed = seed
        self.sha = model_sha256(self.model)
        self.layers = find_layers(self.model)
        if not self.layers:
            raise ValueError(f"{self.model} has no MatMul, Gemm or Conv with constant weights")
        from .shard import ShardedEvaluator

        self.evaluator = ShardedEvaluator(self.model, feeds, backend=backend, workers=workers,
                                          cluster=cluster, batch=self.batch)
        self._prices = prices
        self.evaluations = 0
        self.winner = "augmented"

    def close(self) -> None:
        self.evaluator.close()
        if self._prices is not None:
            self._prices.close()

    # --- Reference and calibration ---

    def reference(self) -> None:
        import onnx
        import onnxruntime as ort

        from .runner import _quiet_options

        proto = onnx.load(str(self.model))
        self.output_name = proto.graph.output[0].name
        wanted = [layer.input for layer in self.layers]
        for name in dict.fromkeys(wanted):
            if name not in [o.name for o in proto.graph.output]:
                proto.graph.output.append(onnx.ValueInfoProto(name=name))
        session = ort.InferenceSession(proto.SerializeToString(), _quiet_options(ort),
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        full = dict(zip(names, session.run(None, self.feeds), strict=True))
        self.float_outputs = full[self.output_name]
        if self.metric == "accuracy" and (self.float_outputs.ndim != 2):
            raise ValueError("--metric accuracy needs a first output of [rows, classes] "
                             f"scores, not of shape {self.float_outputs.shape}")
        self.float_metric = metric_value(self.metric, self.float_outputs, self.float_outputs,
                                         self.labels)
        rows = self.calibration
        self.inputs = {layer.name: full[layer.input][:rows] for layer in self.layers}
        self.calibration_feeds = {name: value[:rows] for name, value in self.feeds.items()}
        self.calibration_labels = None if self.labels is None else self.labels[:rows]
        self.calibration_reference = self.float_outputs[:rows]

    def options(self, rotation: bool = True) -> dict[str, list[Option]]:
        """Every layer's options (mode x rotation), calibrated, priced."""
        from .cycles import CyclePrices

        if self._prices is None:
            self._prices = CyclePrices(self.config, progress=self.progress)
        options: dict[str, list[Option]] = {}
        for layer in self.layers:
            x = self.inputs[layer.name]
            shape = (self.batch, *x.shape[1:])
            blocks = rotation_blocks(layer.rotated_length) if layer.groups == 1 else ()
            block = next((b for b in ROTATION_PREFERENCE if b in blocks), None)
            rotations = [None] + ([block] if block and rotation else [])
            layer_options = []
            for mode in TUNE_MODES:
                for rot in rotations:
                    precision = self._calibrate(layer, mode, rot, x)
                    option = Option(layer.name, precision,
                                    self._prices.layer(layer, precision, shape))
                    option.mse_weights, option.mse_inputs = self._errors(layer, precision, x)
                    layer_options.append(option)
            options[layer.name] = layer_options
        self.progress(f"{sum(map(len, options.values()))} options of {len(self.layers)} "
                      f"layers calibrated and priced ({self._prices.measured} GEMM shapes "
                      "simulated, the rest from the cycle cache)")
        return options

    def _calibrate(self, layer: FloatLayer, mode: str, rotation: int | None,
                   x: np.ndarray) -> LayerPrecision:
        return calibrate_layer(layer, mode, rotation, x)

    def _errors(self, layer: FloatLayer, precision: LayerPrecision, x: np.ndarray
                ) -> tuple[float, float]:
        """Mean squared quantization error of the layer's weights and of its GEMM
        activations (in the rotated space, where they are quantized)."""
        quantized = QuantizedLayer(layer, precision, self.config)
        info = precision.info
        rotated = layer.rotated_input(x, precision.rotation)
        if info.mx:
            fmt_a, fmt_b = info.mx_formats
            block = self.config.block_size
            squared = count = 0.0
            for matrix in quantized._float:
                elements, codes = golden.mx_quantize(matrix, fmt_b, block, axis=0)
                error = golden.mx_dequantize(elements, codes, fmt_b, block, axis=0) - matrix
                squared += float((error ** 2).sum())
                count += float(np.count_nonzero(matrix)) or 1.0
            mse_w = squared / count
            if layer.kind == "matmul":
                operand = rotated.reshape(-1, layer.k)
            else:
                from .lowering import conv_patches

                patches, _ = conv_patches(rotated, layer.geometry(rotated.shape), 0)
                first, end = quantized.packs[0]
                operand = np.concatenate(patches[first:end], axis=1)
            elements, codes = golden.mx_quantize(operand, fmt_a, block, axis=1)
            mse_x = float(((golden.mx_dequantize(elements, codes, fmt_a, block, axis=1)
                            - operand) ** 2).mean())
            return mse_w, mse_x
        activation = precision.activation
        assert activation is not None
        dequantized = (quantize_activations(rotated, activation).astype(np.float32)
                       - np.float32(activation.zero_point)) * np.float32(activation.scale)
        mse_x = float(((dequantized - rotated) ** 2).mean())
        scales = np.asarray(precision.weight_scales, np.float32)
        matrices = layer.matrices(layer.rotated_weight(precision.rotation))
        per_group = matrices[0].shape[1]
        squared = 0.0
        for g, matrix in enumerate(matrices):
            s = scales[g * per_group:(g + 1) * per_group]
            q = np.clip(np.rint(matrix / s), -(2 ** (info.weight_bits - 1) - 1),
                        2 ** (info.weight_bits - 1) - 1)
            squared += float(((q * s - matrix) ** 2).sum())
        return squared / layer.weight.size, mse_x

    # --- Sensitivity ---

    def hessian(self, options: dict[str, list[Option]]) -> dict[str, tuple[float, float]]:
        """(tr H_W, tr H_X) of every layer, Hutchinson by finite differences in ONNX Runtime."""
        perturbed = _PerturbedModel(self.model, self.layers)
        weights = {layer.name: _stored_weight(self.model, layer) for layer in self.layers}
        zeros = {layer.name: np.zeros_like(self.inputs[layer.name]) for layer in self.layers}
        base = dict(self.calibration_feeds)
        for layer in self.layers:
            base[perturbed.weight_inputs[layer.name]] = weights[layer.name]
            base[perturbed.noise_inputs[layer.name]] = zeros[layer.name]

        def loss_of(outputs: np.ndarray) -> float:
            return _loss(self.metric, outputs, self.calibration_reference,
                         self.calibration_labels)

        traces: dict[str, tuple[float, float]] = {}
        for index, layer in enumerate(self.layers):
            def weight_loss(value: np.ndarray, layer: FloatLayer = layer) -> float:
                return loss_of(perturbed.run({**base, perturbed.weight_inputs[layer.name]:
                                              value}))

            def input_loss(value: np.ndarray, layer: FloatLayer = layer) -> float:
                return loss_of(perturbed.run({**base, perturbed.noise_inputs[layer.name]:
                                              value}))

            weight = weights[layer.name]
            x = self.inputs[layer.name]
            step_w = 0.05 * float(np.sqrt((weight.astype(np.float64) ** 2).mean())) or 1e-3
            step_x = 0.05 * float(np.sqrt((x.astype(np.float64) ** 2).mean())) or 1e-3
            trace_w = hutchinson_trace(weight_loss, weight, samples=self.samples, step=step_w,
                                       seed=self.seed + 2 * index)
            trace_x = hutchinson_trace(input_loss, zeros[layer.name], samples=self.samples,
                                       step=step_x, seed=self.seed + 2 * index + 1)
            traces[layer.name] = (trace_w, trace_x)
            for option in options[layer.name]:
                option.hessian = 0.5 * (max(trace_w, 0.0) * option.mse_weights
                                        + max(trace_x, 0.0) * option.mse_inputs)
        self.progress(f"Hessian traces of {len(self.layers)} layers ({self.samples} "
                      "Hutchinson samples each)")
        return traces

    def _assignment(self, chosen: Mapping[str, Option]) -> PrecisionAssignment:
        return PrecisionAssignment(self.sha, {name: chosen[name].precision
                                              for name in (layer.name for layer in self.layers)},
                                   self.model.name)

    def dependencies(self, options: dict[str, list[Option]]) -> None:
        """The measured loss increase of every option with all other layers at the baseline
        (exact arithmetic, calibration rows), and the augmented sensitivity."""
        base = {name: self._baseline(opts) for name, opts in options.items()}
        candidates = [self._assignment(base)]
        keys: list[tuple[str, int]] = []
        for name, layer_options in options.items():
            for index, option in enumerate(layer_options):
                if option is base[name]:
                    continue
                candidates.append(self._assignment({**base, name: option}))
                keys.append((name, index))
        outputs = self.evaluator.map(candidates, rows=self.calibration,
                                     backend="golden-functions")
        losses = [_loss(self.metric, out[self.output_name], self.calibration_reference,
                        self.calibration_labels) for out in outputs]
        base_loss = losses[0]
        for name in options:
            base[name].measured = 0.0
        for (name, index), loss in zip(keys, losses[1:], strict=True):
            options[name][index].measured = loss - base_loss
        for name, layer_options in options.items():
            reference = base[name].hessian
            for option in layer_options:
                # Omega_aug = Omega_H + (measured increase - the increase Omega_H predicts).
                option.augmented = option.hessian + (option.measured
                                                     - (option.hessian - reference))
        self.progress(f"inter-layer dependencies: {len(candidates)} assignments measured on "
                      f"{self.calibration} rows")

    @staticmethod
    def _baseline(layer_options: list[Option]) -> Option:
        return next(o for o in layer_options
                    if o.precision.mode == BASELINE and o.precision.rotation is None)

    # --- Search ---

    def order(self, options: dict[str, list[Option]], key: str, rotation: bool = True
              ) -> tuple[dict[str, Option], list[tuple[str, Option, float]]]:
        """(start, moves): each layer starts at its most accurate option by the Hessian
        estimate among those costing at most 2% more cycles than the baseline (A8W8); its
        moves follow the lower convex hull of (cycles, sensitivity by `key`) down to its
        cheapest option; all moves sorted by added sensitivity per saved cycle."""
        start: dict[str, Option] = {}
        moves: list[tuple[str, Option, float]] = []
        for name, layer_options in options.items():
            usable = [o for o in layer_options if rotation or o.precision.rotation is None]
            base = self._baseline(usable)
            affordable = [o for o in usable if o.cycles <= base.cycles * 1.02]
            current = min(affordable, key=lambda o: (o.hessian, o.cycles))
            start[name] = current
            while True:
                cheaper = [o for o in usable if o.cycles < current.cycles]
                if not cheaper:
                    break
                best = min(cheaper, key=lambda o: (
                    (getattr(o, key) - getattr(current, key)) / (current.cycles - o.cycles),
                    o.cycles))
                ratio = (getattr(best, key) - getattr(current, key)) \
                    / (current.cycles - best.cycles)
                moves.append((name, best, ratio))
                current = best
        moves.sort(key=lambda move: move[2])
        return start, moves

    def prefix(self, start: dict[str, Option], moves: list[tuple[str, Option, float]],
               count: int) -> tuple[PrecisionAssignment, int]:
        chosen = dict(start)
        for name, option, _ in moves[:count]:
            chosen[name] = option
        return self._assignment(chosen), sum(o.cycles for o in chosen.values())

    def evaluate(self, assignments: list[PrecisionAssignment]) -> list[float]:
        """The metric of each assignment over the whole dataset (sharded)."""
        outputs = self.evaluator.map(assignments)
        self.evaluations += len(assignments)
        return [metric_value(self.metric, out[self.output_name], self.float_outputs,
                             self.labels) for out in outputs]

    def point(self, name: str, kind: str, ordering: str | None, assignment: PrecisionAssignment,
              cycles: int, value: float, prefix: int | None = None) -> Point:
        return Point(name, kind, ordering, cycles, value,
                     meets(self.metric, value, self.float_metric, self.budget), assignment,
                     prefix)

    def bisect(self, start: dict[str, Option], moves: list[tuple[str, Option, float]],
               ordering: str, known: dict[int, Point]) -> Point | None:
        """The longest prefix within budget, assuming the metric falls along the order."""
        def probe(count: int) -> Point:
            if count not in known:
                assignment, cycles = self.prefix(start, moves, count)
                value = self.evaluate([assignment])[0]
                known[count] = self.point(f"{ordering} prefix {count}", "bisection", ordering,
                                          assignment, cycles, value, count)
                self.progress(f"  {ordering}: prefix {count}/{len(moves)}: "
                              f"{cycles:,} cycles, {self.metric} {value:.4f}"
                              f"{'' if known[count].meets else ' (over budget)'}")
            return known[count]

        low, high = 0, len(moves)
        if not probe(low).meets:
            return None
        if probe(high).meets:
            return known[high]
        while high - low > 1:
            middle = (low + high) // 2
            if probe(middle).meets:
                low = middle
            else:
                high = middle
        return known[low]

    def refine(self, start: dict[str, Option], moves: list[tuple[str, Option, float]],
               found: Point, ordering: str, evaluations: int) -> Point:
        """After the bisection: try the moves past the prefix one at a time, in order, and
        keep each one that stays within budget (a move of a layer whose earlier move was
        refused is skipped); at most `evaluations` evaluations."""
        assert found.prefix is not None
        chosen = dict(start)
        for name, option, _ in moves[:found.prefix]:
            chosen[name] = option
        best, refused, tried = found, set(), 0
        for index, (name, option, _) in enumerate(moves[found.prefix:], found.prefix):
            if tried >= evaluations:
                break
            if name in refused:
                continue
            trial = {**chosen, name: option}
            assignment = self._assignment(trial)
            cycles = sum(o.cycles for o in trial.values())
            value = self.evaluate([assignment])[0]
            tried += 1
            point = self.point(f"{ordering} refined {index + 1}", "refinement", ordering,
                               assignment, cycles, value)
            self.progress(f"  {ordering}: + move {index + 1} ({name} -> {option.label}): "
                          f"{cycles:,} cycles, {self.metric} {value:.4f}"
                          f"{'' if point.meets else ' (over budget, undone)'}")
            if point.meets:
                chosen, best = trial, point
            else:
                refused.add(name)
        return best

    def sweep(self, start: dict[str, Option], moves: list[tuple[str, Option, float]],
              ordering: str, steps: int, known: dict[int, Point]) -> None:
        counts = sorted({round(len(moves) * i / steps) for i in range(steps + 1)} - set(known))
        pairs = [self.prefix(start, moves, count) for count in counts]
        values = self.evaluate([assignment for assignment, _ in pairs])
        for count, (assignment, cycles), value in zip(counts, pairs, values, strict=True):
            known[count] = self.point(f"{ordering} prefix {count}", "frontier", ordering,
                                      assignment, cycles, value, count)
        self.progress(f"  {ordering}: {len(counts)} frontier points evaluated")


def tune(model: str | Path, dataset: str | Path | tuple[dict[str, np.ndarray],
                                                           np.ndarray | None], *,
         out: str | Path, metric: str | None = None, budget: float | None = None,
         backend: str = "golden", workers: int = 1, cluster: Any = None, batch: int = 64,
         calibration: int = 256, samples: int = 8, sweep: int = 8, refine: int = 12,
         config: ArrayConfig | None = None, prices: Any = None,
         progress: Progress | None = None) -> TuneResult:
    """Search per-layer precisions of the float ONNX `model` on `dataset` (an .npz path or
    (feeds, labels)) and write `precision.json`, `pareto.md`, `pareto.png` and `tune.json`
    to `out` (see the module docstring). `metric` defaults to accuracy with labels, cosine
    without; `budget` to 1 point, 0.99 or 30 dB."""
    import onnxruntime as ort

    from .runner import _load, _quiet_options

    start_time = time.perf_counter()
    progress = progress or (lambda message: None)
    model = Path(model)
    _, data, name = _load(model)
    try:
        session = ort.InferenceSession(data, _quiet_options(ort),
                                       providers=["CPUExecutionProvider"])
    except Exception as error:     # ORT's own exception types
        raise ValueError(f"ONNX Runtime cannot load {name}: {error}") from None
    input_names = [i.name for i in session.get_inputs()]
    if isinstance(dataset, tuple):
        feeds, labels = dataset
    else:
        feeds, labels = load_dataset(dataset, input_names)
    metric = metric or ("accuracy" if labels is not None else "cosine")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    if metric == "accuracy" and labels is None:
        raise ValueError("--metric accuracy needs labels in the dataset (an array named "
                         "labels)")
    budget = DEFAULT_BUDGET[metric] if budget is None else float(budget)
    if metric == "accuracy" and not 0 <= budget <= 100:
        raise ValueError(f"the accuracy budget is the points the model may lose, from 0 to "
                         f"100, not {budget:g}")
    if metric == "cosine" and not -1 < budget <= 1:
        raise ValueError(f"the cosine budget is the least mean cosine similarity, above -1 "
                         f"and at most 1, not {budget:g}")
    if not math.isfinite(budget):
        raise ValueError(f"the budget must be a finite number, not {budget:g}")
    if workers < 1:
        raise ValueError(f"workers must be a positive integer, not {workers}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the output directory {out}: {error}") from None
    tuner = _Tuner(model, feeds, labels, metric=metric, budget=budget, backend=backend,
                   workers=workers, cluster=cluster, batch=batch, calibration=calibration,
                   samples=samples, config=config or ArrayConfig(), progress=progress,
                   prices=prices)
    try:
        return _search(tuner, out, sweep, refine, start_time)
    finally:
        tuner.close()


def _search(tuner: _Tuner, out: Path, sweep: int, refine: int, start_time: float
            ) -> TuneResult:
    progress = tuner.progress
    progress(f"float reference over {tuner.rows} rows; {len(tuner.layers)} layers; "
             f"evaluations on the {tuner.backend} backend, {tuner.evaluator.where}")
    tuner.reference()
    options = tuner.options()
    traces = tuner.hessian(options)
    tuner.dependencies(options)
    points: list[Point] = []
    # Uniform modes.
    uniform = []
    for mode in UNIFORM_MODES:
        chosen = {name: next(o for o in opts if o.precision.mode == mode
                             and o.precision.rotation is None)
                  for name, opts in options.items()}
        uniform.append((mode, tuner._assignment(chosen),
                        sum(o.cycles for o in chosen.values())))
    values = tuner.evaluate([assignment for _, assignment, _ in uniform])
    for (mode, assignment, cycles), value in zip(uniform, values, strict=True):
        points.append(tuner.point(f"uniform {mode}", "uniform", None, assignment, cycles,
                                  value))
    baseline = points[0]
    progress("uniform modes: " + ", ".join(f"{p.name.split()[1]} {p.cycles:,} cycles "
                                            f"{p.metric:.4f}" for p in points))
    # The two orderings, with rotation: sweep and bisection.
    results: dict[str, Point | None] = {}
    searches = {}
    for ordering in ("augmented", "hessian"):
        start, moves = tuner.order(options, ordering, rotation=True)
        known: dict[int, Point] = {}
        tuner.sweep(start, moves, ordering, sweep, known)
        results[ordering] = tuner.bisect(start, moves, ordering, known)
        searches[ordering] = (start, moves)
        points += list(known.values())
    # The ordering whose bisection went further (the augmented one on a tie) is refined, and
    # searched again without rotation for the Hadamard report.
    found = [name for name in searches if results[name] is not None]
    winner = min(found, key=lambda name: (results[name].cycles, name != "augmented")) \
        if found else "augmented"
    runs = [(winner, True)] + [(f"{winner}-no-rotation", False)]
    for ordering, rotation in runs:
        if rotation:
            start, moves = searches[winner]
            best = results[winner]
        else:
            start, moves = tuner.order(options, winner, rotation=False)
            known = {}
            best = tuner.bisect(start, moves, ordering, known)
            points += list(known.values())
            results[ordering] = best
        if best is not None and refine:
            refined = tuner.refine(start, moves, best, ordering, refine)
            if refined is not best:
                points.append(refined)
            results[f"{ordering} refined" if rotation else ordering] = refined
    tuner.winner = winner
    passing = [p for p in points if p.meets]
    if not passing:
        raise ValueError(f"no evaluated assignment meets the budget ({tuner.metric} "
                         f"{_budget_text(tuner)}); the best was {max(p.metric for p in points)}")
    chosen = min(passing, key=lambda p: (p.cycles, -p.metric))
    best_uniform = min((p for p in points if p.kind == "uniform" and p.meets),
                       key=lambda p: p.cycles, default=None)
    summary = _summary(tuner, chosen, baseline, best_uniform, results, traces, start_time,
                       options)
    assignment = PrecisionAssignment(tuner.sha, chosen.assignment.layers, tuner.model.name,
                                     summary)
    files = {"precision": str(assignment.save(out / "precision.json"))}
    files.update(_report(tuner, out, points, options, chosen, baseline, best_uniform,
                         results, summary))
    summary["files"] = files
    (out / "tune.json").write_text(json.dumps(
        {**summary, "points": [p.as_dict() for p in points],
         "options": {name: [{"option": o.label, "cycles": o.cycles, "hessian": o.hessian,
                             "measured": o.measured, "augmented": o.augmented,
                             "mse_weights": o.mse_weights, "mse_inputs": o.mse_inputs}
                            for o in opts] for name, opts in options.items()}},
        indent=1, default=float) + "\n")
    return TuneResult(assignment, summary, points, options, files)


def _budget_text(tuner: _Tuner) -> str:
    if tuner.metric == "accuracy":
        return f">= {tuner.float_metric - tuner.budget:.2f} (float {tuner.float_metric:.2f} - " \
               f"{tuner.budget:g} points)"
    return f">= {tuner.budget:g}"


def _summary(tuner: _Tuner, chosen: Point, baseline: Point, best_uniform: Point | None,
             results: dict[str, Point | None], traces: dict[str, tuple[float, float]],
             start_time: float, tuner_options: dict[str, list[Option]]) -> dict[str, Any]:
    def brief(point: Point | None) -> dict[str, Any] | None:
        return None if point is None else {
            "name": point.name, "cycles": point.cycles, "metric": point.metric,
            "four_bit_layers": point.four_bit_layers, "rotated_layers": point.rotated_layers}

    saving = 1 - chosen.cycles / baseline.cycles
    with_rotation = results.get(f"{tuner.winner} refined") or results.get(tuner.winner)
    without_rotation = results.get(f"{tuner.winner}-no-rotation")
    if best_uniform is None:
        versus = "no uniform mode meets the budget"
    elif chosen.cycles < best_uniform.cycles:
        versus = (f"{1 - chosen.cycles / best_uniform.cycles:.1%} fewer cycles than the best "
                  f"uniform mode within budget ({best_uniform.name}, "
                  f"{best_uniform.cycles:,} cycles)")
    else:
        floor = sum(min(o.cycles for o in opts) for opts in tuner_options.values())
        why = ("it already runs every layer at its fewest cycles (no assignment is cheaper), "
               if best_uniform.cycles <= floor else "no cheaper evaluated assignment meets "
               "the budget, ")
        versus = (f"as many cycles as the best uniform mode within budget "
                  f"({best_uniform.name}): {why}the search's assignment is more accurate "
                  f"({chosen.metric:.4f} vs {best_uniform.metric:.4f})"
                  if chosen.metric > best_uniform.metric else
                  f"no fewer cycles than the best uniform mode within budget "
                  f"({best_uniform.name}): {why.rstrip(', ')}")
    return {
        "metric_name": tuner.metric, "budget": tuner.budget, "metric": chosen.metric,
        "float_metric": tuner.float_metric, "cycles": chosen.cycles,
        "baseline_cycles": baseline.cycles, "baseline_metric": baseline.metric,
        "cycle_saving": saving, "chosen": chosen.name,
        "best_uniform": brief(best_uniform), "versus_uniform": versus,
        "searches": {name: brief(point) for name, point in results.items()},
        "refined_ordering": tuner.winner,
        "hadamard": {
            "ordering": tuner.winner,
            "with_rotation": brief(with_rotation),
            "without_rotation": brief(without_rotation),
            "four_bit_layers_with_rotation": None if with_rotation is None
            else with_rotation.four_bit_layers,
            "four_bit_layers_without_rotation": None if without_rotation is None
            else without_rotation.four_bit_layers},
        "layer_count": len(tuner.layers), "rows": tuner.rows, "batch": tuner.batch,
        "calibration_rows": tuner.calibration, "hutchinson_samples": tuner.samples,
        "backend": tuner.backend, "where": tuner.evaluator.where,
        "evaluations": tuner.evaluations,
        "traces": {name: {"weights": w, "inputs": x} for name, (w, x) in traces.items()},
        "cycles_per": f"one batch of {tuner.batch} rows",
        "wall_s": time.perf_counter() - start_time,
    }


def _report(tuner: _Tuner, out: Path, points: list[Point], options: dict[str, list[Option]],
            chosen: Point, baseline: Point, best_uniform: Point | None,
            results: dict[str, Point | None], summary: dict[str, Any]) -> dict[str, str]:
    """pareto.md and pareto.png."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    label = {"accuracy": "accuracy (%)", "cosine": "mean cosine similarity to float",
             "sqnr": "SQNR vs float (dB)"}[tuner.metric]
    lines = [f"# Mixed precision of {tuner.model.name}", "",
             f"Metric: {label}, budget {_budget_text(tuner)}; float model "
             f"{tuner.float_metric:.4f}. Cycles: the accelerator's counters for "
             f"{summary['cycles_per']} (Verilator build, cached per GEMM shape). "
             f"{tuner.rows} rows evaluated on the {tuner.backend} backend "
             f"({tuner.evaluator.where}).", "",
             f"Chosen: **{chosen.name}**: {chosen.cycles:,} cycles, "
             f"{1 - chosen.cycles / baseline.cycles:.1%} fewer than uniform A8W8 "
             f"({baseline.cycles:,}); {tuner.metric} {chosen.metric:.4f}; "
             f"{summary['versus_uniform']}.", "",
             "| assignment | kind | cycles | vs A8W8 | " + tuner.metric
             + " | within budget | 4-bit-weight layers | rotated layers |",
             "|---|---|---|---|---|---|---|---|"]
    order = {"uniform": 0, "bisection": 1, "frontier": 1, "refinement": 2}
    for point in sorted(points, key=lambda p: (order.get(p.kind, 2), p.ordering or "",
                                               -p.cycles)):
        lines.append(f"| {point.name} | {point.kind} | {point.cycles:,} | "
                     f"{point.cycles / baseline.cycles - 1:+.1%} | {point.metric:.4f} | "
                     f"{'yes' if point.meets else 'no'} | {point.four_bit_layers} | "
                     f"{point.rotated_layers} |")
    hadamard = summary["hadamard"]
    lines += ["", f"Hadamard rotation ({hadamard['ordering']} ordering, bisection and "
              "refinement): within budget, "
              f"{hadamard['four_bit_layers_with_rotation']} layers at 4-bit weights with "
              "rotation offered and "
              f"{hadamard['four_bit_layers_without_rotation']} without.", "",
              "Searches (the longest prefix within budget, and after refinement):", ""]
    for name, point in results.items():
        if point is not None:
            lines.append(f"- {name}: {point.cycles:,} cycles, {tuner.metric} "
                         f"{point.metric:.4f}, {point.four_bit_layers} 4-bit-weight layers, "
                         f"{point.rotated_layers} rotated")
    lines += ["", "Chosen precision per layer:", "",
              "| layer | mode | rotation | cycles | Hessian | measured | augmented |",
              "|---|---|---|---|---|---|---|"]
    for layer in tuner.layers:
        precision = chosen.assignment.layers[layer.name]
        option = next(o for o in options[layer.name] if o.precision.mode == precision.mode
                      and o.precision.rotation == precision.rotation)
        lines.append(f"| {layer.name} | {precision.mode} | {precision.rotation or '-'} | "
                     f"{option.cycles:,} | {option.hessian:.3g} | {option.measured:.3g} | "
                     f"{option.augmented:.3g} |")
    markdown = out / "pareto.md"
    markdown.write_text("\n".join(lines) + "\n")

    figure, axes = pyplot.subplots(figsize=(7.5, 5))
    styles = {"augmented": ("tab:blue", "o-", "search, augmented ordering"),
              "hessian": ("tab:orange", "s--", "search, Hessian-only ordering"),
              f"{tuner.winner}-no-rotation": ("tab:green", "^:",
                                              f"{tuner.winner}, no rotation")}
    for ordering, (colour, style, name) in styles.items():
        series = sorted((p for p in points if p.ordering == ordering),
                        key=lambda p: p.cycles)
        if series:
            axes.plot([p.cycles for p in series], [p.metric for p in series], style,
                      color=colour, label=name, markersize=4)
    for point in points:
        if point.kind == "uniform":
            axes.plot(point.cycles, point.metric, "D", color="black", markersize=6)
            axes.annotate(point.name.split()[1], (point.cycles, point.metric),
                          textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.plot(chosen.cycles, chosen.metric, "*", color="red", markersize=14, label="chosen")
    threshold = tuner.float_metric - tuner.budget if tuner.metric == "accuracy" \
        else tuner.budget
    axes.axhline(threshold, color="grey", linewidth=0.8, linestyle="-.", label="budget")
    axes.set_xlabel(f"accelerator cycles ({summary['cycles_per']})")
    axes.set_ylabel(label)
    axes.set_title(f"{tuner.model.name}: {label} vs cycles")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    png = out / "pareto.png"
    figure.savefig(png, dpi=120)
    pyplot.close(figure)
    return {"pareto_md": str(markdown), "pareto_png": str(png)}
