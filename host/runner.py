"""The model runner: a quantized ONNX model end to end, its integer GEMMs and convolutions on
the accelerator, everything else executed by ONNX Runtime.

    from host import Accelerator
    from host.runner import ModelRunner

    with Accelerator(backend="verilator") as acc:
        runner = ModelRunner("model.onnx", acc)
        report = runner.run({"image": images}, check=True)
        report.outputs["logits"], report.mismatches, report.cycles

How a model is executed (docs/models.md):

1. ONNX Runtime loads the model (the reference session, CPU provider, default
   optimizations) and writes its own optimized graph at the extended level: the QDQ groups
   it fuses appear there as `QLinearConv`, `QLinearMatMul` or `com.microsoft.QGemm`, the
   ones it leaves in float stay `DequantizeLinear -> Conv -> QuantizeLinear`. The two
   fusions that would swallow `MatMulInteger` into float-output contrib kernels
   (`MatMulIntegerToFloatFusion`, `DynamicQuantizeMatMulFusion`) are kept apart; their
   float epilogue is computed by the same ONNX Runtime kernels either way.
2. The nodes of `host.offload.OFFLOADED_OPS` with constant weights go to the accelerator;
   the rest of the graph is cut into stages: stage L is an ONNX Runtime session of the
   nodes that need the results of L offloaded levels, followed by the offloaded nodes whose
   inputs are then available.
3. `run` executes the stages in order; `check=True` runs the original model in ONNX Runtime
   and counts the differing elements of every model output and every offloaded node's
   output (`golden.mismatches`).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import golden

from .lowering import GemmLog
from .offload import OFFLOADED_OPS, OffloadedNode, plan_node

__all__ = ["ModelRunner", "NodeReport", "RunReport", "cpu_int8_report", "run_model",
           "KEPT_APART_FUSIONS"]

KEPT_APART_FUSIONS = ("MatMulIntegerToFloatFusion", "DynamicQuantizeMatMulFusion")
"""ONNX Runtime graph transformers that would hide `MatMulInteger` inside float-output
contrib kernels; the partition is made with them disabled (their float epilogue is the same
ONNX Runtime arithmetic, measured: 0 differing elements on MiniLM)."""

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16, "tensor(int32)": np.int32, "tensor(uint32)": np.uint32,
    "tensor(int64)": np.int64, "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
}

Progress = Callable[[str], None]


# --- Reports -------------------------------------------------------------------------------

@dataclass
class NodeReport:
    """One offloaded node over one `run`: the shape of its GEMMs, what the accelerator
    counted, and (after a check) the elements that differ from ONNX Runtime's output."""

    name: str
    op: str
    m: int
    k: int
    n: int
    gemms: int
    mode: str
    path: str
    cycles: int | None
    macs: int
    useful_macs: int
    utilization: float | None
    wall_s: float
    mismatches: int | None = None


@dataclass
class RunReport:
    """What `ModelRunner.run` computed and measured."""

    model: str
    backend: str
    outputs: dict[str, np.ndarray]
    nodes: list[NodeReport]
    left_to_onnxruntime: list[dict[str, str]]
    ort_sessions: int
    inferences: int
    wall_s: float
    accelerator_wall_s: float
    onnxruntime_wall_s: float
    checked: bool = False
    mismatches: int | None = None
    output_mismatches: dict[str, int] = field(default_factory=dict)
    reference_consistent: bool | None = None
    """Whether ONNX Runtime's optimized graph (the node references) gives the original
    model's outputs (None before a check)."""
    cpu: dict[str, Any] = field(default_factory=dict)

    @property
    def offloaded_nodes(self) -> int:
        return len(self.nodes)

    @property
    def cycles(self) -> int | None:
        if any(node.cycles is None for node in self.nodes) or not self.nodes:
            return None
        return sum(node.cycles for node in self.nodes)

    @property
    def macs(self) -> int:
        return sum(node.macs for node in self.nodes)

    @property
    def useful_macs(self) -> int:
        return sum(node.useful_macs for node in self.nodes)

    @property
    def utilization(self) -> float | None:
        """Counted MACs over the cycles times the peak of each node's mode."""
        if self.cycles is None:
            return None
        capacity = sum(node.macs / node.utilization for node in self.nodes
                       if node.utilization)
        return self.macs / capacity if capacity else None

    @property
    def time_per_inference_s(self) -> float:
        return self.wall_s / max(self.inferences, 1)

    def as_dict(self, include_outputs: bool = False) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model, "backend": self.backend, "checked": self.checked,
            "mismatches": self.mismatches, "output_mismatches": self.output_mismatches,
            "reference_consistent": self.reference_consistent,
            "offloaded_nodes": self.offloaded_nodes, "cycles": self.cycles, "macs": self.macs,
            "useful_macs": self.useful_macs, "utilization": self.utilization,
            "wall_s": self.wall_s, "accelerator_wall_s": self.accelerator_wall_s,
            "onnxruntime_wall_s": self.onnxruntime_wall_s, "inferences": self.inferences,
            "time_per_inference_s": self.time_per_inference_s,
            "ort_sessions": self.ort_sessions,
            "outputs": {name: {"shape": list(value.shape), "dtype": value.dtype.name}
                        for name, value in self.outputs.items()},
            "nodes": [asdict(node) for node in self.nodes],
            "left_to_onnxruntime": self.left_to_onnxruntime,
            "cpu": self.cpu,
        }
        if include_outputs:
            payload["output_values"] = {name: value.tolist()
                                        for name, value in self.outputs.items()}
        return payload


# --- The CPU's int8 kernels ----------------------------------------------------------------

_CPU_REPORT: dict[str, Any] | None = None


def cpu_int8_report() -> dict[str, Any]:
    """Whether ONNX Runtime's 8-bit kernels are exact on this CPU.

    On x86 CPUs without VNNI, ONNX Runtime's uint8 x int8 kernels (VPMADDUBSW) saturate the
    sum of each pair of products to int16 and are then not exact. Reported: the CPU flags
    (`avx512_vnni`, `avx_vnni` from /proc/cpuinfo) and a probe: MatMulInteger of 255s and
    127s (pair sums 64,770 > 32,767) in ONNX Runtime against the exact result."""
    global _CPU_REPORT
    if _CPU_REPORT is not None:
        return _CPU_REPORT
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = sorted({flag for flag in line.split(":", 1)[1].split()
                                if "vnni" in flag})
                break
    except OSError:
        pass
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    k = 64
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [16, k]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [k, 16])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [16, 16])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    session = ort.InferenceSession(model.SerializeToString(), _quiet_options(ort),
                                   providers=["CPUExecutionProvider"])
    a = np.full((16, k), 255, np.uint8)
    b = np.full((k, 16), 127, np.int8)
    got = session.run(None, {"a": a, "b": b})[0]
    exact = bool(np.all(got == 255 * 127 * k))
    _CPU_REPORT = {
        "machine": platform.machine(), "vnni_flags": flags, "onnxruntime": ort.__version__,
        "onnxruntime_u8s8_exact": exact,
        "note": ("ONNX Runtime's uint8 x int8 kernels are exact on this CPU" if exact else
                 "ONNX Runtime's uint8 x int8 kernels saturate pair sums to int16 on this CPU "
                 "(no VNNI): where they do, ONNX Runtime is not exact and --check counts the "
                 "difference"),
    }
    return _CPU_REPORT


def _quiet_options(ort: Any) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    threads = os.environ.get("LPMAC_ORT_THREADS")
    if threads:     # a worker of a sharded evaluation keeps to its own core
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return options


def _as_is_options(ort: Any) -> Any:
    """Options for running parts of ONNX Runtime's already optimized graph as they are: a
    part optimized again could be fused differently from the whole (measured: MiniLM's
    embedding LayerNormalization, 308 of 384 outputs 1 ulp off)."""
    options = _quiet_options(ort)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


# --- Loading -------------------------------------------------------------------------------

def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    for marker in ("[ONNXRuntimeError] :", "Exception during initialization:"):
        if marker in text:
            text = text.split(marker, 1)[1].strip()
    return text.rstrip(".")


def _load(model: Any) -> tuple[Any, bytes, str]:
    """(ModelProto, serialized bytes, display name) of a path, bytes or ModelProto."""
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(model, onnx.ModelProto):
        return model, model.SerializeToString(), model.graph.name or "model"
    if isinstance(model, bytes):
        data, name = model, "model"
    elif isinstance(model, str | os.PathLike):
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"model {path} does not exist or is not a file")
        data, name = path.read_bytes(), str(path)
    else:
        raise ValueError(f"model must be a path, bytes or an onnx.ModelProto, not "
                         f"{type(model).__name__}")
    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{name} is not an ONNX model ({_one_line(error)})") from None
    if not proto.ir_version or not proto.graph.node:
        raise ValueError(f"{name} is not an ONNX model (no IR version or no graph nodes)")
    return proto, data, name


def _node_inputs(node: Any) -> list[str]:
    """The node's inputs, with the outer-scope names its subgraphs (If, Loop, Scan) read."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        graphs = list(attribute.graphs) + ([attribute.g] if attribute.HasField("g") else [])
        for graph in graphs:
            local = {i.name for i in graph.input} | {i.name for i in graph.initializer}
            for inner in graph.node:
                local.update(inner.output)
            for inner in graph.node:
                names += [name for name in _node_inputs(inner) if name not in local]
    return names


def _topological(nodes: list[Any]) -> list[Any]:
    """Nodes in an order where every input is produced before it is read."""
    produced = {name for node in nodes for name in node.output}
    order: list[Any] = []
    done: set[str] = set()
    pending = list(nodes)
    while pending:
        waiting = []
        for node in pending:
            if all(name in done for name in _node_inputs(node) if name in produced):
                order.append(node)
                done.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError("the graph has a cycle")
        pending = waiting
    return order


_LAYOUT_OPS = {"Transpose", "ReorderInput", "ReorderOutput"}
_FLOAT_GEMMS = {"Conv", "MatMul", "Gemm", "FusedConv", "FusedMatMul", "FusedGemm"}


def _dequantized(name: str, producers: dict[str, Any]) -> bool:
    """Whether a tensor comes from DequantizeLinear (through layout changes only)."""
    node = producers.get(name)
    while node is not None and node.op_type in _LAYOUT_OPS and node.input:
        node = producers.get(node.input[0])
    return node is not None and node.op_type == "DequantizeLinear"


@dataclass
class _Segment:
    """A part of the graph run as one ONNX Runtime session."""

    nodes: list[Any]
    inputs: list[str]
    outputs: list[str]
    initializers: list[str]
    sessions: dict[tuple, Any] = field(default_factory=dict)


# --- The runner ----------------------------------------------------------------------------

class ModelRunner:
    """A quantized ONNX model prepared for an accelerator (see the module docstring).

    `model`: a path, bytes or `onnx.ModelProto` of a model ONNX Runtime can load.
    `accelerator`: an open `host.Accelerator` (any backend). `strict`: refuse a model with an
    offload-eligible node the accelerator cannot take (a `ValueError` naming it) instead of
    leaving that node to ONNX Runtime. `progress`: a callable taking a message, with an
    optional `count(done, total, what)` method (the CLI's progress bar)."""

    def __init__(self, model: Any, accelerator: Any, *, strict: bool = False,
                 progress: Progress | None = None) -> None:
        import onnxruntime as ort

        self._ort = ort
        self.accelerator = accelerator
        self.progress = progress
        self.original, self._original_bytes, self.name = _load(model)
        try:
            self.reference = ort.InferenceSession(self._original_bytes, _quiet_options(ort),
                                                  providers=["CPUExecutionProvider"])
        except Exception as error:    # ORT raises its own exception types
            raise ValueError(f"ONNX Runtime cannot load {self.name}: {_one_line(error)}") \
                from None
        self.inputs = {i.name: i for i in self.reference.get_inputs()}
        self.output_names = [o.name for o in self.reference.get_outputs()]
        self.graph = self._partitioned_graph()
        self._plan(strict)

    # --- Plan ---

    def _partitioned_graph(self) -> Any:
        """The graph that is cut into stages: ONNX Runtime's optimized graph (a subclass may
        partition another one)."""
        return self._optimized_graph()

    def _optimized_graph(self) -> Any:
        """ONNX Runtime's own optimized graph (all levels: the graph its CPU provider runs,
        layout transformations included), read back as ONNX."""
        import onnx

        ort = self._ort
        with tempfile.TemporaryDirectory(prefix="lpmac-runner-") as directory:
            options = _quiet_options(ort)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.optimized_model_filepath = os.path.join(directory, "optimized.onnx")
            try:
                ort.InferenceSession(self._original_bytes, options,
                                     providers=["CPUExecutionProvider"],
                                     disabled_optimizers=list(KEPT_APART_FUSIONS))
            except Exception as error:
                raise ValueError(f"ONNX Runtime cannot optimize {self.name}: "
                                 f"{_one_line(error)}") from None
            optimized = onnx.load(options.optimized_model_filepath)
        return optimized

    def _plan(self, strict: bool) -> None:
        graph = self.graph.graph
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self._initializer_arrays: dict[str, np.ndarray] = {}
        nodes = _topological(list(graph.node))
        self.left_to_onnxruntime: list[dict[str, str]] = []
        offloaded = self._select(nodes, strict)
        self._stage(nodes, offloaded)

    def _select(self, nodes: list[Any], strict: bool) -> dict[int, Any]:
        """The nodes (by index in `nodes`) that run on the accelerator, each as an object
        with `name`, `op_type`, `inputs`, `outputs`, `run(accelerator, values, log)` and
        `gemm_shape(input_shape)`; the others are listed in `left_to_onnxruntime` where
        they could have been offloaded."""
        offloaded: dict[int, Any] = {}
        producers = {name: node for node in nodes for name in node.output}
        for index, node in enumerate(nodes):
            name = node.name or node.output[0]
            if (node.domain or "", node.op_type) in OFFLOADED_OPS:
                planned = plan_node(node, self.initializers)
                if isinstance(planned, str):
                    if strict:
                        raise ValueError(f"node {name} ({node.op_type}) cannot run on the "
                                         f"accelerator: {planned}")
                    self.left_to_onnxruntime.append(
                        {"node": name, "op": node.op_type, "reason": planned})
                else:
                    offloaded[index] = planned
            elif node.op_type in _FLOAT_GEMMS and any(_dequantized(i, producers)
                                                      for i in node.input):
                self.left_to_onnxruntime.append({
                    "node": name, "op": node.op_type,
                    "reason": "a QDQ group that ONNX Runtime's CPU provider does not fuse: it "
                              "runs this node in float, so the accelerator's integer result "
                              "would differ from ONNX Runtime's"})
        return offloaded

    def _stage(self, nodes: list[Any], offloaded: dict[int, Any]) -> None:
        """Cut the graph into ONNX Runtime sessions around the offloaded nodes."""
        # Levels: an ONNX Runtime node's level is the number of offloaded levels it waits
        # for; an offloaded node runs right after the ONNX Runtime stage of its level.
        level_of: dict[str, int] = {}
        node_level: list[int] = []
        for index, node in enumerate(nodes):
            level = max((level_of.get(name, 0) for name in _node_inputs(node)), default=0)
            node_level.append(level)
            for name in node.output:
                level_of[name] = level + 1 if index in offloaded else level
        top = max(node_level, default=0)
        consumers: dict[str, set[int]] = {}
        for index, node in enumerate(nodes):
            for name in _node_inputs(node):
                consumers.setdefault(name, set()).add(index)
        graph_outputs = set(self.output_names)
        self.stages: list[Any] = []
        for level in range(top + 1):
            members = [i for i in range(len(nodes)) if node_level[i] == level
                       and i not in offloaded]
            if members:
                self.stages.append(self._segment(nodes, members, consumers, graph_outputs))
            self.stages += [offloaded[i] for i in range(len(nodes))
                            if node_level[i] == level and i in offloaded]
        self.offloaded = [stage for stage in self.stages
                          if not isinstance(stage, _Segment)]

    def _segment(self, nodes: list[Any], members: list[int],
                 consumers: dict[str, set[int]], graph_outputs: set[str]) -> _Segment:
        inside = set(members)
        produced = {name for i in members for name in nodes[i].output if name}
        needed: list[str] = []
        for i in members:
            for name in _node_inputs(nodes[i]):
                if name not in produced and name not in needed:
                    needed.append(name)
        outputs = [name for i in members for name in nodes[i].output if name and (
            name in graph_outputs or consumers.get(name, set()) - inside)]
        return _Segment(nodes=[nodes[i] for i in members],
                        inputs=[name for name in needed if name not in self.initializers],
                        outputs=outputs,
                        initializers=[name for name in needed if name in self.initializers])

    # --- Run ---

    def _initializer(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        if name not in self._initializer_arrays:
            self._initializer_arrays[name] = numpy_helper.to_array(self.initializers[name])
        return self._initializer_arrays[name]

    def validate(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The feeds as arrays, checked against the model's inputs (names, dtypes, ranks and
        fixed dimensions): one `ValueError` sentence naming the input otherwise."""
        if not isinstance(feeds, Mapping):
            raise ValueError(f"the inputs must be a mapping of input names to arrays, not "
                             f"{type(feeds).__name__}")
        missing = [name for name in self.inputs if name not in feeds]
        extra = [name for name in feeds if name not in self.inputs]
        if missing:
            raise ValueError(f"input {missing[0]} of {self.name} is missing (the model's "
                             f"inputs: {', '.join(self.inputs)})")
        if extra:
            raise ValueError(f"{self.name} has no input named {extra[0]} (its inputs: "
                             f"{', '.join(self.inputs)})")
        arrays = {}
        for name, spec in self.inputs.items():
            value = feeds[name]
            if not isinstance(value, np.ndarray):
                raise ValueError(f"input {name} must be a NumPy array, not "
                                 f"{type(value).__name__}")
            dtype = _ORT_TYPES.get(spec.type)
            if dtype is None or value.dtype != dtype:
                wanted = np.dtype(dtype).name if dtype is not None else spec.type
                raise ValueError(f"input {name} must be {wanted}, not {value.dtype}")
            shape = spec.shape
            if len(shape) != value.ndim or any(
                    isinstance(dim, int) and dim != size for dim, size in zip(
                        shape, value.shape, strict=True)):
                expected = "[" + ", ".join(str(dim) if isinstance(dim, int) else str(dim or "?")
                                           for dim in shape) + "]"
                raise ValueError(f"input {name} must have shape {expected}, not "
                                 f"{list(value.shape)}")
            if value.size == 0:
                raise ValueError(f"input {name} is empty (shape {list(value.shape)})")
            arrays[name] = np.ascontiguousarray(value)
        # A named dimension ("batch", "tokens") is one size across the inputs.
        sizes: dict[str, tuple[str, int]] = {}
        for name, spec in self.inputs.items():
            for dim, size in zip(spec.shape, arrays[name].shape, strict=True):
                if isinstance(dim, str) and dim:
                    first = sizes.setdefault(dim, (name, size))
                    if first[1] != size:
                        raise ValueError(
                            f"input {name} has {size} along dimension {dim}, but input "
                            f"{first[0]} has {first[1]}")
        return arrays

    def _session(self, segment: _Segment, values: dict[str, np.ndarray]) -> Any:
        from onnx import helper

        signature = tuple((name, values[name].dtype.str, values[name].shape)
                          for name in segment.inputs)
        session = segment.sessions.get(signature)
        if session is not None:
            return session
        graph = helper.make_graph(
            segment.nodes, f"{self.graph.graph.name or 'model'}_part",
            [helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(values[name].dtype),
                list(values[name].shape)) for name in segment.inputs],
            [_untyped(name) for name in segment.outputs],
            initializer=[self.initializers[name] for name in segment.initializers])
        model = helper.make_model(graph, opset_imports=list(self.graph.opset_import))
        model.ir_version = self.graph.ir_version
        ort = self._ort
        session = ort.InferenceSession(model.SerializeToString(), _as_is_options(ort),
                                       providers=["CPUExecutionProvider"])
        segment.sessions[signature] = session
        return session

    def _run_segment(self, segment: _Segment, values: dict[str, np.ndarray],
                     feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self._session(segment, values).run(segment.outputs, feed)
        except Exception as error:    # ORT's own exception types
            raise ValueError(f"ONNX Runtime cannot run {self.name} on these inputs: "
                             f"{_one_line(error)}") from None

    @property
    def ort_sessions(self) -> int:
        return sum(1 for stage in self.stages if isinstance(stage, _Segment))

    def run(self, feeds: Mapping[str, Any], *, check: bool = False) -> RunReport:
        """Run the model on `feeds` ({input name: array}); with `check`, compare with ONNX
        Runtime (every model output, every offloaded node's output)."""
        arrays = self.validate(feeds)
        start = time.perf_counter()
        values: dict[str, np.ndarray] = dict(arrays)
        logs: dict[str, tuple[GemmLog, tuple[int, ...]]] = {}
        ort_seconds = accelerator_seconds = 0.0
        count = getattr(self.progress, "count", None)
        total = len(self.offloaded)
        done = 0
        for stage in self.stages:
            if isinstance(stage, _Segment):
                started = time.perf_counter()
                feed = {name: values[name] for name in stage.inputs}
                results = self._run_segment(stage, values, feed)
                values.update(zip(stage.outputs, results, strict=True))
                ort_seconds += time.perf_counter() - started
                continue
            started = time.perf_counter()
            inputs = [None if not name else values[name] if name in values
                      else self._initializer(name) for name in stage.inputs]
            log = GemmLog()
            try:
                values[stage.outputs[0]] = stage.run(self.accelerator, inputs, log)
            except ValueError as error:
                message = str(error)
                if not message.startswith("node "):
                    message = f"node {stage.name} ({stage.op_type}): {message}"
                raise ValueError(message) from None
            logs[stage.name] = (log, inputs[0].shape)
            accelerator_seconds += time.perf_counter() - started
            done += 1
            if count is not None:
                count(done, total, "offloaded nodes")
        wall = time.perf_counter() - start
        outputs = {name: values[name] if name in values else self._initializer(name)
                   for name in self.output_names}
        first = next(iter(arrays.values()))
        report = RunReport(
            model=self.name, backend=getattr(self.accelerator, "backend", "?"),
            outputs=outputs, nodes=[self._node_report(node, *logs[node.name])
                                    for node in self.offloaded],
            left_to_onnxruntime=list(self.left_to_onnxruntime),
            ort_sessions=self.ort_sessions, inferences=int(first.shape[0]) if first.ndim
            else 1, wall_s=wall, accelerator_wall_s=accelerator_seconds,
            onnxruntime_wall_s=ort_seconds, cpu=cpu_int8_report())
        if check:
            self._check(arrays, values, report)
        return report

    def _node_report(self, node: OffloadedNode, log: GemmLog, input_shape: tuple[int, ...]
                     ) -> NodeReport:
        m, k, n, gemms = node.gemm_shape(input_shape)
        stats = log.stats
        cycles = None if any(s.cycles is None for s in stats) else sum(s.cycles for s in stats)
        macs = sum(s.macs for s in stats)
        capacity = None if cycles is None else sum(s.cycles * s.peak_macs_per_cycle
                                                   for s in stats)
        return NodeReport(
            name=node.name, op=node.op_type, m=m, k=k, n=n, gemms=gemms,
            mode="/".join(sorted({s.mode for s in stats})),
            path="/".join(sorted(log.paths)), cycles=cycles, macs=macs,
            useful_macs=sum(s.useful_macs for s in stats),
            utilization=macs / capacity if capacity else None,
            wall_s=sum(s.wall_s for s in stats))

    # --- Check ---

    def reference_outputs(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs as ONNX Runtime computes them (the original model)."""
        return dict(zip(self.output_names, self.reference.run(self.output_names, dict(feeds)),
                        strict=True))

    def reference_node_outputs(self, feeds: Mapping[str, np.ndarray]
                               ) -> dict[str, np.ndarray]:
        """The offloaded nodes' outputs and the model outputs as ONNX Runtime computes them:
        its own optimized graph (the one the partition was made from, whose fused nodes
        carry names of ONNX Runtime's choosing) run with the offloaded nodes' outputs added
        as graph outputs, default optimizations."""
        import onnx

        wanted = [node.outputs[0] for node in self.offloaded
                  if node.outputs[0] not in self.output_names]
        model = onnx.ModelProto()
        model.CopyFrom(self.graph)
        model.graph.output.extend(_untyped(name) for name in wanted)
        ort = self._ort
        session = ort.InferenceSession(model.SerializeToString(), _as_is_options(ort),
                                       providers=["CPUExecutionProvider"])
        names = self.output_names + wanted
        return dict(zip(names, session.run(names, dict(feeds)), strict=True))

    def _check(self, feeds: dict[str, np.ndarray], values: dict[str, np.ndarray],
               report: RunReport) -> None:
        if self.progress:
            self.progress("checking against ONNX Runtime (CPU provider, default "
                          "optimizations)")
        expected = self.reference_outputs(feeds)
        report.output_mismatches = {name: golden.mismatches(value, report.outputs[name])
                                    for name, value in expected.items()}
        nodes = self.reference_node_outputs(feeds)
        # The optimized graph must compute the original model's outputs, or the node
        # references would be of another computation.
        report.reference_consistent = all(
            golden.mismatches(value, nodes[name]) == 0 for name, value in expected.items())
        for node_report, node in zip(report.nodes, self.offloaded, strict=True):
            reference = nodes.get(node.outputs[0])
            if reference is not None:
                node_report.mismatches = golden.mismatches(reference, values[node.outputs[0]])
        report.checked = True
        report.mismatches = sum(report.output_mismatches.values()) + sum(
            node.mismatches or 0 for node in report.nodes)


def _untyped(name: str) -> Any:
    import onnx

    return onnx.ValueInfoProto(name=name)


def run_model(model: Any, feeds: Mapping[str, Any], accelerator: Any, *, check: bool = False,
              strict: bool = False, progress: Progress | None = None) -> RunReport:
    """`ModelRunner(model, accelerator).run(feeds, check=check)` in one call."""
    return ModelRunner(model, accelerator, strict=strict, progress=progress).run(
        feeds, check=check)
