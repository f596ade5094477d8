"""Models of scikit-learn's bundled digits dataset (8 x 8 images, 1,797 samples, no
download): a small CNN trained with PyTorch and the demo's MLP, exported to ONNX.

    data = load_data()
    cnn = DigitsCNN.build(directory)                       # trains once (seconds), exports
    path = cnn.quantized("qoperator", per_channel=True)    # ONNX Runtime's static quantizer
    report = ModelRunner(path, acc).run({"image": data.x_test}, check=True)

Training is seeded and single-threaded, so a model is the same from run to run on one
machine; the tests compare with ONNX Runtime, never with stored numbers.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .quantize import quantize_static

__all__ = ["SEED", "DigitsData", "load_data", "DigitsCNN", "DigitsMLP", "accuracy"]

SEED = 0
CALIBRATION_IMAGES = 512
_VERSION = 1   # of the CNN's definition and training: a cached model of another is rebuilt


@dataclass(frozen=True)
class DigitsData:
    """The demo's split (70% training, 30% test, stratified, seed 0); images as float32
    [N, 1, 8, 8] in [0, 1], labels int64 [N]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_data(seed: int = SEED) -> DigitsData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images.astype(np.float32) / np.float32(16.0))[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=0.3, random_state=seed,
        stratify=digits.target)
    return DigitsData(x_train, y_train, x_test, y_test)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(logits).argmax(axis=1) == labels))


@contextlib.contextmanager
def _torch_single_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _cnn_module():
    import torch
    from torch import nn

    class DigitsNet(nn.Module):
        """conv 3x3 (16) -> conv 3x3 stride 2 (32) -> [depthwise 3x3 -> pointwise 1x1] +
        residual -> max pool 2x2 -> linear (10); ReLUs after the convolutions and the add."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
            self.depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32)
            self.pointwise = nn.Conv2d(32, 32, 1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(32 * 2 * 2, 10)

        def forward(self, x):
            x = torch.relu(self.conv1(x))
            x = torch.relu(self.conv2(x))
            branch = self.pointwise(torch.relu(self.depthwise(x)))
            x = torch.relu(x + branch)
            return self.fc(torch.flatten(self.pool(x), 1))

    return DigitsNet()


def _export(module, example: tuple, path: Path, input_names: list[str],
            output_names: list[str], dynamic_axes: dict) -> Path:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), dynamo=False, opset_version=17,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes)
    return path


class DigitsCNN:
    """The digits CNN in `directory`: `float.onnx` and its quantized variants."""

    def __init__(self, directory: Path, float_accuracy: float) -> None:
        self.directory = Path(directory)
        self.float_accuracy = float_accuracy
        self.float_model = self.directory / "float.onnx"

    @classmethod
    def build(cls, directory: Path, *, seed: int = SEED, epochs: int = 15,
              data: DigitsData | None = None) -> DigitsCNN:
        """Train (Adam, batches of 64, seeded, about 5 s on one core) and export to ONNX
        (opset 17, dynamic batch); reuses a model already in `directory`."""
        directory = Path(directory)
        meta = directory / "cnn.json"
        if meta.is_file() and (directory / "float.onnx").is_file():
            saved = json.loads(meta.read_text())
            if saved.get("seed") == seed and saved.get("epochs") == epochs \
                    and saved.get("version") == _VERSION:
                return cls(directory, saved["float_accuracy"])
        import torch
        from torch import nn

        data = data or load_data()
        directory.mkdir(parents=True, exist_ok=True)
        with _torch_single_thread():
            torch.manual_seed(seed)
            model = _cnn_module()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
            generator = torch.Generator().manual_seed(seed)
            for _ in range(epochs):
                order = torch.randperm(len(x), generator=generator)
                for start in range(0, len(x), 64):
                    batch = order[start:start + 64]
                    optimizer.zero_grad()
                    nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                    optimizer.step()
            model.eval()
            with torch.no_grad():
                logits = model(torch.from_numpy(data.x_test)).numpy()
            _export(model, (torch.from_numpy(data.x_test[:1]),), directory / "float.onnx",
                    ["image"], ["logits"], {"image": {0: "batch"}, "logits": {0: "batch"}})
        float_accuracy = accuracy(logits, data.y_test)
        for stale in directory.glob("cnn-*.onnx"):
            stale.unlink()
        meta.write_text(json.dumps({"version": _VERSION, "seed": seed, "epochs": epochs,
                                    "float_accuracy": float_accuracy}))
        return cls(directory, float_accuracy)

    def quantized(self, fmt: str = "qoperator", *, per_channel: bool = False,
                  activations: str = "uint8", data: DigitsData | None = None) -> Path:
        """The model quantized by ONNX Runtime (static, MinMax calibration on the first
        512 training images); cached in the directory."""
        out = self.directory / (f"cnn-{fmt}-{'per-channel' if per_channel else 'per-tensor'}"
                                f"-{activations}.onnx")
        if not out.is_file():
            data = data or load_data()
            calibration = [{"image": data.x_train[i:i + 64]}
                           for i in range(0, CALIBRATION_IMAGES, 64)]
            quantize_static(self.float_model, out, calibration, fmt=fmt,
                            per_channel=per_channel, activations=activations)
        return out


class DigitsMLP:
    """The demo's MLP (64-64-10, scikit-learn's MLPClassifier, seed 0) as ONNX: input
    `pixels` [N, 64] float32 in [0, 1], MatMul + Add + Relu + MatMul + Add, output `logits`."""

    HIDDEN = 64

    def __init__(self, directory: Path, float_accuracy: float) -> None:
        self.directory = Path(directory)
        self.float_accuracy = float_accuracy
        self.float_model = self.directory / "mlp-float.onnx"

    @classmethod
    def build(cls, directory: Path, *, data: DigitsData | None = None) -> DigitsMLP:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
        from sklearn.neural_network import MLPClassifier

        data = data or load_data()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        x_train = data.x_train.reshape(len(data.x_train), -1)
        x_test = data.x_test.reshape(len(data.x_test), -1)
        model = MLPClassifier(hidden_layer_sizes=(cls.HIDDEN,), max_iter=400,
                              random_state=SEED)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x_train, data.y_train)
        weights = [w.astype(np.float32) for w in model.coefs_]            # [K, N]
        biases = [b.astype(np.float32) for b in model.intercepts_]
        float_logits = np.maximum(x_test @ weights[0] + biases[0], 0) @ weights[1] + biases[1]
        nodes = [helper.make_node("MatMul", ["pixels", "w1"], ["h1"]),
                 helper.make_node("Add", ["h1", "b1"], ["h1b"]),
                 helper.make_node("Relu", ["h1b"], ["hidden"]),
                 helper.make_node("MatMul", ["hidden", "w2"], ["h2"]),
                 helper.make_node("Add", ["h2", "b2"], ["logits"])]
        initializers = [numpy_helper.from_array(array, name) for name, array in
                        (("w1", weights[0]), ("b1", biases[0]), ("w2", weights[1]),
                         ("b2", biases[1]))]
        graph = helper.make_graph(
            nodes, "digits_mlp",
            [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
            initializer=initializers)
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        proto.ir_version = 8
        onnx.checker.check_model(proto)
        onnx.save(proto, str(directory / "mlp-float.onnx"))
        return cls(directory, accuracy(float_logits, data.y_test))

    def quantized(self, fmt: str = "qoperator", *, per_channel: bool = False,
                  activations: str = "uint8", data: DigitsData | None = None) -> Path:
        out = self.directory / (f"mlp-{fmt}-{'per-channel' if per_channel else 'per-tensor'}"
                                f"-{activations}.onnx")
        if not out.is_file():
            data = data or load_data()
            pixels = data.x_train.reshape(len(data.x_train), -1)
            calibration = [{"pixels": pixels[i:i + 64]}
                           for i in range(0, CALIBRATION_IMAGES, 64)]
            quantize_static(self.float_model, out, calibration, fmt=fmt,
                            per_channel=per_channel, activations=activations)
        return out
