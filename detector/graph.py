"""The exported INT8 graph rewritten for serving: the same integers, fewer cycles on one thread.

Why: at one thread the network's first steps cost out of proportion. ONNX Runtime profiling of
the shipped model put a fifth of a crop's time in the stem convolution (3x3, stride 2, over three
channels: its INT8 im2col is the slow case) and more in turning the float image into uint8 and
NHWC. ONNX Runtime makes neither rewrite below itself; both leave every integer the network
computes as it was, so the scores do not move (``tests/test_graph.py`` holds them to the bit):

- **Quantized input.** The graph opens by quantizing the normalised float image to uint8, and a
  pixel value has 256 possible results per channel. Serving looks them up in a table that ONNX
  Runtime's own QuantizeLinear computed from the model's scale and zero point, and feeds the
  uint8 crops as they are (NHWC): the float image, the quantize and the layout transpose go.
- **Space-to-depth stem.** A 3x3 stride-2 convolution over 3 channels is a 2x2 stride-1
  convolution over 12 channels of 2x2 pixel blocks, with the 4x4 kernel's extra taps zero: the
  integer sums hold the same products. ONNX Runtime runs the second about 2.5x faster.

The file on disk is untouched: the browser, the mobile export and ``recover`` read it as trained.
Exact where INT8 products accumulate in 32 bits (x86 with VNNI or AMX, ARM's dot product); on an
x86 CPU with only AVX2, ONNX Runtime's own 16-bit pair sums may saturate, and differently for
the two orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ServingGraph:
    """The model to hand ONNX Runtime and how to feed it.

    ``table`` (3 x 256, uint8) is set when the input is uint8 NHWC pixels looked up per channel;
    ``None`` means the file's float NCHW input, preprocessed as the card says.
    """

    model: bytes
    input_name: str
    table: np.ndarray | None
    rewrites: tuple[str, ...]


def quantize_table(values: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """``values`` (3 x 256 float32, each channel's input per pixel value) as ONNX Runtime's
    QuantizeLinear makes them: the same operator on the same floats, so the same to the bit."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    values = np.ascontiguousarray(values, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["q"])],
        "table",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(values.shape))],
        [helper.make_tensor_value_info("q", TensorProto.UINT8, list(values.shape))],
        [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(zero_point, "zero_point")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": values})[0]


def for_serving(path: Path, input_values: np.ndarray) -> ServingGraph:
    """The model at ``path`` with every rewrite whose pattern it matches exactly.

    ``input_values`` is the float input per channel and pixel value that serving's preprocessing
    gives (3 x 256). A graph that matches no pattern (an FP32 export, say) comes back as it is.
    """
    import onnx

    model = onnx.load(str(path))
    rewrites: list[str] = []
    table = _quantized_input(model, input_values)
    if table is not None:
        rewrites.append("quantized input")
        if _space_to_depth_stem(model):
            rewrites.append("space-to-depth stem")
    return ServingGraph(model.SerializeToString(), model.graph.input[0].name, table, tuple(rewrites))


# --- the rewrites: each checks its whole pattern first and changes nothing unless it matches ---

PIXELS = "pixels"


def _consumers(model, name: str) -> list:
    return [n for n in model.graph.node if name in n.input]


def _producer(model, name: str):
    return next((n for n in model.graph.node if name in n.output), None)


def _initializer(model, name: str):
    return next((i for i in model.graph.initializer if i.name == name), None)


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _drop_unused_initializers(model, names) -> None:
    for name in names:
        if not _consumers(model, name):
            init = _initializer(model, name)
            if init is not None:
                model.graph.initializer.remove(init)


def _quantized_input(model, input_values: np.ndarray) -> np.ndarray | None:
    """Replace the opening QuantizeLinear by uint8 NHWC pixels; the lookup table, or None."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    if len(graph.input) != 1:
        return None
    image = graph.input[0]
    tensor = image.type.tensor_type
    dims = [d.dim_value or d.dim_param for d in tensor.shape.dim]
    if tensor.elem_type != TensorProto.FLOAT or len(dims) != 4 or dims[1] != 3:
        return None
    users = _consumers(model, image.name)
    if len(users) != 1 or users[0].op_type != "QuantizeLinear" or len(users[0].input) != 3:
        return None
    quant = users[0]
    scale, zero_point = (_initializer(model, quant.input[i]) for i in (1, 2))
    if scale is None or zero_point is None or zero_point.data_type != TensorProto.UINT8:
        return None
    scale, zero_point = numpy_helper.to_array(scale), numpy_helper.to_array(zero_point)
    if scale.size != 1 or zero_point.size != 1 or input_values.shape != (3, 256):
        return None
    table = quantize_table(input_values, scale, zero_point)
    height, width = dims[2], dims[3]
    pixels = helper.make_tensor_value_info(PIXELS, TensorProto.UINT8, [dims[0], height, width, 3])
    to_nchw = helper.make_node(
        "Transpose", [PIXELS], [quant.output[0]], perm=[0, 3, 1, 2], name="pixels_to_nchw"
    )
    position = list(graph.node).index(quant)
    graph.node.remove(quant)
    graph.node.insert(position, to_nchw)
    graph.input.remove(image)
    graph.input.append(pixels)
    _drop_unused_initializers(model, quant.input[1:])
    return table


def _space_to_depth_stem(model) -> bool:
    """Make the stem (3x3, stride 2, 3 channels, padded bottom and right) a 2x2 convolution over
    2x2 pixel blocks. Runs after ``_quantized_input``: the pixels feed its transpose."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    if dims[1] % 2 or dims[2] % 2 or not dims[1]:
        return False
    to_nchw = _consumers(model, PIXELS)[0]
    users = _consumers(model, to_nchw.output[0])
    if len(users) != 1 or users[0].op_type != "DequantizeLinear":
        return False
    convs = _consumers(model, users[0].output[0])
    if len(convs) != 1 or convs[0].op_type != "Conv":
        return False
    conv = convs[0]
    a = _attrs(conv)
    if (
        a.get("group", 1) != 1
        or list(a.get("kernel_shape", [])) != [3, 3]
        or list(a.get("strides", [])) != [2, 2]
        or list(a.get("dilations", [1, 1])) != [1, 1]
        or list(a.get("pads", [])) != [0, 0, 1, 1]
        or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
    ):
        return False
    weight_dq = _producer(model, conv.input[1])
    if weight_dq is None or weight_dq.op_type != "DequantizeLinear":
        return False
    weight = _initializer(model, weight_dq.input[0])
    if weight is None or weight.data_type != TensorProto.INT8 or len(_consumers(model, weight.name)) != 1:
        return False
    w = numpy_helper.to_array(weight)
    if w.ndim != 4 or w.shape[1:] != (3, 3, 3) or _attrs(weight_dq).get("axis", 1) != 0:
        return False
    # output (i, j) reads input rows 2i..2i+2 and columns 2j..2j+2: blocks i, i+1 and j, j+1.
    # Block channel (dy * 2 + dx) * 3 + c is pixel (2i + dy, 2j + dx, c), as SpaceToDepth orders it.
    out = w.shape[0]
    w4 = np.zeros((out, 3, 4, 4), dtype=np.int8)
    w4[:, :, :3, :3] = w
    w2 = w4.reshape(out, 3, 2, 2, 2, 2).transpose(0, 3, 5, 1, 2, 4).reshape(out, 12, 2, 2)
    weight.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w2), weight.name))
    for attr in conv.attribute:
        if attr.name == "kernel_shape":
            attr.ints[:] = [2, 2]
        elif attr.name == "strides":
            attr.ints[:] = [1, 1]
    blocks = to_nchw.output[0] + "_blocks"
    position = list(graph.node).index(to_nchw) + 1
    graph.node.insert(position, helper.make_node("SpaceToDepth", [blocks], [users[0].input[0]], blocksize=2))
    to_nchw.output[0] = blocks
    return True
