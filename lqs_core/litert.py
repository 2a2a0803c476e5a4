"""Export to LiteRT (TFLite) that keeps the learned integers: int8 weight storage plus a DEQUANTIZE per tensor.

TensorFlow's module (imported lazily; a clear error names the extra to install where it is missing). A plain TFLite
conversion of a quantized Keras model stores each ``P_r = P_q · s`` as float32 (and folds BatchNorm into it);
:func:`export_litert` stores the integers ``P_q`` themselves:

1. the model is traced with every quantized parameter as an extra float input (``tf.function``), so the converter
   can neither fold nor re-quantize it;
2. in the converted flatbuffer each such input becomes a constant integer tensor with its scale as TFLite
   quantization parameters (zero point 0) and a ``DEQUANTIZE`` op that computes ``P_q · s`` in float32 — the same
   single float32 product the Keras layer computes — before the operators that use it.

Per tensor (``report["tensors"]``):

* integers in ``-128..127`` -> ``int8``; else in ``-32768..32767`` with one scale -> ``int16`` (``int16=True``;
  TFLite's DEQUANTIZE reads int16 per tensor only); else ``float32`` (the ``P_r`` values themselves);
* a scale with one value -> per-tensor quantization; a scale that varies along one axis (``rowwise``,
  ``columnwise``, ``channelwise``, ``outputwise``, an explicit ``axis``) -> per-axis quantization with
  ``quantized_dimension`` = that axis (TFLite takes any axis, since DEQUANTIZE sees the Keras layout); a scale that
  varies along several axes (CGMQ's per-weight gates: one step per bit width) has no TFLite form -> ``float32``;
* where ``P_q · s`` in float32 is not what the layer computes (beyond the ulp that the straight-through form
  ``P + (P_r - P)`` of the fixed-bit and CGMQ quantizers adds) -> ``float32``.

Predictions of the exported file equal the Keras model's within float32 tolerance (the weights are bit-identical;
only the kernels' summation order differs). :func:`predict_litert` runs a file with the ``ai-edge-litert``
interpreter (``pip install 'lqs-core[export]'``), falling back to ``tf.lite.Interpreter``.
"""

from __future__ import annotations

import os
from typing import Optional

import keras
import numpy as np

from lqs_core.atomic import write_bytes
from lqs_core.layers import computing_with, quantized_params, substituted
from lqs_core.metrics import integer_tensors

#: How far ``P_q · s`` may be from the layer's own ``P_r`` (relative) to be stored as integers: the fixed-bit and
#: CGMQ quantizers compute ``P + (P_r - P)`` (the straight-through form), which differs from ``P_r`` by an ulp.
_RTOL = 2.0**-20

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


def _storage(q: np.ndarray, s: np.ndarray, p_r: np.ndarray, int16: bool):
    """``(dtype name or "float32", quantized_dimension or None, reason)`` for one tensor (module docstring)."""
    if s.ndim != q.ndim or any(d not in (1, n) for d, n in zip(s.shape, q.shape)):
        return "float32", None, f"scale of shape {s.shape} is no per-tensor or per-axis scale of {q.shape}"
    varying = [i for i, d in enumerate(s.shape) if d > 1]
    if len(varying) > 1:
        return "float32", None, f"scale varies along axes {varying}; TFLite has one quantized dimension"
    q_s = (q.astype(np.float32) * s).astype(np.float32)
    if not np.allclose(q_s, p_r, rtol=_RTOL, atol=_RTOL * float(np.max(s))):
        return "float32", None, "P_q · s is not the value the layer computes"
    lo, hi = (int(q.min()), int(q.max())) if q.size else (0, 0)
    axis = varying[0] if varying else None
    if -128 <= lo and hi <= 127:
        return "int8", axis, ""
    if int16 and -32768 <= lo and hi <= 32767:
        if axis is None:
            return "int16", None, f"integers {lo}..{hi} exceed int8"
        return "float32", None, (f"integers {lo}..{hi} exceed int8, and TFLite's DEQUANTIZE has no per-axis "
                                 "scales for int16")
    return "float32", None, f"integers {lo}..{hi} exceed int8" + (" and int16" if int16 else "")


def _plan(model, int16: bool):
    params = quantized_params(model)
    ints = integer_tensors(model)
    plan = []
    for (tensor, layer, param, variable, quantizer), name in zip(params, ints):
        q = ints[name]
        s = np.asarray(keras.ops.convert_to_numpy(quantizer.scale), dtype=np.float32)
        p_r = np.asarray(keras.ops.convert_to_numpy(quantizer(variable)), dtype=np.float32)
        dtype, axis, reason = _storage(q, s, p_r, int16)
        plan.append({"name": name, "layer": layer, "param": param, "q": q, "s": s, "p_r": p_r, "dtype": dtype,
                     "axis": axis, "reason": reason})
    return plan


def _convert(model, plan):
    """The float TFLite flatbuffer with the quantized parameters as inputs ``w0, w1, ...``."""
    tf = _tensorflow()
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"export_litert: models with one input and one output only; {model.name!r} has "
                         f"{len(model.inputs)} and {len(model.outputs)}.")
    x_shape = (None, *model.inputs[0].shape[1:])
    specs = [tf.TensorSpec(x_shape, model.inputs[0].dtype, name="x")]
    specs += [tf.TensorSpec(t["p_r"].shape, tf.float32, name=f"w{i}") for i, t in enumerate(plan)]

    # every other variable (BatchNorm statistics, float layers, the float P) as a constant: nothing for the
    # converter to keep as a resource variable
    constants = [(v, keras.ops.convert_to_numpy(v)) for v in model.weights]

    def serve(x, *weights):
        with substituted(constants), computing_with({(t["layer"], t["param"]): w for t, w in zip(plan, weights)}):
            return model(x, training=False)

    function = tf.function(serve, input_signature=specs, autograph=False)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], model)
    converter.experimental_enable_resource_variables = False
    return bytes(converter.convert())


def _opcode(model_t, schema, code: int) -> int:
    for i, op in enumerate(model_t.operatorCodes):
        if max(op.builtinCode, op.deprecatedBuiltinCode) == code:
            return i
    op = schema.OperatorCodeT()
    op.builtinCode, op.deprecatedBuiltinCode, op.version = code, min(code, 127), 1
    model_t.operatorCodes.append(op)
    return len(model_t.operatorCodes) - 1


def _embed(flatbuffer: bytes, plan, all_float: bool) -> bytes:
    """The flatbuffer with the weight inputs turned into constants (integers + DEQUANTIZE, or float32)."""
    schema, fb = _schema()
    model_t = fb.read_model_from_bytearray(bytearray(flatbuffer))
    graph = model_t.subgraphs[0]
    signature = model_t.signatureDefs[0] if model_t.signatureDefs else None
    names = {(m.name.decode() if isinstance(m.name, bytes) else m.name): m.tensorIndex
             for m in (signature.inputs if signature else [])}
    dequantize = None
    new_ops = []
    for i, t in enumerate(plan):
        index = names.get(f"w{i}")
        if index is None:
            raise RuntimeError(f"export_litert: the converted model has no input w{i} (inputs: {sorted(names)}).")
        target = graph.tensors[index]
        buffer = schema.BufferT()
        if all_float or t["dtype"] == "float32":
            buffer.data = np.ascontiguousarray(t["p_r"], dtype="<f4").tobytes()
            model_t.buffers.append(buffer)
            target.buffer = len(model_t.buffers) - 1
        else:
            dtype = np.dtype("<i1" if t["dtype"] == "int8" else "<i2")
            buffer.data = np.ascontiguousarray(t["q"], dtype=dtype).tobytes()
            model_t.buffers.append(buffer)
            quant = schema.QuantizationParametersT()
            quant.scale = [float(v) for v in t["s"].ravel()]
            quant.zeroPoint = [0] * len(quant.scale)
            quant.quantizedDimension = int(t["axis"]) if t["axis"] is not None else 0
            source = schema.TensorT()
            source.shape = list(target.shape)
            source.type = schema.TensorType.INT8 if t["dtype"] == "int8" else schema.TensorType.INT16
            source.buffer = len(model_t.buffers) - 1
            source.name = f"{t['name']}/integers".encode()
            source.quantization = quant
            graph.tensors.append(source)
            if dequantize is None:
                dequantize = _opcode(model_t, schema, schema.BuiltinOperator.DEQUANTIZE)
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = dequantize, [len(graph.tensors) - 1], [index]
            new_ops.append(op)
        target.name = t["name"].encode()
        graph.inputs = [k for k in graph.inputs if k != index]
        if signature:
            signature.inputs = [m for m in signature.inputs if m.tensorIndex != index]
    graph.operators = new_ops + list(graph.operators)
    return bytes(fb.convert_object_to_bytearray(model_t))


def export_litert(model, path, int16: bool = True, float_path: Optional[str] = None) -> dict:
    """Write ``model`` as a LiteRT (``.tflite``) file whose quantized weights are stored as integers.

    Args:
        model: a built Keras model (one input, one output) on the TensorFlow backend, with lqs' quantized layers.
        path: the ``.tflite`` file to write (atomically).
        int16: store integers beyond int8 that fit int16 as int16 (else float32).
        float_path: also write the same graph with every quantized weight as float32 ``P_r`` there.

    Returns ``{"path", "file_bytes", "float_file_bytes", "tensors": [{"name", "shape", "storage",
    "quantized_dimension", "reason"}, ...]}``; ``float_file_bytes`` is the size of the float32 export (written to
    ``float_path`` if given). Raises ``ValueError`` on another Keras backend or for a model without quantized
    parameters.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"export_litert traces the model with TensorFlow; the Keras backend is "
                         f"{keras.backend.backend()!r}. Save the model (.keras) and export it under "
                         "KERAS_BACKEND=tensorflow.")
    if not isinstance(int16, bool):
        raise ValueError(f"export_litert: int16 must be True or False, got {int16!r}.")
    if not quantized_params(model):
        raise ValueError(f"export_litert: model {model.name!r} has no quantized parameters; convert it first with "
                         "lqs_core.quantize_model.")
    plan = _plan(model, int16)
    flat = _convert(model, plan)
    data = _embed(flat, plan, all_float=False)
    float_data = _embed(flat, plan, all_float=True)
    write_bytes(path, data, fsync=True)
    if float_path is not None:
        write_bytes(float_path, float_data, fsync=True)
    return {
        "path": os.fspath(path),
        "file_bytes": len(data),
        "float_file_bytes": len(float_data),
        "tensors": [{"name": t["name"], "shape": tuple(t["q"].shape), "storage": t["dtype"],
                     "quantized_dimension": t["axis"], "reason": t["reason"]} for t in plan],
    }


def predict_litert(path, x) -> np.ndarray:
    """Run a ``.tflite`` file on the batch ``x`` (LiteRT's interpreter, else TensorFlow's) and return its output."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - depends on the installation
        Interpreter = _tensorflow().lite.Interpreter
    x = np.asarray(x)
    interpreter = Interpreter(model_path=os.fspath(path))
    (inp,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interpreter.invoke()
    (out,) = interpreter.get_output_details()
    return np.array(interpreter.get_tensor(out["index"]))


__all__ = ["export_litert", "predict_litert"]
