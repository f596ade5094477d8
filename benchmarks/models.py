"""Benchmarks of the model runner (docs/benchmarks.md, "Models"): the digits CNN and
all-MiniLM-L6-v2 on the Verilator and golden backends, every run checked against ONNX
Runtime.

    .venv/bin/python benchmarks/models.py [--skip-cosine] [--json out.json]

Prints Markdown tables: per model and backend the accelerator's cycles, utilization and
wall time; MiniLM per GEMM shape; the CNN's images per second and cycles per image; the
cosine similarity of MiniLM's embeddings to the float model's over the shipped sentences.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host import Accelerator  # noqa: E402
from host.models import model_dir  # noqa: E402
from host.models.digits import DigitsCNN, accuracy, load_data  # noqa: E402
from host.models.minilm import MiniLM, cosine, sentences  # noqa: E402
from host.runner import ModelRunner  # noqa: E402


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _shapes(report) -> list[dict]:
    """Offloaded nodes grouped by GEMM shape (K, N)."""
    groups: dict[tuple, dict] = defaultdict(lambda: {"nodes": 0, "cycles": 0, "macs": 0,
                                                     "capacity": 0, "wall_s": 0.0})
    for node in report.nodes:
        entry = groups[(node.m, node.k, node.n, node.gemms)]
        entry["nodes"] += 1
        entry["macs"] += node.macs
        entry["wall_s"] += node.wall_s
        if node.cycles is not None:
            entry["cycles"] += node.cycles
            entry["capacity"] += node.macs / node.utilization
    rows = []
    for (m, k, n, gemms), entry in groups.items():
        rows.append({"m": m, "k": k, "n": n, "gemms": gemms, "nodes": entry["nodes"],
                     "cycles": entry["cycles"] or None, "macs": entry["macs"],
                     "utilization": entry["macs"] / entry["capacity"]
                     if entry["capacity"] else None, "wall_s": entry["wall_s"]})
    return rows


def _summary(report) -> dict:
    return {"mismatches": report.mismatches, "offloaded_nodes": report.offloaded_nodes,
            "cycles": report.cycles, "macs": report.macs, "useful_macs": report.useful_macs,
            "utilization": report.utilization, "wall_s": report.wall_s,
            "accelerator_wall_s": report.accelerator_wall_s,
            "onnxruntime_wall_s": report.onnxruntime_wall_s, "inferences": report.inferences,
            "shapes": _shapes(report)}


def bench_cnn(accelerators: dict) -> dict:
    data = load_data()
    cnn = DigitsCNN.build(model_dir() / "digits", data=data)
    path = cnn.quantized("qoperator", per_channel=True, data=data)
    results = {"float_accuracy": cnn.float_accuracy}
    for backend, accelerator in accelerators.items():
        runner = ModelRunner(path, accelerator)
        runner.run({"image": data.x_test[:8]})          # warm: sessions built
        _say(f"CNN, 540 images, {backend}")
        report = runner.run({"image": data.x_test}, check=True)
        entry = _summary(report)
        entry["accuracy"] = accuracy(report.outputs["logits"], data.y_test)
        entry["images_per_s"] = len(data.x_test) / report.wall_s
        entry["cycles_per_image"] = report.cycles / len(data.x_test) if report.cycles else None
        entry["nodes"] = [vars(node) for node in report.nodes]
        results[backend] = entry
    return results


def bench_minilm(accelerators: dict) -> dict:
    minilm = MiniLM.build(model_dir() / "minilm")
    path = minilm.quantized(per_channel=True)
    texts = sentences()
    workloads = {"one sentence, 16 tokens": minilm.tokenize(texts[:1]),
                 "8 sentences x 16 tokens (128 tokens)": minilm.tokenize(texts[:8], length=16)}
    results = {}
    for backend, accelerator in accelerators.items():
        runner = ModelRunner(path, accelerator)
        for name, feeds in workloads.items():
            _say(f"MiniLM, {name}, {backend}")
            report = runner.run(feeds, check=True)
            entry = _summary(report)
            entry["cosine"] = [float(c) for c in cosine(report.outputs["embedding"],
                                                        minilm.float_embeddings(feeds))]
            results[f"{name} / {backend}"] = entry
    return results


def bench_cosine(accelerator) -> dict:
    minilm = MiniLM.build(model_dir() / "minilm")
    results = {}
    for per_channel in (True, False):
        runner = ModelRunner(minilm.quantized(per_channel=per_channel), accelerator)
        similarities, mismatches = [], 0
        for sentence in sentences():
            feeds = minilm.tokenize([sentence])
            report = runner.run(feeds, check=True)
            mismatches += report.mismatches
            similarities.append(float(cosine(report.outputs["embedding"],
                                             minilm.float_embeddings(feeds))[0]))
        name = "per-channel" if per_channel else "per-tensor"
        _say(f"MiniLM cosine {name}: mean {np.mean(similarities):.4f}")
        results[name] = {"mean": float(np.mean(similarities)),
                         "min": float(np.min(similarities)), "sentences": len(similarities),
                         "mismatches": mismatches}
    return results


def _markdown(results: dict) -> str:
    lines = ["### CNN (QOperator, per-channel, 540 test images)", "",
             "| backend | accuracy | cycles | cycles/image | utilization | wall | images/s | "
             "mismatches |", "|---|---|---|---|---|---|---|---|"]
    for backend in ("verilator", "golden"):
        entry = results["cnn"].get(backend)
        if entry is None:
            continue
        cycles = f"{entry['cycles']:,}" if entry["cycles"] else "-"
        per_image = f"{entry['cycles_per_image']:,.0f}" if entry["cycles_per_image"] else "-"
        utilization = f"{entry['utilization']:.2%}" if entry["utilization"] else "-"
        lines.append(f"| {backend} | {entry['accuracy']:.2%} | {cycles} | {per_image} | "
                     f"{utilization} | {entry['wall_s']:.2f} s | {entry['images_per_s']:.1f} | "
                     f"{entry['mismatches']} |")
    lines += ["", "### MiniLM (dynamic, per-channel)", "",
              "| workload / backend | cycles | utilization | wall | accelerator | ONNX Runtime | "
              "mismatches |", "|---|---|---|---|---|---|---|"]
    for name, entry in results["minilm"].items():
        cycles = f"{entry['cycles']:,}" if entry["cycles"] else "-"
        utilization = f"{entry['utilization']:.2%}" if entry["utilization"] else "-"
        lines.append(f"| {name} | {cycles} | {utilization} | {entry['wall_s']:.2f} s | "
                     f"{entry['accelerator_wall_s']:.2f} s | {entry['onnxruntime_wall_s']:.2f} s"
                     f" | {entry['mismatches']} |")
    lines += ["", "| workload / backend | M x K x N | nodes | cycles | utilization | wall |",
              "|---|---|---|---|---|---|"]
    for name, entry in results["minilm"].items():
        for row in entry["shapes"]:
            cycles = f"{row['cycles']:,}" if row["cycles"] else "-"
            utilization = f"{row['utilization']:.2%}" if row["utilization"] else "-"
            lines.append(f"| {name} | {row['m']} x {row['k']} x {row['n']} | {row['nodes']} | "
                         f"{cycles} | {utilization} | {row['wall_s']:.2f} s |")
    if "cosine" in results:
        lines += ["", "| MiniLM weights | cosine mean | cosine min | sentences | mismatches |",
                  "|---|---|---|---|---|"]
        for name, entry in results["cosine"].items():
            lines.append(f"| {name} | {entry['mean']:.4f} | {entry['min']:.4f} | "
                         f"{entry['sentences']} | {entry['mismatches']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cosine", action="store_true",
                        help="skip the cosine similarities over all sentences (golden)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    with Accelerator(backend="verilator") as verilator, \
            Accelerator(backend="golden") as golden_backend:
        accelerators = {"verilator": verilator, "golden": golden_backend}
        results = {"cnn": bench_cnn(accelerators), "minilm": bench_minilm(accelerators)}
        if not args.skip_cosine:
            results["cosine"] = bench_cosine(golden_backend)
    print(_markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
