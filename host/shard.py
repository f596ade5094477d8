"""Evaluating a float model with per-layer precisions over a dataset, sharded over workers
that each drive their own accelerator (docs/mixed-precision.md, "Evaluation at scale").

    with ShardedEvaluator("float.onnx", feeds, backend="verilator", workers=2) as evaluator:
        outputs = evaluator.outputs(assignment)          # {output name: array}, in order

The dataset's rows are cut into contiguous shards, one per worker; each worker runs its
shard through a `PrecisionRunner` on its own accelerator (its own Verilator process, golden
model or the golden functions) in batches of `batch` rows, and the shards' outputs are
concatenated in order. Every row is computed by the same arithmetic whatever shard or batch
it falls in, so the result is the same bit for bit for any number of workers (tested).

Workers:

* `workers=1` (default): in this process;
* `workers=N`: N local processes (`concurrent.futures.ProcessPoolExecutor`, spawn);
* `cluster="tcp://HOST:PORT"`: the workers of a Dask distributed cluster
  (`dask.distributed.Client(address)`); with `dask-jobqueue` that cluster can be a SLURM, PBS
  or LSF job, e.g. `SLURMCluster(cores=1, processes=1, memory="4GB").scale(8)` and its
  `scheduler_address`. A `distributed.LocalCluster` object or a `Client` is accepted too.
  Each worker process drives one accelerator; give Dask workers one thread each (more
  threads wait for the worker's accelerator in turn).

A worker keeps the model, the dataset and one accelerator per backend for its lifetime, and
ONNX Runtime and the BLAS to one thread (`LPMAC_ORT_THREADS=1`, threadpoolctl), so that N
workers use N cores.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

__all__ = ["ShardedEvaluator", "shard_bounds", "WORKER_BACKENDS"]

WORKER_BACKENDS = ("golden-functions", "golden", "verilator", "cocotb")
"""Backends a worker opens: the golden model's functions, or a simulated accelerator."""

DEFAULT_BATCH = 64


def shard_bounds(rows: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) row ranges of `shards` nearly equal shards (no empty one)."""
    shards = max(1, min(shards, rows))
    cuts = [rows * i // shards for i in range(shards + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(shards)]


# --- The worker side -----------------------------------------------------------------------

class _WorkerState:
    """One worker's model, dataset, accelerators and runner."""

    def __init__(self, model: bytes, feeds: Mapping[str, np.ndarray]) -> None:
        self.model = model
        self.feeds = dict(feeds)
        self.accelerators: dict[str, Any] = {}
        self.runner: Any = None
        self.lock = threading.Lock()

    def accelerator(self, backend: str) -> Any:
        if backend not in self.accelerators:
            if backend == "golden-functions":
                from .precision import GoldenFunctions

                self.accelerators[backend] = GoldenFunctions()
            else:
                from .driver import Accelerator

                self.accelerators[backend] = Accelerator(backend=backend)
        return self.accelerators[backend]

    def outputs(self, start: int, stop: int, precision: dict[str, Any], backend: str,
                batch: int) -> dict[str, np.ndarray]:
        from .precision import PrecisionAssignment, PrecisionRunner

        assignment = PrecisionAssignment.from_dict(precision)
        with self.lock:
            accelerator = self.accelerator(backend)
            if self.runner is None or set(self.runner.precision.layers) != set(
                    assignment.layers):
                self.runner = PrecisionRunner(self.model, accelerator, assignment)
            else:
                self.runner.assign(assignment)
            parts: list[dict[str, np.ndarray]] = []
            for first in range(start, stop, batch):
                rows = {name: value[first:min(first + batch, stop)]
                        for name, value in self.feeds.items()}
                values = self.runner.execute(self.runner.validate(rows), accelerator)
                parts.append({name: values[name] for name in self.runner.output_names})
        return {name: np.concatenate([part[name] for part in parts])
                for name in parts[0]}

    def close(self) -> None:
        for accelerator in self.accelerators.values():
            accelerator.close()
        self.accelerators.clear()


_STATE: _WorkerState | None = None
_DASK_STATES: dict[str, _WorkerState] = {}
_DASK_LOCK = threading.Lock()


def _one_thread() -> None:
    """Keep this worker process to one core: ONNX Runtime sessions and the BLAS."""
    os.environ["LPMAC_ORT_THREADS"] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:     # scikit-learn brings threadpoolctl; without it, BLAS decides
        pass


def _init_pool_worker(model: bytes, feeds: dict[str, np.ndarray]) -> None:
    global _STATE
    _one_thread()
    _STATE = _WorkerState(model, feeds)


def _pool_task(start: int, stop: int, precision: dict[str, Any], backend: str,
               batch: int) -> dict[str, np.ndarray]:
    assert _STATE is not None, "the worker was not initialized"
    return _STATE.outputs(start, stop, precision, backend, batch)


def _dask_task(key: str, model: bytes, feeds: dict[str, np.ndarray], start: int, stop: int,
               precision: dict[str, Any], backend: str, batch: int) -> dict[str, np.ndarray]:
    with _DASK_LOCK:
        state = _DASK_STATES.get(key)
        if state is None:
            _one_thread()
            state = _DASK_STATES[key] = _WorkerState(model, feeds)
    return state.outputs(start, stop, precision, backend, batch)


# --- The evaluator -------------------------------------------------------------------------

class ShardedEvaluator:
    """Outputs of a float model (path or bytes) with an assignment, over `feeds` ({input
    name: array [rows, ...]}, one row per inference), on `backend` (`WORKER_BACKENDS`),
    sharded over `workers` local processes or the workers of the Dask cluster `cluster`."""

    def __init__(self, model: Any, feeds: Mapping[str, np.ndarray], *,
                 backend: str = "golden", workers: int = 1, cluster: Any = None,
                 batch: int = DEFAULT_BATCH) -> None:
        if backend not in WORKER_BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(WORKER_BACKENDS)}, not "
                             f"{backend!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, not {workers!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer, not {batch!r}")
        self.model = model if isinstance(model, bytes) else open(model, "rb").read()
        self.key = hashlib.sha256(self.model).hexdigest()
        self.feeds = {name: np.ascontiguousarray(value) for name, value in feeds.items()}
        rows = {value.shape[0] for value in self.feeds.values()}
        if len(rows) != 1:
            raise ValueError("every input of the dataset must have the same number of rows")
        self.rows = rows.pop()
        self.backend = backend
        self.batch = batch
        self._pool: ProcessPoolExecutor | None = None
        self._client: Any = None
        self._own_client = False
        self._local: _WorkerState | None = None
        if cluster is not None:
            self._connect(cluster)
            self.workers = max(1, sum(self._client.nthreads().values()))
        else:
            self.workers = workers
            if workers > 1:
                self._pool = ProcessPoolExecutor(
                    workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_pool_worker, initargs=(self.model, self.feeds))

    def _connect(self, cluster: Any) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ValueError("--cluster needs Dask: install lpmac's models extra (pip install "
                             "-e '.[models]')") from None
        if isinstance(cluster, Client):
            self._client = cluster
        else:
            try:
                self._client = Client(cluster, timeout="20s")
            except OSError as error:
                raise ValueError(f"cannot reach the Dask scheduler at {cluster}: {error}") \
                    from None
            self._own_client = True
        self._model_future = self._client.scatter(self.model, broadcast=True)
        self._feeds_future = self._client.scatter(self.feeds, broadcast=True)

    @property
    def where(self) -> str:
        if self._client is not None:
            return f"Dask cluster {self._client.scheduler.address} ({self.workers} workers)"
        return f"{self.workers} local worker{'s' if self.workers > 1 else ''}"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._client is not None and self._own_client:
            self._client.close()
        self._client = None
        if self._local is not None:
            self._local.close()
            self._local = None

    def __enter__(self) -> ShardedEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def outputs(self, assignment: Any, *, rows: int | None = None,
                backend: str | None = None) -> dict[str, np.ndarray]:
        """The model's outputs with `assignment` over the first `rows` rows (default all)."""
        return self.map([assignment], rows=rows, backend=backend)[0]

    def map(self, assignments: Sequence[Any], *, rows: int | None = None,
            backend: str | None = None) -> list[dict[str, np.ndarray]]:
        """`outputs` of several assignments, every shard of every one submitted at once."""
        backend = backend or self.backend
        count = self.rows if rows is None else min(rows, self.rows)
        bounds = shard_bounds(count, self.workers)
        payloads = [a.as_dict() for a in assignments]
        if self._client is not None:
            futures = [[self._client.submit(
                _dask_task, self.key, self._model_future, self._feeds_future, start, stop,
                payload, backend, self.batch, pure=False) for start, stop in bounds]
                for payload in payloads]
            results = [self._client.gather(shards) for shards in futures]
        elif self._pool is not None:
            submitted = [[self._pool.submit(_pool_task, start, stop, payload, backend,
                                            self.batch) for start, stop in bounds]
                         for payload in payloads]
            results = [[future.result() for future in shards] for shards in submitted]
        else:
            if self._local is None:
                self._local = _WorkerState(self.model, self.feeds)
            results = [[self._local.outputs(0, count, payload, backend, self.batch)]
                       for payload in payloads]
        return [{name: np.concatenate([shard[name] for shard in shards])
                 for name in shards[0]} for shards in results]
