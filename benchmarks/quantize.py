"""A reduced-precision bundle for ONNX Runtime on the CPU: the encoders f_c and f_b quantized to
int8, and what that costs in quality.

onnxruntime.quantization.quantize_static, QDQ format, weights int8 per output channel, activations
uint8 per tensor (u8 x s8 is what AVX512-VNNI's vpdpbusd multiplies), MinMax calibration on real
Moving MNIST frames of the validation split. t_z and warp stay fp32: their GridSample and the
affine theta need the precision and are a small part of the FLOPs. g stays fp32 by default: with
g in int8 too (graphs=("f_c", "f_b", "g")) the Transformation MSE of the bundled model rose by
183% and the Background MSE by 513% (its full-resolution layers quantise badly), against +6% and
+19% with the encoders alone. The scene representation z stays fp32 too (see fp32_nodes): one
8-bit scale per tensor cannot hold it. The result is a bundle directory (the manifest's sha256
updated) that eqsdk.load and eqsdk.bench take as they are:

    python -m benchmarks.quantize mnist --out bundles/mnist-int8    # then eqsdk.load("bundles/mnist-int8")

(Calibration and the quality check use Moving MNIST, so only Moving MNIST bundles are accepted.)
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from eqsdk.bundle import MANIFEST, read_manifest

QUANTIZED = ("f_c", "f_b")  # the default; "g" may be added
# Ops whose presence in the optimised graph shows integer kernels running (MLAS u8 x s8 GEMMs).
INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QGemm",
               "QLinearAdd", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
FLOAT_COMPUTE_OPS = {"Conv", "ConvTranspose", "FusedConv", "MatMul", "Gemm", "FusedGemm"}


def calibration_inputs(renderer, count: int, seed: int = 0,
                       graphs=("f_c", "f_b", "g")) -> dict[str, list[dict]]:
    """Per quantized graph, its inputs on `count` real scenes, in batches of 32: f_c and f_b on
    validation frames; g on what it receives in a render (z_moved from T^Z, z_bg from f_b),
    computed by the fp32 bundle."""
    from train.moving_mnist import MovingMNIST

    data = MovingMNIST("val", n_digits=1, n_backgrounds=64, seed=seed)
    x1, x2, _ = data.sample_pairs(count, np.random.default_rng([seed, 5]))
    x1, x2 = x1.numpy(), x2.numpy()
    b, out = renderer.backend, {g: [] for g in ("f_c", "f_b", "g")}
    for k in range(0, count, 32):
        a, c = x1[k:k + 32], x2[k:k + 32]
        z1, z2 = b.run("f_c", x=a)["z"], b.run("f_c", x=c)["z"]
        z_bg = b.run("f_b", x=a)["z"]
        out["f_c"].append({"x": np.concatenate([a, c])})
        out["f_b"].append({"x": a})
        if "g" in graphs:
            out["g"].append({"z_char": b.run("t_z", z_t1=z1, z_t2=z2, z_c=z1)["z_moved"], "z_bg": z_bg})
    return {g: out[g] for g in graphs}


def fp32_nodes(graph_name: str, graph) -> list[str]:
    """Nodes left in fp32 so that z never passes through 8 bits: the node that outputs z in the
    encoders; in g the Add of z_char + z_bg and the conv that reads the sum. (z has a std of ~0.2
    and outliers over 3: one uint8 scale per tensor steps by ~0.025, which g amplifies.)"""
    if graph_name == "g":
        first = [n for n in graph.node if {"z_char", "z_bg"} & set(n.input)]
        sums = {o for n in first for o in n.output}
        return [n.name for n in first] + [n.name for n in graph.node if sums & set(n.input)]
    return [n.name for n in graph.node if "z" in n.output]


class Reader:
    """onnxruntime.quantization's CalibrationDataReader protocol over a list of input dicts."""

    def __init__(self, batches: list[dict]):
        self.batches = iter(batches)

    def get_next(self):
        return next(self.batches, None)


def quantize_bundle(source: Path, out: Path, renderer, calibration: int = 256,
                    graphs: tuple[str, ...] = QUANTIZED) -> dict:
    """Write the bundle of `source` with `graphs` in int8 into `out` (replaced); returns its
    manifest."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    manifest = read_manifest(Path(source)).to_json()
    inputs = calibration_inputs(renderer, calibration, graphs=graphs)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    keep = {}
    for graph in manifest["graphs"]:
        src = Path(source) / manifest["graphs"][graph]["file"]
        if graph not in graphs:
            shutil.copyfile(src, out / src.name)
            continue
        keep[graph] = fp32_nodes(graph, onnx.load(src).graph)
        logging.disable(logging.WARNING)  # it advises its pre-processing step on every call
        try:
            quantize_static(str(src), str(out / src.name), Reader(inputs[graph]),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep[graph])
        finally:
            logging.disable(logging.NOTSET)
    for graph, entry in manifest["graphs"].items():
        entry["sha256"] = hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest()
    manifest["name"] = f"{manifest['name']}-int8"
    manifest["precision"] = {"int8": list(graphs), "fp32": [g for g in manifest["graphs"] if g not in graphs],
                             "method": "onnxruntime quantize_static, QDQ, per-channel s8 weights, "
                                       f"u8 activations, MinMax on {calibration} val frames",
                             "fp32_nodes": keep}
    manifest.pop("parity_max_abs_diff", None)
    manifest["golden"] = None  # the golden renders are the fp32 graphs'
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def optimized_ops(directory: Path, threads: int) -> dict[str, dict[str, int]]:
    """Op types of each quantized graph after ONNX Runtime's CPU optimisations (what actually
    runs), written out through SessionOptions.optimized_model_filepath; with the count of integer
kernels and the float convolutions and products left."""
    import onnx
    import onnxruntime as ort

    from eqsdk.backends.ort_cpu import session_options

    manifest, out = read_manifest(Path(directory)), {}
    with tempfile.TemporaryDirectory() as tmp:
        for graph in manifest.precision["int8"]:
            opts = session_options(threads)
            opts.optimized_model_filepath = str(Path(tmp) / f"{graph}.onnx")
            ort.InferenceSession(str(Path(directory) / manifest.graphs[graph].file), opts,
                                 providers=["CPUExecutionProvider"])
            ops: dict[str, int] = {}
            for node in onnx.load(opts.optimized_model_filepath).graph.node:
                ops[node.op_type] = ops.get(node.op_type, 0) + 1
            out[graph] = {"ops": dict(sorted(ops.items())),
                          "integer_kernels": sum(v for k, v in ops.items() if k in INTEGER_OPS),
                          "float_compute_left": {k: v for k, v in ops.items() if k in FLOAT_COMPUTE_OPS}}
    return out


def bf16_support(threads: int) -> dict:
    """Whether ONNX Runtime's CPU provider runs a bf16 Conv here: try a one-node graph."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from eqsdk.backends.ort_cpu import session_options

    w = numpy_helper.from_array(np.zeros((8, 8, 3, 3), np.float32), "w")
    w.data_type, w.raw_data = TensorProto.BFLOAT16, b"\0" * (8 * 8 * 9 * 2)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "c",
                              [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [1, 8, 16, 16])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    try:
        ort.InferenceSession(model.SerializeToString(), session_options(threads),
                             providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises untyped errors; the message is the finding
        return {"available": False, "reason": str(e).splitlines()[0][:300]}
    return {"available": True, "reason": "a bf16 Conv session was created"}


def quality(fp32, int8, examples: int = 500, seed: int = 0, batch: int = 250) -> dict:
    """Per-pixel MSE of the Transformation and Background manipulations of train.evaluate on the
    test split, for two renderers: each against the ground truth, and int8 against fp32."""
    import torch

    from train.evaluate import manipulation_examples, summary
    from train.moving_mnist import MovingMNIST

    training = fp32.manifest.training
    data_seed = (training.train_config if training else {}).get("seed", 0)
    data = MovingMNIST("test", n_digits=1, n_backgrounds=64, seed=data_seed)
    ex = {k: v.numpy() for k, v in manipulation_examples(data, examples, np.random.default_rng([seed, 3])).items()
          if isinstance(v, torch.Tensor)}
    inputs = {"transformation": ("x2i", "x1i", "x1j", "x2i"), "background": ("x1i", "x1i", "x1j", "x2j")}
    out = {"examples": examples, "split": "test", "units": "per-pixel MSE, images in [0, 1]"}
    for task, keys in inputs.items():
        renders = {}
        for name, r in (("fp32", fp32), ("int8", int8)):
            renders[name] = np.concatenate([r.render_arrays(*(ex[k][i:i + batch] for k in keys))
                                            for i in range(0, examples, batch)])
        mse = {name: ((x - ex[f"gt_{task}"]) ** 2).mean(axis=(1, 2, 3)) for name, x in renders.items()}
        diff = renders["int8"] - renders["fp32"]
        out[task] = {"fp32_vs_truth": summary(mse["fp32"]), "int8_vs_truth": summary(mse["int8"]),
                     "int8_vs_fp32": summary((diff ** 2).mean(axis=(1, 2, 3))),
                     "int8_vs_fp32_max_abs": float(np.abs(diff).max()),
                     "relative_cost": float(mse["int8"].mean() / mse["fp32"].mean() - 1)}
    return out


def main(argv=None) -> None:
    import argparse
    import sys

    import eqsdk
    from eqsdk.bundle import bundle_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="bundled model name or bundle directory (Moving MNIST)")
    p.add_argument("--out", type=Path, required=True, help="directory for the int8 bundle (must not exist)")
    p.add_argument("--calibration", type=int, default=256, help="calibration frames")
    p.add_argument("--examples", type=int, default=500, help="test examples for the quality check")
    args = p.parse_args(argv)
    fp32 = eqsdk.load(args.model)
    training = fp32.manifest.training
    dataset = (training.train_config if training else {}).get("dataset", "mnist")
    if dataset != "mnist":
        p.error(f"{args.model} was trained on {dataset!r}; calibration here is Moving MNIST only")
    if args.out.exists():
        p.error(f"{args.out} exists; choose a new directory")
    quantize_bundle(bundle_dir(args.model), args.out, fp32, args.calibration)
    q = quality(fp32, eqsdk.load(args.out), args.examples)
    manifest = json.loads((args.out / MANIFEST).read_text())
    manifest["evaluation"] = {"int8_quality": q}  # the fp32 figures do not describe it
    (args.out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    for task in ("transformation", "background"):
        print(f"{task}: MSE {q[task]['fp32_vs_truth']['mean']:.5f} (fp32) -> "
              f"{q[task]['int8_vs_truth']['mean']:.5f} (int8), {q[task]['relative_cost']:+.1%}")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
