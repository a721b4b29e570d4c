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

**The same integers on every CPU.** On x86 without VNNI, ONNX Runtime adds each pair of uint8 x
int8 products in 16 bits and saturates (``detector.cpu``). ``worst_pair_sum`` bounds those sums
from the weights alone: a model whose weights keep every same-signed pair within 128 in magnitude
(7-bit weights, ``detector.training.narrow``) cannot saturate, and is served as above on every
CPU. A model that could saturate (the shipped one: narrowing its weights after training cost up
to 0.09 validation AUC per source) is served there with its weights re-encoded as uint8 around a
zero point of 128 (``uint8 weights``): the same dequantized values, computed by ONNX Runtime's
U8U8 kernels, which widen to 16 bits before multiplying and so never saturate. Either way a
crop's integers, and so its score, are the ones a VNNI CPU computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cpu import CpuClass, this_cpu

# A 16-bit pair sum's bound, and the largest activation it multiplies (uint8 activations).
PAIR_SUM_LIMIT = 32767
ACTIVATION_MAX = 255


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


def for_serving(
    path: Path, input_values: np.ndarray, cpu: CpuClass | None = None, faster: bool = True
) -> ServingGraph:
    """The model at ``path`` as ``cpu`` (this machine's by default) must run it.

    With ``faster``, every speed rewrite whose pattern the graph matches exactly; without, the
    file's graph and float input (what ``make bench`` compares against). Exactness is not
    optional: where the CPU's pair sums could saturate on these weights, they are re-encoded
    either way. ``input_values`` is the float input per channel and pixel value that serving's
    preprocessing gives (3 x 256). A graph that matches no pattern (an FP32 export) comes back
    as it is.
    """
    import onnx

    model = onnx.load(str(path))
    rewrites: list[str] = []
    table = _quantized_input(model, input_values) if faster else None
    if table is not None:
        rewrites.append("quantized input")
        if _space_to_depth_stem(model):
            rewrites.append("space-to-depth stem")
    saturates = not (cpu or this_cpu()).int8_sums_exact and worst_pair_sum(model) > PAIR_SUM_LIMIT
    if saturates and _unsigned_weights(model):
        rewrites.append("uint8 weights")
    return ServingGraph(model.SerializeToString(), model.graph.input[0].name, table, tuple(rewrites))


def reference_session(model: Path | bytes):
    """ONNX Runtime with every graph optimisation off: each QuantizeLinear / DequantizeLinear
    pair computed in float as the graph states it, the same on every CPU. The measure served
    scores are held to (``tests/test_graph.py``, ``detector.training.parity``); about five times
    slower than serving."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def integer_weights(model) -> list[tuple]:
    """``(conv, dequantize, initializer)`` for each convolution whose weight is a dequantized
    int8 initializer: the convolutions ONNX Runtime runs with INT8 products."""
    from onnx import TensorProto

    out = []
    for conv in model.graph.node:
        if conv.op_type != "Conv" or len(conv.input) < 2:
            continue
        dq = producer(model, conv.input[1])
        init = (
            initializer(model, dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        )
        if init is not None and init.data_type == TensorProto.INT8:
            out.append((conv, dq, init))
    return out


def worst_pair_sum(model) -> int:
    """The largest magnitude a 16-bit sum of two uint8 x int8 products can reach in ``model``,
    from its weights alone: per output channel, its two largest same-signed weights against the
    brightest activation. Whatever order a kernel pairs the products in, no pair exceeds it; at
    or under ``PAIR_SUM_LIMIT`` nothing can saturate. A model with no int8 weights gives 0."""
    from onnx import numpy_helper

    worst = 0
    for _, _, init in integer_weights(model):
        w = numpy_helper.to_array(init).astype(np.int64).reshape(init.dims[0], -1)
        for sign in (1, -1):
            side = np.sort(np.clip(sign * w, 0, None), axis=1)
            top2 = side[:, -2:].sum(axis=1) if side.shape[1] > 1 else side[:, -1]
            worst = max(worst, int(top2.max()) * ACTIVATION_MAX)
    return worst


# --- the rewrites: each checks its whole pattern first and changes nothing unless it matches ---

PIXELS = "pixels"


def _consumers(model, name: str) -> list:
    return [n for n in model.graph.node if name in n.input]


def producer(model, name: str):
    return next((n for n in model.graph.node if name in n.output), None)


def initializer(model, name: str):
    return next((i for i in model.graph.initializer if i.name == name), None)


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _drop_unused_initializers(model, names) -> None:
    for name in names:
        if not _consumers(model, name):
            init = initializer(model, name)
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
    scale, zero_point = (initializer(model, quant.input[i]) for i in (1, 2))
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
    weight_dq = producer(model, conv.input[1])
    if weight_dq is None or weight_dq.op_type != "DequantizeLinear":
        return False
    weight = initializer(model, weight_dq.input[0])
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


def _unsigned_weights(model) -> bool:
    """Re-encode every int8 convolution weight as uint8 around a zero point of 128: ``w + 128``
    with ``zp + 128`` dequantizes to the same floats, and ONNX Runtime then picks its U8U8
    kernels, whose sums cannot saturate. Needs int8 zero points (a shared one per tensor, as
    ONNX Runtime asks of per-channel uint8 weights); changes nothing unless every weight has one."""
    from onnx import TensorProto, numpy_helper

    found = integer_weights(model)
    zero_points = []
    for _, dq, _ in found:
        zp = initializer(model, dq.input[2]) if len(dq.input) > 2 else None
        if zp is None or zp.data_type != TensorProto.INT8:
            return False
        values = numpy_helper.to_array(zp)
        if values.size and not (values == values.flat[0]).all():
            return False
        zero_points.append(zp)
    if not found:
        return False
    shifted = set()
    for (_, _, init), zp in zip(found, zero_points, strict=True):
        for tensor in (init, zp):
            if tensor.name not in shifted:  # a zero point shared by two weights moves once
                values = numpy_helper.to_array(tensor).astype(np.int16) + 128
                tensor.CopyFrom(numpy_helper.from_array(values.astype(np.uint8), tensor.name))
                shifted.add(tensor.name)
    return True
