"""`python -m host.models DIR`: write the repository's quantized models and example inputs
to DIR, ready for `lpmac run` (with `--float`: the float models and datasets for `lpmac
tune`, see the end of this docstring):

    DIR/cnn-qoperator-per-channel-uint8.onnx, ... (8 variants)   DIR/digits-images.npy
    DIR/mlp-qoperator-per-channel-uint8.onnx                      DIR/digits-pixels.npy
    DIR/minilm-dynamic-per-channel.onnx, -per-tensor.onnx        DIR/minilm-<input>.npy

e.g. `lpmac run DIR/minilm-dynamic-per-channel.onnx --input input_ids=DIR/minilm-input_ids.npy
--input attention_mask=DIR/minilm-attention_mask.npy --input
token_type_ids=DIR/minilm-token_type_ids.npy --check` (the first shipped sentence, 16 tokens).

`python -m host.models DIR --float` writes DIR/digits-float.onnx and DIR/digits.npz (the 540
test images as `image`, their `labels`), DIR/minilm-float.onnx and DIR/minilm.npz (the 16
shipped sentences, tokenized: `input_ids`, `attention_mask`, `token_type_ids`), e.g.
`lpmac tune DIR/digits-float.onnx --data DIR/digits.npz --out tuned/`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from . import model_dir
from .digits import DigitsCNN, DigitsMLP, load_data
from .minilm import MiniLM, sentences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host.models",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output directory")
    parser.add_argument("--no-minilm", action="store_true", help="only the digits models")
    parser.add_argument("--float", action="store_true",
                        help="the float models and their datasets for lpmac tune instead: "
                             "digits-float.onnx with digits.npz (the test images and labels), "
                             "minilm-float.onnx with minilm.npz (the shipped sentences)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data()
    if args.float:
        return _float_models(out, data, minilm=not args.no_minilm)
    cnn = DigitsCNN.build(model_dir() / "digits", data=data)
    for fmt in ("qoperator", "qdq"):
        for per_channel in (False, True):
            for activations in ("uint8", "int8"):
                path = cnn.quantized(fmt, per_channel=per_channel, activations=activations,
                                     data=data)
                shutil.copy(path, out / path.name)
    mlp = DigitsMLP.build(model_dir() / "digits-mlp", data=data)
    path = mlp.quantized("qoperator", per_channel=True, data=data)
    shutil.copy(path, out / path.name)
    np.save(out / "digits-images.npy", data.x_test)
    np.save(out / "digits-pixels.npy", data.x_test.reshape(len(data.x_test), -1))
    np.save(out / "digits-labels.npy", data.y_test)
    if not args.no_minilm:
        minilm = MiniLM.build(model_dir() / "minilm")
        for per_channel in (True, False):
            path = minilm.quantized(per_channel=per_channel)
            shutil.copy(path, out / path.name)
        for name, value in minilm.tokenize(sentences()[:1]).items():
            np.save(out / f"minilm-{name}.npy", value)
    for path in sorted(out.iterdir()):
        print(path)
    return 0


def _float_models(out: Path, data, *, minilm: bool) -> int:
    cnn = DigitsCNN.build(model_dir() / "digits", data=data)
    written = [out / "digits-float.onnx", out / "digits.npz"]
    shutil.copy(cnn.float_model, written[0])
    np.savez(written[1], image=data.x_test, labels=data.y_test)
    if minilm:
        model = MiniLM.build(model_dir() / "minilm")
        written += [out / "minilm-float.onnx", out / "minilm.npz"]
        shutil.copy(model.float_model, written[2])
        np.savez(written[3], **model.tokenize(sentences()))
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
