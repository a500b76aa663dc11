"""A full render as one ONNX model, composed from a bundle's separate graphs (f_c, f_b, t_z, g),
so that one runtime call renders and the intermediate tensors stay inside the runtime.

    model = full_render_model(bundle_dir("mnist"))   # onnx.ModelProto
    session = ort.InferenceSession(model.SerializeToString(), ...)
    image = session.run(None, {"x_c": ..., "x_t1": ..., "x_t2": ..., "x_b": ...})[0]

The wiring is eqsdk.renderer.Renderer.render_arrays without the motion check: f_c runs once on the
three images concatenated along the batch, its output is split back into z_c, z_t1, z_t2, T^Z
moves z_c, and g decodes it over f_b(x_b). Each graph keeps its nodes and initializers under a
prefix ("f_c/", ...); Identity nodes join one graph's output to the next one's input (ONNX
Runtime and OpenVINO remove them when optimising).
"""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, compose, helper

from eqsdk.bundle import read_manifest
from eqsdk.graphs import IMAGE, resolve

INPUTS = ("x_c", "x_t1", "x_t2", "x_b")  # Renderer.render_arrays' arguments, in its order


def prefixed(directory: Path, manifest, name: str) -> onnx.GraphProto:
    """A bundle graph with every name (nodes, tensors, initializers) under "name/"."""
    model = onnx.load(directory / manifest.graphs[name].file)
    return compose.add_prefix(model, prefix=f"{name}/").graph


def full_render_model(directory: Path) -> onnx.ModelProto:
    """One model: inputs x_c, x_t1, x_t2, x_b float32 (B, 3, S, S), output image (B, 3, S, S)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    graphs = {name: prefixed(directory, manifest, name) for name in ("f_c", "f_b", "t_z", "g")}
    shape = list(resolve(IMAGE, manifest.config))
    joins = [
        helper.make_node("Concat", list(INPUTS[:3]), ["f_c/x"], axis=0),  # (3B, 3, S, S)
        # back into z_c, z_t1, z_t2 (B, C, F, F) each, in the order they were concatenated
        helper.make_node("Split", ["f_c/z"], ["t_z/z_c", "t_z/z_t1", "t_z/z_t2"], axis=0, num_outputs=3),
        helper.make_node("Identity", ["x_b"], ["f_b/x"]),
        helper.make_node("Identity", ["t_z/z_moved"], ["g/z_char"]),
        helper.make_node("Identity", ["f_b/z"], ["g/z_bg"]),
        helper.make_node("Identity", ["g/image"], ["image"]),
    ]
    nodes = joins[:1] + list(graphs["f_c"].node) + joins[1:2] + list(graphs["t_z"].node) + \
        joins[2:3] + list(graphs["f_b"].node) + joins[3:5] + list(graphs["g"].node) + joins[5:]
    graph = helper.make_graph(
        nodes, f"{manifest.name}_full_render",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, shape) for k in INPUTS],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [t for g in graphs.values() for t in g.initializer])
    source = onnx.load(directory / manifest.graphs["g"].file, load_external_data=False)
    model = helper.make_model(graph, opset_imports=list(source.opset_import), ir_version=source.ir_version)
    onnx.checker.check_model(model)
    return model


def ort_session(model: onnx.ModelProto, threads: int, spinning: bool):
    """An ONNX Runtime CPU session of the merged model with eqsdk's session options."""
    import onnxruntime as ort

    from eqsdk.backends.ort_cpu import session_options

    return ort.InferenceSession(model.SerializeToString(), session_options(threads, spinning),
                                providers=["CPUExecutionProvider"])
