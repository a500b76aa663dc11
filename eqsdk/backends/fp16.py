"""An fp32 ONNX graph -> the same graph in fp16 with a float32 interface.

TensorRT 11 builds strongly typed networks only: each layer runs in the type the ONNX gives it,
and BuilderFlag.FP16 is gone (NVIDIA, "Migrating from TensorRT 10.x to 11.x": "Strongly Typed
Networks Are Now Required"). So an fp16 engine needs an fp16 ONNX: float initializers and
constants become float16, a Cast after each graph input and before each graph output keeps the
interface float32 (the renderer's tensors are float32 on every backend), and ops in KEEP_FP32 run
in float32 between Casts. Needs the onnx package (the tensorrt extra installs it); eqsdk imports
this module only when it builds such an engine.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Ops whose fp16 form is unsafe here: InstanceNormalization's variance sums squares over F*F
# positions of T^Z's features, which can overflow or lose most digits in fp16.
KEEP_FP32 = ("InstanceNormalization",)
# Inputs the ONNX spec types as float32 whatever the data's type: (op, input index).
FLOAT32_ONLY_INPUTS = {("Resize", 2)}  # scales
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


def to_fp16(model: onnx.ModelProto, keep_fp32: tuple[str, ...] = KEEP_FP32) -> onnx.ModelProto:
    """A copy of `model` computing in fp16 (ops in `keep_fp32` in float32) with float32 inputs
    and outputs; checked with onnx's checker."""
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for n in graph.node for a in n.attribute):
        raise ValueError("to_fp16: graphs with subgraphs (If, Loop, Scan) are not supported")
    typed = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    was_float = {v.name for v in (*typed.value_info, *typed.input, *typed.output)
                 if v.type.tensor_type.elem_type == FLOAT}
    was_float |= {i.name for i in graph.initializer if i.data_type == FLOAT}

    # Initializers read by an fp16 op become fp16; those read only in float32 stay as they are.
    half_readers = {x for n in graph.node if n.op_type not in keep_fp32
                    for k, x in enumerate(n.input) if (n.op_type, k) not in FLOAT32_ONLY_INPUTS}
    initializers = []
    for init in graph.initializer:
        if init.data_type == FLOAT and init.name in half_readers:
            with np.errstate(over="ignore"):  # overflow is checked just below
                half = numpy_helper.to_array(init).astype(np.float16)
            if not np.isfinite(half).all():
                raise ValueError(f"to_fp16: initializer {init.name!r} has values beyond fp16's range")
            init = numpy_helper.from_array(half, init.name)
        initializers.append(init)
    still_float = {i.name for i in initializers if i.data_type == FLOAT}

    nodes = []
    for name in [i.name for i in graph.input if i.type.tensor_type.elem_type == FLOAT]:
        nodes.append(helper.make_node("Cast", [name], [f"{name}_fp16"], to=HALF))
    renamed = {i.name: f"{i.name}_fp16" for i in graph.input if i.type.tensor_type.elem_type == FLOAT}
    renamed |= {o.name: f"{o.name}_fp16" for o in graph.output if o.type.tensor_type.elem_type == FLOAT}
    original = {v: k for k, v in renamed.items()}
    cast_to_float = {}  # fp16 value -> its float32 copy, made once for all float32 ops reading it
    for node in graph.node:
        node = _copy(node)
        node.input[:] = [renamed.get(x, x) for x in node.input]
        node.output[:] = [renamed.get(y, y) for y in node.output]
        if node.op_type in keep_fp32:
            for k, x in enumerate(node.input):
                if x and x not in still_float and original.get(x, x) in was_float:
                    if x not in cast_to_float:
                        cast_to_float[x] = f"{x}_fp32"
                        nodes.append(helper.make_node("Cast", [x], [cast_to_float[x]], to=FLOAT))
                    node.input[k] = cast_to_float[x]
            outs = [(k, y) for k, y in enumerate(node.output) if original.get(y, y) in was_float]
            for k, y in outs:
                node.output[k] = cast_to_float[y] = f"{y}_fp32"  # float32 ops after it read this
            nodes.append(node)
            nodes += [helper.make_node("Cast", [f"{y}_fp32"], [y], to=HALF) for _, y in outs]
            continue
        _retype(node)
        nodes.append(node)
    for o in graph.output:
        if o.name in renamed:
            nodes.append(helper.make_node("Cast", [renamed[o.name]], [o.name], to=FLOAT))

    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:], out.graph.initializer[:], out.graph.value_info[:]  # value types changed
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(initializers)
    out = onnx.shape_inference.infer_shapes(out, strict_mode=True)
    onnx.checker.check_model(out, full_check=True)
    return out


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def _retype(node: onnx.NodeProto) -> None:
    """float32 constants and casts inside an fp16 op -> float16."""
    if node.op_type == "Constant" and node.attribute[0].name in ("value_float", "value_floats"):
        value = helper.get_attribute_value(node.attribute[0])
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(
            np.asarray(value, np.float16))))
    for a in node.attribute:
        if node.op_type == "Cast" and a.name == "to" and a.i == FLOAT:
            a.i = HALF
        elif node.op_type in ("Constant", "ConstantOfShape") and a.name == "value" \
                and a.t.data_type == FLOAT:
            a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype("float16"), a.t.name))
