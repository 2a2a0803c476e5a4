"""HGQ2 as a comparator: the thesis' MLP with HGQ2's own layers, weights only, and its integers.

HGQ2 (PyPI ``hgq2``, Keras-3-native) learns a bit width per weight. Each weight ``w`` of a ``hgq.layers.QDense``
has a sign bit ``k``, ``b`` bits and ``i`` integer bits (its ``kbi`` quantizer); with ``f = b - i`` fractional bits::

    w_q = clip(round(w · 2^f), …) / 2^f          stored in k + b bits

The bit widths ``b`` are trained by the task loss plus HGQ2's bit-width regularizer ``MonoL1(beta)`` (``beta · Σ b``):
``beta`` is the knob that trades accuracy for bits, as λ does for the nested scheme. Input/output quantizers are
off (``enable_iq=False, enable_oq=False``): weights only, as every other method of the comparison; the rest is
HGQ2's defaults (``b0 = 8``, ``i0 = 2``, round to nearest, symmetric saturation, per-weight widths).

Integers for lqs' size metrics: per tensor on its finest grid ``q = w_q · 2^{max f}`` (exact: every ``w_q`` is a
multiple of ``2^{-f}``), with HGQ2's per-weight widths ``k + b`` as the packed storage (the map of widths itself is
not counted, in HGQ2's favour).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import keras
import numpy as np

from lqs_core.external.sizes import integer_report
from lqs_core.models import INIT_STDDEV

#: The networks this comparator builds (the thesis' MLPs: Flatten -> Dense(hidden) -> ReLU -> Dense(10) -> softmax).
HIDDEN = {"digits": 64, "mnist": 128}


def _require():
    try:
        import hgq  # noqa: F401
    except ImportError:
        raise ImportError("method 'hgq2' needs the hgq2 package: pip install 'lqs-core[compare]' (or pip install hgq2).") from None


def build(dataset: str, beta: float, seed: Optional[int] = None, input_shape=(28, 28), num_classes: int = 10):
    """The thesis' MLP of ``dataset`` with ``hgq.layers.QDense`` (weights-only, bit regularizer ``MonoL1(beta)``),
    initialized as lqs' networks (``RandomNormal(0, 0.05)`` kernels and biases, seeds ``seed + 1, seed + 2, …``,
    :mod:`lqs_core.models`), with lqs' layer names."""
    if dataset not in HIDDEN:
        raise ValueError(f"method 'hgq2': dataset {dataset!r} is not supported; allowed: {', '.join(HIDDEN)} (MLPs).")
    _require()
    from hgq.config import QuantizerConfig
    from hgq.layers import QDense
    from hgq.regularizers import MonoL1

    seeds = iter(range(1, 100))

    def init():
        return keras.initializers.RandomNormal(0.0, INIT_STDDEV, seed=None if seed is None else int(seed) + next(seeds))

    def dense(units, name):
        return QDense(units, kq_conf=QuantizerConfig("kbi", "weight", br=MonoL1(beta)),
                      bq_conf=QuantizerConfig("kbi", "bias", br=MonoL1(beta)), enable_iq=False, enable_oq=False,
                      kernel_initializer=init(), bias_initializer=init(), name=name)

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = dense(HIDDEN[dataset], "dense_1")(x)
    x = keras.layers.ReLU(name="relu_1")(x)
    x = dense(num_classes, "dense_2")(x)
    outputs = keras.layers.Activation("softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name=f"{dataset}_mlp_hgq2")


def hosts(model):
    """The HGQ2 layers of ``model`` that quantize weights (those with a ``kq`` quantizer)."""
    return [l for l in model._flatten_layers(include_self=False, recursive=True) if hasattr(l, "kq") and hasattr(l, "qkernel")]


def _np(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def _tensor(quantizer, values) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(q, bits, w_q)`` of one tensor: integers on the tensor's finest grid, per-weight widths ``k + b``."""
    inner = quantizer.quantizer
    w_q = _np(quantizer(values, training=False)).astype(np.float64)
    f = np.broadcast_to(_np(inner.f), w_q.shape).astype(np.float64)
    bits = np.broadcast_to(_np(quantizer.bits_(keras.ops.shape(values))), w_q.shape).astype(np.float64)
    f_max = float(f.max()) if f.size else 0.0
    q = np.round(w_q * 2.0 ** f_max)
    if not np.allclose(q, w_q * 2.0 ** f_max, atol=1e-6 * max(1.0, 2.0 ** f_max)):
        raise ValueError("HGQ2 weights are not on their fixed-point grid (hgq2 version?).")
    return q.astype(np.int64), np.maximum(bits, 0.0), w_q


def integer_tensors(model) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """``(ints, bits, floats)`` per quantized tensor (``<layer>/kernel``, ``<layer>/bias``) of an HGQ2 model."""
    ints, bits, floats = {}, {}, {}
    for layer in hosts(model):
        pairs = [("kernel", layer.kq, layer.kernel)]
        if getattr(layer, "bias", None) is not None and layer.bq is not None:
            pairs.append(("bias", layer.bq, layer.bias))
        for what, quantizer, variable in pairs:
            name = f"{layer.name}/{what}"
            ints[name], bits[name], _ = _tensor(quantizer, variable)
            floats[name] = _np(variable).astype(np.float32)
    if not ints:
        raise ValueError("The model has no HGQ2 weight quantizers.")
    return ints, bits, floats


def report(model) -> dict:
    """lqs' size numbers of an HGQ2 model (:func:`lqs_core.external.integer_report`, per-weight widths)."""
    ints, bits, floats = integer_tensors(model)
    return integer_report(ints, floats, bits=bits)


def epoch_stats(model) -> dict:
    """Per-epoch numbers as :func:`lqs_core.metrics.epoch_stats`: unique integers, range, and the mean bits."""
    ints, bits, _ = integer_tensors(model)
    allq = np.concatenate([q.ravel() for q in ints.values()])
    allb = np.concatenate([b.ravel() for b in bits.values()])
    lo, hi = int(allq.min()), int(allq.max())
    return {"unique_integers": int(np.unique(allq).size), "int_range": max(abs(lo), abs(hi)), "int_min": lo,
            "int_max": hi, "mean_weight_bits": float(allb.mean())}


__all__ = ["build", "epoch_stats", "hosts", "integer_tensors", "report"]
