"""Export to LiteRT (TFLite) with the learned integers as int8 weights, in the op graph of TFLite's own files.

TensorFlow's module (imported lazily; a clear error names the extra to install where it is missing).
:func:`export_litert`:

1. converts the *float-equivalent* model — every quantized parameter the constant ``P_r = P_q · s`` the layer
   computes with, every other variable a constant — as TFLite converts any float Keras model: BatchNormalization
   folded into the convolution before it, ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` / ``FULLY_CONNECTED`` with constant
   weights (the graph of TFLite's dynamic-range conversion of the same model);
2. finds each quantized parameter among the converted constants, by value in TFLite's layout: the constant is
   ``P_q · k`` with one ``k`` per tensor or per channel — ``k = s`` where nothing was folded into it,
   ``k = s · γ/√(σ²+ε)`` where a BatchNormalization was (a negative factor flips the channel's integers' sign);
3. stores ``P_q`` there as int8 (``-128..127``) with ``k`` as TFLite quantization parameters (zero point 0,
   ``quantized_dimension`` the channel axis), after checking ``fl32(P_q · k)`` equals the converted constant within
   ``2^-20`` (relative), and reads it through a ``DEQUANTIZE``.

``mode="float"``: every such weight goes through its ``DEQUANTIZE`` into the float kernels, which the interpreter
(XNNPACK) runs once when it loads the model: the file computes in float32 with exactly ``P_q · k``, so its
predictions equal the Keras model's within float32 tolerance (summation order), as fast as TFLite's float file of
the model. Layers lqs does not quantize keep their float32 weights.

``mode="dynamic"`` (default): the op graph of TFLite's dynamic-range file (``Optimize.DEFAULT``): weights of at least 1024
values feed ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` / ``FULLY_CONNECTED`` as int8, and these hybrid kernels quantize the
activations at run time (on CPUs with int8 dot products several times faster than float32; predictions within that
quantization's error, about 1e-2 relative). The int8 weights are lqs' integers where their scale is per tensor or
per output channel; a scale per input channel (row-wise Dense, channel-wise Conv2D) moves to the input,
``x @ (P_q · s) = (x · s) @ P_q``: into the constants of the inference BatchNorm that computes ``x``,
``(y · a + b) · s``, else a ``MUL``. Weights lqs has no int8 integers for (layers it does not quantize, integers
beyond int8) get TFLite's own rule, per output channel ``s = max|w| / 127``, ``P_q = round(w / s)``; they are
listed in the report's ``requantized``.

Left in float32 (the converted values, exact; :func:`export_litert` warns for weights, not biases): integers beyond
int8 (beyond int16 too, or with a per-channel scale, with ``int16=True``: int16 has per-tensor DEQUANTIZE only);
a scale that varies along several axes (CGMQ's per-weight gates) or ``P_q · s`` that is not the layer's value; a
constant the converter made from more than the integers and one scale per channel (a BatchNormalization folded
into a bias, or into a kernel whose scale varies along its input axis).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from typing import Optional

import keras
import numpy as np

from lqs_core.atomic import write_bytes
from lqs_core.layers import computing_with, quantized_params, substituted
from lqs_core.metrics import integer_tensors

#: Relative distance allowed between ``fl32(P_q · k)`` and the float32 value it stands for: a few float32 ulps
#: (the straight-through form ``P + (P_r - P)`` of fixed-bit and CGMQ quantizers, BatchNorm folding).
_RTOL = 2.0**-20

#: Weights with fewer values stay float32 in TFLite's dynamic-range conversion (and float kernels in ``dynamic``).
_HYBRID_MIN_ELEMENTS = 1024

#: Converter settings :func:`export_litert` makes itself (it quantizes the weights after a float conversion).
_OWN_OPTIONS = ("optimizations", "representative_dataset", "target_spec.supported_types", "inference_type",
                "inference_input_type", "inference_output_type")

_MODES = ("float", "dynamic")

_INSTALL = ("pip install 'lqs-core[cpu]' (TensorFlow, which converts) and 'lqs-core[export]' (ai-edge-litert, "
            "which runs the file)")


def _tensorflow():
    try:
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ModuleNotFoundError(f"lqs_core.litert needs TensorFlow to convert a model: {_INSTALL}.",
                                  name="tensorflow") from e
    return tf


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    return schema, flatbuffer_utils


# ---------------------------------------------------------------------------------------------------- the plan


def _integer_form(q: np.ndarray, s: np.ndarray, p_r: np.ndarray) -> str:
    """Why ``P_r = P_q · s`` has no int8 form with one scale per tensor or axis ("" where it has one)."""
    if s.ndim != q.ndim or any(d not in (1, n) for d, n in zip(s.shape, q.shape)):
        return f"scale of shape {s.shape} is no per-tensor or per-axis scale of {q.shape}"
    varying = [i for i, d in enumerate(s.shape) if d > 1]
    if len(varying) > 1:
        return f"scale varies along axes {varying}; TFLite has one quantized dimension"
    q_s = (q.astype(np.float32) * s).astype(np.float32)
    if not np.allclose(q_s, p_r, rtol=_RTOL, atol=_RTOL * float(np.max(s))):
        return "P_q · s is not the value the layer computes"
    return ""


def _fits(lo: int, hi: int, per_tensor: bool, int16: bool):
    """``(storage, reason)`` for integers in ``lo..hi``: int8, int16 (per tensor, ``int16=True``) or float32."""
    if -128 <= lo and hi <= 127:
        return "int8", ""
    if int16 and -32768 <= lo and hi <= 32767:
        if per_tensor:
            return "int16", f"integers {lo}..{hi} exceed int8"
        return "float32", f"integers {lo}..{hi} exceed int8, and TFLite's DEQUANTIZE has no per-axis int16 scales"
    return "float32", f"integers {lo}..{hi} exceed int8" + (" and int16" if int16 else "")


def _plan(model):
    """One entry per quantized parameter: its integers, scale, ``P_r`` and the reason it has no int8 form."""
    plan = []
    ints = integer_tensors(model)
    for (_, layer, param, variable, quantizer), name in zip(quantized_params(model), ints):
        q = ints[name]
        s = np.asarray(keras.ops.convert_to_numpy(quantizer.scale), dtype=np.float32)
        p_r = np.asarray(keras.ops.convert_to_numpy(quantizer(variable)), dtype=np.float32)
        lo, hi = (int(q.min()), int(q.max())) if q.size else (0, 0)
        plan.append({"name": name, "layer": layer, "param": param, "q": q, "s": s, "p_r": p_r, "range": (lo, hi),
                     "storage": "float32", "reason": _integer_form(q, s, p_r), "axis": None, "folded": False,
                     "tflite_shape": None})
    return plan


# ----------------------------------------------------------------------------------------------- conversion


def _set_options(converter, options: dict):
    """``converter.<dotted key> = value`` for each option (``ValueError`` for unknown keys and lqs' own)."""
    for key, value in options.items():
        if key in _OWN_OPTIONS:
            raise ValueError(f"export_litert: converter option {key!r} is set by the export itself (it stores the "
                             "learned integers); leave it out.")
        *path, last = key.split(".")
        target = converter
        for part in path:
            target = getattr(target, part, None)
        if target is None or not hasattr(target, last):
            raise ValueError(f"export_litert: the TFLite converter has no option {key!r}.")
        setattr(target, last, value)


def _convert(model, plan, converter_options: dict) -> bytes:
    """The float TFLite flatbuffer of the float-equivalent model (``P_r`` and every other weight as constants)."""
    tf = _tensorflow()
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"export_litert: models with one input and one output only; {model.name!r} has "
                         f"{len(model.inputs)} and {len(model.outputs)}.")
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), model.inputs[0].dtype, name="x")
    constants = [(v, keras.ops.convert_to_numpy(v)) for v in model.weights]
    values = {(t["layer"], t["param"]): tf.constant(t["p_r"]) for t in plan}

    def serve(x):
        with substituted(constants), computing_with(values):
            return model(x, training=False)

    function = tf.function(serve, input_signature=[spec], autograph=False)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], model)
    converter.experimental_enable_resource_variables = False
    _set_options(converter, converter_options)
    try:
        return bytes(converter.convert())
    except Exception as e:  # the converter's own error, with the way out where TensorFlow ops are needed
        if not ("ops_select" in str(e) or "SELECT_TF_OPS" in str(e)) or converter_options:
            raise
        raise ValueError("export_litert: the model needs TensorFlow ops that TFLite has no builtin for (e.g. an LSTM's "
                         "TensorList ops); pass converter_options={'target_spec.supported_ops': "
                         "[tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]} (for TensorList ops also "
                         "'_experimental_lower_tensor_list_ops': False; the interpreter then needs the Flex delegate). "
                         f"The converter said: {str(e)[-300:]}") from e


# ------------------------------------------------------------------------------------------------- matching


def _layouts(a: np.ndarray, shape):
    """``a`` (Keras layout) in the layouts TFLite gives weights of ``shape``: as is (depthwise, Conv3D, Embedding,
    bias), last axis first (CONV_2D ``(out, h, w, in)``, Conv1D, an EinsumDense ``(heads, dim, out)``), first axis
    last (FULLY_CONNECTED ``(out..., in)`` of Dense and EinsumDense ``(in, heads, dim)``), all axes reversed."""
    n = a.ndim
    seen = []
    for perm in (tuple(range(n)), (n - 1, *range(n - 1)), (*range(1, n), 0), tuple(reversed(range(n)))):
        if perm not in seen:
            seen.append(perm)
            yield perm, np.transpose(a, perm).reshape(shape)


def _ratios(q: np.ndarray, w: np.ndarray):
    """``w / q`` (float64, NaN where ``q = 0``), or ``None`` where their zeros differ (no scale maps one to the
    other)."""
    nonzero = q != 0
    if not np.array_equal(nonzero, w != 0):
        return None
    r = np.full(w.shape, np.nan)
    np.divide(w, q, out=r, where=nonzero)
    return r


def _common_ratio(r: np.ndarray):
    """``(axis, k)``: ``r`` is one value ``k`` per tensor (axis ``None``) or per index of ``axis`` (within a few
    ulps), else ``None``; ``k`` per slice is the middle of its ratios (NaN for a slice of zeros)."""
    for axis in [None, 0, r.ndim - 1, *range(1, r.ndim - 1)]:
        rows = r.reshape(1, -1) if axis is None else np.moveaxis(r, axis, 0).reshape(r.shape[axis], -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # slices of zeros
            lo, hi = np.nanmin(rows, axis=1), np.nanmax(rows, axis=1)
        spread = np.abs(hi - lo) <= 4 * _RTOL * np.maximum(np.abs(hi), np.abs(lo))
        if np.all(spread | np.isnan(lo)):
            return axis, np.where(np.isnan(lo), np.nan, (lo + hi) / 2)
    return None


def _exact(q: np.ndarray, k: np.ndarray, w: np.ndarray) -> bool:
    """``fl32(q · k) == w`` within :data:`_RTOL` (relative)."""
    return bool(np.all(np.abs((q.astype(np.float32) * k).astype(np.float32) - w) <= _RTOL * np.abs(w)))


def _scale_along(k: np.ndarray, axis, shape):
    """``k`` (one value per index of ``axis``, or one) broadcastable to ``shape``; NaN (slices of zeros) -> 1."""
    k = np.where(np.isnan(k), 1.0, k).astype(np.float32)
    if axis is None:
        return k.reshape((1,) * len(shape))
    return k.reshape([-1 if i == axis else 1 for i in range(len(shape))])


def _match(entry, w: np.ndarray):
    """``(q in TFLite's layout, scale broadcastable to it, axis, folded)`` where ``w = P_q · k``, else ``None``.

    The learned scale ``s`` where it reproduces ``w`` (nothing folded), else the fitted ``k`` (e.g.
    ``s · γ/√(σ²+ε)``) where each channel has several values (one value per channel, as a bias, fits any ``k``)."""
    for perm, q in _layouts(entry["q"], w.shape):
        r = _ratios(q, w)
        found = None if r is None else _common_ratio(r)
        if found is None:
            continue
        s = np.transpose(np.broadcast_to(entry["s"], entry["q"].shape), perm).reshape(w.shape)
        varying = [i for i in range(s.ndim) if s.shape[i] > 1 and np.ptp(s, axis=i).any()]
        if len(varying) <= 1 and _exact(q, s, w):
            axis = varying[0] if varying else None
            return q, s[tuple(slice(None) if i == axis else slice(0, 1) for i in range(s.ndim))], axis, False
        axis, k = found
        if axis is not None and w.size == w.shape[axis]:
            continue  # one value per channel (a bias): any vector fits, so only the learned scale counts
        sign = np.sign(np.where(np.isnan(k), 1.0, k))
        k = _scale_along(np.abs(k), axis, w.shape)
        q = q * _scale_along(sign, axis, w.shape).astype(np.int64)
        if _exact(q, k, w):
            return q, k, axis, True
    return None


# ---------------------------------------------------------------------------------------------- the flatbuffer


def _constants(model_t, schema):
    """``{tensor index: float32 array}`` of the subgraph's constant float32 tensors (with their data)."""
    graph = model_t.subgraphs[0]
    found = {}
    for i, t in enumerate(graph.tensors):
        data = model_t.buffers[t.buffer].data if t.buffer else None
        if t.type == schema.TensorType.FLOAT32 and data is not None and len(data):
            found[i] = np.frombuffer(bytes(data), "<f4").reshape([int(d) for d in t.shape])
    return found


def _opcode(model_t, schema, code: int, version: int) -> int:
    """The index of ``code``'s operator code (its version raised to ``version``), added where missing."""
    for i, op in enumerate(model_t.operatorCodes):
        if max(op.builtinCode, op.deprecatedBuiltinCode) == code:
            op.version = max(op.version, version)
            return i
    op = schema.OperatorCodeT()
    op.builtinCode, op.deprecatedBuiltinCode, op.version = code, min(code, 127), version
    model_t.operatorCodes.append(op)
    return len(model_t.operatorCodes) - 1


def _integer_tensor(model_t, schema, name: str, q, k, axis, dtype) -> int:
    """Append the tensor ``name``: ``q`` (int8/int16) with scale ``k`` (zero point 0); return its index."""
    buffer = schema.BufferT()
    buffer.data = np.ascontiguousarray(q, dtype="<i1" if dtype == "int8" else "<i2").tobytes()
    model_t.buffers.append(buffer)
    quant = schema.QuantizationParametersT()
    quant.scale = [float(v) for v in np.ravel(k)]
    quant.zeroPoint = [0] * len(quant.scale)
    quant.quantizedDimension = 0 if axis is None else int(axis)
    tensor = schema.TensorT()
    tensor.shape = list(q.shape)
    tensor.type = schema.TensorType.INT8 if dtype == "int8" else schema.TensorType.INT16
    tensor.buffer = len(model_t.buffers) - 1
    tensor.name = name.encode()
    tensor.quantization = quant
    graph = model_t.subgraphs[0]
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _dequantize_version(dtype: str, axis) -> int:
    """DEQUANTIZE's version in TFLite's op_version.cc: int8 per tensor 2, per channel 5; int16 4."""
    return 4 if dtype == "int16" else (2 if axis is None else 5)


def _release(model_t, buffer_index: int):
    """Empty a buffer no tensor refers to any more."""
    if buffer_index and not any(t.buffer == buffer_index for g in model_t.subgraphs for t in g.tensors):
        model_t.buffers[buffer_index].data = None


#: Operators whose input 2 is the bias of the weights in their input 1.
_BIASED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_3D", "TRANSPOSE_CONV")


def _bias_of(model_t, schema, kernel) -> Optional[int]:
    """The bias input (-1: left out) of the operator that reads the tensor ``kernel``; ``None`` where none does."""
    for op in model_t.subgraphs[0].operators:
        if len(op.inputs) > 2 and op.inputs[1] == kernel \
                and _builtin_name(schema, model_t.operatorCodes[op.opcodeIndex]) in _BIASED:
            return int(op.inputs[2])
    return None


def _locate(entry, constants: dict, candidates):
    """``(tensor index, _match result)`` of the first candidate constant that is ``entry``'s integers times a scale."""
    for index in candidates:
        found = _match(entry, constants[index])
        if found is not None:
            return index, found
    return None


def _candidates(model_t, schema, entry, constants: dict, kernels: dict, replaced: dict):
    """Where to look for ``entry``: a bias in the operator that reads its layer's kernel, else every constant of its
    size (not yet replaced first; an EinsumDense's bias is an ``ADD`` of its own); ``-1`` where that operator has no
    bias and the bias is zero (the converter left it out)."""
    if entry["param"] == "bias" and id(entry["layer"]) in kernels:
        index = _bias_of(model_t, schema, kernels[id(entry["layer"])])
        if index is not None and index >= 0:
            return [index]
        if index is not None and not entry["q"].any():
            return -1
    if not entry["q"].any():  # zeros are any zeros: only an operator's own bias tells which
        return []
    return sorted((i for i, w in constants.items() if w.size == entry["q"].size), key=lambda i: i in replaced)


def _dequantize(model_t, schema, entry, index: int, q, k, axis, storage):
    """Give the float constant ``index`` the value ``DEQUANTIZE(q, k)`` instead of its data; return the operator."""
    graph = model_t.subgraphs[0]
    source = _integer_tensor(model_t, schema, entry["name"], q, k, axis, storage)
    buffer_index = graph.tensors[index].buffer
    graph.tensors[index].buffer = 0
    _release(model_t, buffer_index)
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(model_t, schema, schema.BuiltinOperator.DEQUANTIZE, _dequantize_version(storage, axis))
    op.inputs, op.outputs = [source], [index]
    return op


def _embed(model_t, schema, plan, int16: bool) -> dict:
    """Store each entry's integers where its converted constant is (module docstring); ``{float tensor: int
    tensor}``. Entries get ``storage``, ``axis``, ``folded``, ``tflite_shape`` and ``reason``."""
    graph = model_t.subgraphs[0]
    constants = _constants(model_t, schema)
    replaced, kernels, ops = {}, {}, []
    for entry in plan:
        if entry["reason"]:
            continue
        candidates = _candidates(model_t, schema, entry, constants, kernels, replaced)
        if candidates == -1:
            entry.update(storage="omitted", reason="all zero: the converter left the bias out")
            continue
        hit = _locate(entry, constants, candidates)
        if hit is None:
            entry["reason"] = ("a BatchNormalization (or another shift) is folded into this bias: the converter's "
                               "float32 values" if entry["param"] == "bias" and len(candidates) == 1 else
                               "no converted constant is these integers times one scale per tensor or channel (the "
                               "converter folded more into it, e.g. a per-channel factor into a row-wise scale)")
            continue
        index, (q, k, axis, folded) = hit
        entry["tflite_name"] = graph.tensors[index].name.decode()
        if entry["param"] != "bias":
            kernels[id(entry["layer"])] = index
        entry.update(tflite_shape=tuple(q.shape), folded=folded)
        storage, reason = _fits(int(q.min()), int(q.max()), axis is None, int16)
        if storage == "float32":  # name the learned range (a negative BatchNorm factor flips a channel's sign)
            reason = _fits(*entry["range"], axis is None, int16)[1] or reason
        if storage != "float32" and index in replaced:  # a constant the converter shares (equal values)
            storage, axis = replaced[index][1:]
        elif storage != "float32":
            ops.append(_dequantize(model_t, schema, entry, index, q, k, axis, storage))
            replaced[index] = (len(graph.tensors) - 1, storage, axis)
        entry.update(storage=storage, axis=axis if storage != "float32" else None, reason=reason)
    graph.operators = ops + list(graph.operators)
    return {index: source for index, (source, _, _) in replaced.items()}


#: Hybrid kernels of TFLite's dynamic-range files: builtin name -> (output-channel axis of the weights, their
#: input-channel axis or ``None``, op version).
_HYBRID = {"CONV_2D": (0, 3, 5), "DEPTHWISE_CONV_2D": (3, None, 6), "FULLY_CONNECTED": (0, 1, 12)}


def _dynamic_range(w: np.ndarray, axis: int):
    """TFLite's dynamic-range rule for a weight lqs has no integers for: per channel of ``axis``
    ``s = max|w| / 127``, ``q = round(w / s)`` (half away from zero); ``(q, s)``."""
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).astype(np.float64)
    s = np.max(np.abs(moved), axis=1) / 127.0
    s = np.where(s > 0, s, 1.0).astype(np.float32)
    shape = [-1 if i == axis else 1 for i in range(w.ndim)]
    x = w / s.reshape(shape)
    return np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), -127, 127).astype(np.int64), s.reshape(shape)


def _scale_input(model_t, schema, op, scale: np.ndarray):
    """A ``MUL`` giving ``op`` its input times ``scale`` (one value per input channel): ``x @ (q · s) = (x · s) @ q``
    for weights whose scale varies along their input channels (row-wise Dense, channel-wise Conv2D)."""
    graph = model_t.subgraphs[0]
    buffer = schema.BufferT()
    buffer.data = np.ascontiguousarray(scale, dtype="<f4").tobytes()
    model_t.buffers.append(buffer)
    constant = schema.TensorT()
    constant.shape, constant.type = [int(scale.size)], schema.TensorType.FLOAT32
    constant.buffer = len(model_t.buffers) - 1
    constant.name = graph.tensors[op.inputs[1]].name + b"/input_scale"
    source = graph.tensors[op.inputs[0]]
    scaled = schema.TensorT()
    scaled.shape, scaled.type, scaled.buffer = list(source.shape), schema.TensorType.FLOAT32, 0
    scaled.shapeSignature, scaled.hasRank = source.shapeSignature, source.hasRank
    scaled.name = source.name + b"/scaled"
    graph.tensors += [constant, scaled]
    mul = schema.OperatorT()
    mul.opcodeIndex = _opcode(model_t, schema, schema.BuiltinOperator.MUL, 1)
    mul.inputs, mul.outputs = [op.inputs[0], len(graph.tensors) - 2], [len(graph.tensors) - 1]
    mul.builtinOptionsType, mul.builtinOptions = schema.BuiltinOptions.MulOptions, schema.MulOptionsT()
    op.inputs[0] = len(graph.tensors) - 1
    return mul


#: Operators through which a positive per-channel factor commutes: ``pool(x) · s = pool(x · s)``.
_COMMUTING = ("MAX_POOL_2D", "AVERAGE_POOL_2D")


def _activation(op) -> int:
    return getattr(op.builtinOptions, "fusedActivationFunction", 0) if op.builtinOptions is not None else 0


def _split_constant(op, constants: dict, channels: int):
    """``(the non-constant input, the constant one)`` of a binary ``op`` whose constant has one value per channel."""
    a, b = op.inputs
    if a in constants and b not in constants:
        a, b = b, a
    if b not in constants or constants[b].size != channels or constants[b].shape[-1:] != (channels,):
        return None
    return a, b


def _fold_scale(model_t, schema, tensor: int, scale: np.ndarray, readers: Counter, producers: dict,
                constants: dict) -> bool:
    """Multiply ``tensor`` by ``scale`` (> 0, one per channel) inside the inference BatchNorm that computes it,
    ``(x · a + b) · s = x · (a · s) + b · s`` (a ``MUL`` with a constant, then an ``ADD`` with one where the shift
    is not zero; ReLU or pooling after it): no ``MUL`` of its own. ``False`` (nothing changed) where ``tensor``
    is computed otherwise."""
    name = lambda op: _builtin_name(schema, model_t.operatorCodes[op.opcodeIndex])  # noqa: E731
    op = producers.get(tensor)
    while op is not None and readers[tensor] == 1 and name(op) in _COMMUTING and _activation(op) in (0, 1):
        tensor = op.inputs[0]
        op = producers.get(tensor)
    targets = []  # the constants to multiply by the scale: b (where the ADD is there), a
    if op is not None and readers[tensor] == 1 and name(op) == "ADD" and _activation(op) in (0, 1):
        split = _split_constant(op, constants, scale.size)
        if split is None:
            return False
        tensor, b = split
        targets.append(b)
        op = producers.get(tensor)
    if op is None or readers[tensor] != 1 or name(op) != "MUL" or _activation(op) not in (0, 1 if not targets else 0):
        return False
    split = _split_constant(op, constants, scale.size)
    if split is None:
        return False
    targets.append(split[1])
    if any(readers[index] != 1 for index in targets):
        return False
    for index in targets:
        constants[index] = (constants[index] * scale.reshape(constants[index].shape)).astype(np.float32)
        model_t.buffers[model_t.subgraphs[0].tensors[index].buffer].data = constants[index].astype("<f4").tobytes()
    return True


def _hybrid_weight(model_t, schema, op, name: str, replaced: dict, readers: Counter, constants: dict,
                   producers: dict):
    """``(int8 weight tensor for op's hybrid kernel, MUL to insert before it or None)``, or ``None`` (stays float):
    lqs' integers where their scale is per tensor or per output channel; per input channel with the scale moved
    to the input (:func:`_fold_scale` into a BatchNorm before it, else a ``MUL``: :func:`_scale_input`); TFLite's
    own rule (:func:`_dynamic_range`) for weights lqs has no int8 integers for."""
    graph = model_t.subgraphs[0]
    weight = op.inputs[1]
    axis, input_axis, _ = _HYBRID[name]
    if int(np.prod(graph.tensors[weight].shape)) < _HYBRID_MIN_ELEMENTS or readers[weight] != 1:
        return None
    if weight in replaced:
        source = graph.tensors[replaced[weight]]
        quant = source.quantization
        if source.type != schema.TensorType.INT8:
            return None
        if len(quant.scale) == 1 or quant.quantizedDimension == axis:
            return replaced[weight], None
        if quant.quantizedDimension != input_axis:
            return None
        scale = np.asarray(quant.scale, np.float32)
        folded = _fold_scale(model_t, schema, op.inputs[0], scale, readers, producers, constants)
        mul = None if folded else _scale_input(model_t, schema, op, scale)
        quant.scale, quant.zeroPoint, quant.quantizedDimension = [1.0], [0], 0
        return replaced[weight], mul
    if weight not in constants:
        return None
    q, s = _dynamic_range(constants[weight], axis)
    return _integer_tensor(model_t, schema, graph.tensors[weight].name.decode(), q, s, axis, "int8"), None


def _hybrid(model_t, schema, replaced: dict) -> list:
    """``mode="dynamic"``: the op graph of TFLite's dynamic-range file: weights of at least 1024 values feed
    ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` / ``FULLY_CONNECTED`` as int8 (:func:`_hybrid_weight`); returns the names
    of the weights quantized by TFLite's rule."""
    graph = model_t.subgraphs[0]
    constants = _constants(model_t, schema)
    readers = Counter(i for op in graph.operators for i in op.inputs)
    producers = {i: op for op in graph.operators for i in op.outputs}
    operators, requantized = [], []
    for op in graph.operators:
        name = _builtin_name(schema, model_t.operatorCodes[op.opcodeIndex])
        found = _hybrid_weight(model_t, schema, op, name, replaced, readers, constants, producers) \
            if name in _HYBRID and len(op.inputs) > 1 and op.inputs[1] >= 0 else None
        if found is not None:
            source, mul = found
            if op.inputs[1] not in replaced:
                requantized.append(graph.tensors[op.inputs[1]].name.decode())
            operators += [mul] if mul is not None else []
            op.inputs[1] = source
            code = model_t.operatorCodes[op.opcodeIndex]
            code.version = max(code.version, _HYBRID[name][2])
            if name == "FULLY_CONNECTED":
                op.builtinOptions.asymmetricQuantizeInputs = True
        operators.append(op)
    used = {i for op in operators for i in op.inputs} | set(graph.outputs)
    graph.operators = [op for op in operators  # our DEQUANTIZEs whose outputs nothing reads any more
                       if not (len(op.outputs) == 1 and op.outputs[0] in replaced and op.outputs[0] not in used)]
    _drop_unused_tensors(model_t)
    return requantized


def _builtin_name(schema, code) -> str:
    """``"CONV_2D"`` etc. of an operator code."""
    value = max(code.builtinCode, code.deprecatedBuiltinCode)
    return next(k for k, v in vars(schema.BuiltinOperator).items() if v == value and not k.startswith("_"))


def _drop_unused_tensors(model_t):
    """Remove tensors of subgraph 0 that no operator, graph input/output or signature refers to (renumbered)."""
    graph = model_t.subgraphs[0]
    signatures = [m for s in (model_t.signatureDefs or []) if s.subgraphIndex == 0 for m in (*s.inputs, *s.outputs)]
    used = {i for op in graph.operators for i in (*op.inputs, *op.outputs, *(op.intermediates or [])) if i >= 0}
    used |= set(graph.inputs) | set(graph.outputs) | {m.tensorIndex for m in signatures}
    keep = sorted(used)
    new = {old: i for i, old in enumerate(keep)}
    dropped = [graph.tensors[i].buffer for i in range(len(graph.tensors)) if i not in new]
    graph.tensors = [graph.tensors[i] for i in keep]
    for op in graph.operators:
        op.inputs = [new[i] if i >= 0 else i for i in op.inputs]
        op.outputs = [new[i] for i in op.outputs]
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = [new[i] for i in op.intermediates]
    graph.inputs, graph.outputs = [new[i] for i in graph.inputs], [new[i] for i in graph.outputs]
    for m in signatures:
        m.tensorIndex = new[m.tensorIndex]
    for buffer_index in dropped:
        _release(model_t, buffer_index)


# ------------------------------------------------------------------------------------------------------ API


def _warn_float(plan, mode: str):
    """``UserWarning`` naming the weights (not biases) whose integers are not in the file, their ranges and why."""
    left = [t for t in plan if t["storage"] == "float32" and t["param"] != "bias"]
    if not left:
        return
    what = ("stored as float32 (their exact values P_r, 4 bytes per weight)" if mode == "float" else
            "left to TFLite's dynamic-range rule (its own int8 integers for weights of at least "
            f"{_HYBRID_MIN_ELEMENTS} values in hybrid kernels, float32 otherwise)")
    warnings.warn(f"export_litert: the learned integers of {len(left)} weight tensor(s) are not in the file, {what}: "
                  + "; ".join(f"{t['name']!r} (integers {t['range'][0]}..{t['range'][1]}: {t['reason']})"
                              for t in left), UserWarning, stacklevel=3)


def export_litert(model, path, *, mode: str = "dynamic", int16: bool = False, float_path: Optional[str] = None,
                  converter_options: Optional[dict] = None) -> dict:
    """Write ``model`` as a LiteRT (``.tflite``) file with its learned integers as int8 weights (module docstring).

    Args:
        model: a built Keras model (one input, one output) on the TensorFlow backend, with lqs' quantized layers.
        path: the ``.tflite`` file to write (atomically).
        mode: ``"dynamic"`` (the default: TFLite's dynamic-range hybrid kernels, the op graph of TFLite's own
            dynamic-range conversion, activations quantized at run time, so predictions differ from the Keras
            model's by about 1e-2 as TFLite's own do) or ``"float"`` (weights dequantized once at load, float32
            kernels: predictions equal the Keras model's to float32 rounding; as small, slower on small networks).
        int16: store integers beyond int8 with one scale per tensor as int16 (read through DEQUANTIZE at every
            inference, outside XNNPACK: slower); else they stay float32.
        float_path: also write the float conversion (every weight float32, the same graph) there.
        converter_options: TFLite converter settings, by attribute path, e.g. ``{"target_spec.supported_ops":
            [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]}`` (an LSTM's TensorFlow ops) or
            ``{"_experimental_lower_tensor_list_ops": False}``; not those that quantize (``optimizations``, ...).

    Returns ``{"path", "mode", "file_bytes", "float_file_bytes", "tensors": [{"name", "shape", "storage",
    "tflite_shape", "quantized_dimension", "folded", "integers", "reason"}, ...]}``: per quantized parameter its
    storage (``int8``, ``int16``, ``float32``), its shape and channel axis in the file, whether a per-channel factor
    (BatchNorm) is folded into the stored scale, its integer range, and why it is not int8. Warns (``UserWarning``)
    where weights stay float32. Raises ``ValueError`` on another Keras backend, for a model without quantized
    parameters, bad arguments or converter options.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"export_litert traces the model with TensorFlow; the Keras backend is "
                         f"{keras.backend.backend()!r}. Save the model (.keras) and export it under "
                         "KERAS_BACKEND=tensorflow.")
    if not isinstance(int16, bool):
        raise ValueError(f"export_litert: int16 must be True or False, got {int16!r}.")
    if mode not in _MODES:
        raise ValueError(f"export_litert: mode must be one of {_MODES}, got {mode!r}.")
    if converter_options is not None and not isinstance(converter_options, dict):
        raise ValueError(f"export_litert: converter_options must be a dict, got {type(converter_options).__name__}.")
    if not quantized_params(model):
        raise ValueError(f"export_litert: model {model.name!r} has no quantized parameters; convert it first with "
                         "lqs_core.quantize_model.")
    plan = _plan(model)
    flat = _convert(model, plan, dict(converter_options or {}))
    schema, fb = _schema()
    model_t = fb.read_model_from_bytearray(bytearray(flat))
    replaced = _embed(model_t, schema, plan, int16)
    requantized = _hybrid(model_t, schema, replaced) if mode == "dynamic" else []
    for entry in plan:
        entry["requantized"] = entry.get("tflite_name") in requantized
    data = bytes(fb.convert_object_to_bytearray(model_t))
    _warn_float(plan, mode)
    write_bytes(path, data, fsync=True)
    if float_path is not None:
        write_bytes(float_path, flat, fsync=True)
    return {
        "path": os.fspath(path),
        "mode": mode,
        "file_bytes": len(data),
        "float_file_bytes": len(flat),
        "tensors": [{"name": t["name"], "shape": tuple(t["q"].shape), "storage": t["storage"],
                     "tflite_shape": t["tflite_shape"], "quantized_dimension": t["axis"], "folded": t["folded"],
                     "integers": t["range"], "requantized": t["requantized"], "reason": t["reason"]} for t in plan],
        "requantized": requantized,
    }


def predict_litert(path, x, num_threads: Optional[int] = None) -> np.ndarray:
    """Run a ``.tflite`` file on the batch ``x`` (LiteRT's interpreter, else TensorFlow's) and return its output."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - depends on the installation
        Interpreter = _tensorflow().lite.Interpreter
    x = np.asarray(x)
    interpreter = Interpreter(model_path=os.fspath(path), num_threads=num_threads)
    (inp,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interpreter.invoke()
    (out,) = interpreter.get_output_details()
    return np.array(interpreter.get_tensor(out["index"]))


__all__ = ["export_litert", "predict_litert"]
