"""Sharded evaluation speed (docs/benchmarks.md, "Mixed precision"): the digits CNN's test
set (540 images) with a mixed assignment, evaluated by one worker and by two local worker
processes, each worker driving its own accelerator, on the Verilator backend (or --backend).

    .venv/bin/python benchmarks/shard_speed.py [--backend verilator] [--repeat 2] [--json F]

Each worker keeps ONNX Runtime and the BLAS to one thread; the one-worker figure runs in this
process under the same limit. Every configuration is timed after a warm-up evaluation (the
workers' start, their accelerators and ONNX Runtime sessions), best of --repeat. Prints the
wall times, the speed-up, whether the outputs are identical bit for bit, and the machine's
load (`uptime`) before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import golden  # noqa: E402
from host.models import model_dir  # noqa: E402
from host.models.digits import DigitsCNN, load_data  # noqa: E402
from host.shard import ShardedEvaluator, _one_thread  # noqa: E402
from host.tune import calibrate  # noqa: E402

MIXED = {"/conv1/Conv": "a8w4", "/conv2/Conv": ("a8w4", 16), "/depthwise/Conv": "a8w8",
         "/pointwise/Conv": ("mxint8w4", 32), "/fc/Gemm": "a8w4"}


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _time(evaluator: ShardedEvaluator, assignment, repeat: int) -> tuple[float, dict]:
    outputs = evaluator.outputs(assignment)          # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        outputs = evaluator.outputs(assignment)
        best = min(best, time.perf_counter() - start)
    return best, outputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="verilator")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    data = load_data()
    cnn = DigitsCNN.build(model_dir() / "digits", data=data)
    with tempfile.TemporaryDirectory() as directory:
        model = Path(directory) / "digits-float.onnx"
        model.write_bytes(cnn.float_model.read_bytes())
        assignment = calibrate(model, {"image": data.x_train[:256]}, MIXED)
        feeds = {"image": data.x_test}
        before = _uptime()
        _one_thread()
        with ShardedEvaluator(model, feeds, backend=args.backend, workers=1) as one:
            one_s, one_out = _time(one, assignment, args.repeat)
        with ShardedEvaluator(model, feeds, backend=args.backend, workers=2) as two:
            two_s, two_out = _time(two, assignment, args.repeat)
        after = _uptime()
    mismatches = golden.mismatches(one_out["logits"], two_out["logits"])
    result = {"backend": args.backend, "rows": len(data.x_test), "one_worker_s": one_s,
              "two_workers_s": two_s, "speedup": one_s / two_s, "mismatches": mismatches,
              "cpus": os.cpu_count(), "machine": platform.machine(),
              "uptime_before": before, "uptime_after": after}
    print(f"| workers | wall (s) | speed-up |\n|---|---|---|\n| 1 | {one_s:.2f} | 1.00 |\n"
          f"| 2 | {two_s:.2f} | {one_s / two_s:.2f} |")
    print(f"\n{len(data.x_test)} images, {args.backend} backend, outputs identical: "
          f"{mismatches == 0} ({mismatches} differing elements); {os.cpu_count()} CPUs")
    print(f"load before: {before}\nload after:  {after}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
