"""Layer-importance bit selection (``papers/layer-importance-mixed-precision.txt``, Algorithm 2), on fixed-bit QAT.

**Imprinting-based layer accuracy** (§2.3, eqs. 2.15-2.17). For each quantized layer ``i`` (in network order) the
output feature maps ``F_i`` of a set of labelled samples are turned into embeddings ``E_i`` — Dense outputs as they
are, Conv2D outputs ``(H, W, C)`` adaptively average-pooled to ``d x d`` with ``d = round(sqrt(N / C))``
(``N = embedding_length``, eq. 2.17) and flattened. The classifier weights are imprinted as the class means of the
embeddings, ``W[:, c] = (1/N_c) Σ_{j: y_j = c} E_j`` (eq. 2.15), and the layer's accuracy is that of
``y_hat_j = argmax_c W[:, c]^T E_j`` (eq. 2.16). As in imprinting (Qi et al. 2018, the thesis' ref. [52]) the
embeddings and the imprinted columns are L2-normalized (cosine similarity). ``acc_0`` is the same estimate on the
network input.

**Algorithm 2.** Start from the per-layer bits ``B_start`` of a fixed-bit model, minimum ``B_end`` (``min_bits``
for every layer), ``N_max = Σ B_start - Σ B_end + 1``. For ``N = 1 .. N_max``: estimate ``acc_1 .. acc_K`` with
the current bits (the quantized forward pass), importance of layer ``i`` = ``|acc_i - acc_{i-1}|``, record the
configuration ``B_N`` with ``Acc_N = acc_K`` (the last layer's estimate), and lower the bit width of the least
important layer by 1. The paper considers layers ``i in [2, K-1]`` (never the first and the last); with fewer
than three quantized layers (the MLPs here) every layer is considered, with ``acc_0`` from the input. Layers
already at ``min_bits`` are skipped (Algorithm 1, step 8); the loop stops when none can be lowered. The chosen
configuration is the recorded one with the highest ``Acc_N`` — among those whose mean bits (plain mean over the
layers, the paper's "AVG bits") are ``<= target_mean_bits`` if given (Algorithm 1's target range) — ties going to
the fewer bits (the later iteration). No fine-tuning happens between iterations (as in Algorithm 2);
:func:`lqs_core.training.train` can fine-tune the chosen configuration afterwards.

A layer's bit width covers its kernel and its bias. The bits live in the quantizers' variables and configs
(:func:`set_layer_bits`), which the host layers save, so the chosen configuration is saved with the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import keras
import numpy as np
import pandas as pd

from lqs_core.layers import quantized_params
from lqs_core.quantizers.fixed import FixedBitQuantizer
from lqs_core.spec import check_bits


# ---------------------------------------------------------------------------------------------------------------
# Imprinting


def _adaptive_avg_pool(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    n = x.shape[axis]
    parts = []
    for i in range(size):
        start, end = (i * n) // size, -(-((i + 1) * n) // size)
        parts.append(np.take(x, np.arange(start, end), axis=axis).mean(axis=axis, keepdims=True))
    return np.concatenate(parts, axis=axis)


def embed(features, embedding_length: int = 1024) -> np.ndarray:
    """Embeddings ``E`` of a batch of feature maps (eq. 2.17): 2-D ``(n, units)`` as is; ``(n, H, W, C)``
    average-pooled to ``(n, d, d, C)`` with ``d = max(1, round(sqrt(N / C)))`` (adaptive bins), flattened; other
    ranks are flattened."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim == 4:
        d = max(1, int(round(math.sqrt(embedding_length / f.shape[-1]))))
        f = _adaptive_avg_pool(_adaptive_avg_pool(f, min(d, f.shape[1]), 1), min(d, f.shape[2]), 2)
    return f.reshape(f.shape[0], -1)


def _normalize(a: np.ndarray, axis: int) -> np.ndarray:
    norm = np.linalg.norm(a, axis=axis, keepdims=True)
    return a / np.where(norm > 0, norm, 1.0)


def imprint_accuracy(embeddings, labels, eval_embeddings=None, eval_labels=None, num_classes: Optional[int] = None):
    """Accuracy of the imprinted classifier (eqs. 2.15-2.16, cosine): imprint on ``(embeddings, labels)``, measure
    on ``(eval_embeddings, eval_labels)`` (default: the same samples)."""
    e = _normalize(np.asarray(embeddings, dtype=np.float64).reshape(len(labels), -1), 1)
    y = np.asarray(labels).astype(np.int64).ravel()
    k = int(num_classes if num_classes is not None else y.max() + 1)
    w = np.zeros((e.shape[1], k))
    for c in range(k):
        members = e[y == c]
        if len(members):
            w[:, c] = members.mean(axis=0)
    w = _normalize(w, 0)
    if eval_embeddings is None:
        e_eval, y_eval = e, y
    else:
        y_eval = np.asarray(eval_labels).astype(np.int64).ravel()
        e_eval = _normalize(np.asarray(eval_embeddings, dtype=np.float64).reshape(len(y_eval), -1), 1)
    return float(np.mean(np.argmax(e_eval @ w, axis=1) == y_eval))


def _hosts(model):
    hosts = []
    for _, layer, *_ in quantized_params(model):
        if layer not in hosts:
            hosts.append(layer)
    if not hosts:
        raise ValueError(f"Model {model.name!r} has no quantized layers.")
    return hosts


def _extractor(model, hosts):
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, [h.output for h in hosts], name=f"{model.name}_imprint")


def layer_accuracies(model, x, y, embedding_length: int = 1024, batch_size: int = 256, num_classes=None,
                     _extract=None) -> Dict[str, float]:
    """``{"input": acc_0, <layer>: acc_i, ...}``: the imprinting accuracy of the input and of every quantized
    layer's output (in network order) on ``(x, y)``, with the model's current (quantized) weights."""
    hosts = _hosts(model)
    extract = _extract or _extractor(model, hosts)
    x = np.asarray(x)
    batches = [extract(x[i:i + batch_size], training=False) for i in range(0, len(x), batch_size)]
    if len(hosts) == 1:
        batches = [[b] for b in batches]
    outputs = [np.concatenate([keras.ops.convert_to_numpy(b[j]) for b in batches]) for j in range(len(hosts))]
    accs = {"input": imprint_accuracy(embed(x, embedding_length), y, num_classes=num_classes)}
    for host, out in zip(hosts, outputs):
        accs[host.name] = imprint_accuracy(embed(out, embedding_length), y, num_classes=num_classes)
    return accs


# ---------------------------------------------------------------------------------------------------------------
# Bits of a fixed-bit model


def set_layer_bits(layer, bits: int):
    """Set every fixed-bit quantizer of host ``layer`` (kernel and bias) to ``bits`` (their configs, which the host
    saves, follow)."""
    bits = check_bits(bits)
    quantizers = [q for _, _, q in layer.quantized_params()]
    if not quantizers or not all(isinstance(q, FixedBitQuantizer) for q in quantizers):
        raise ValueError(f"{layer.name!r}: layer bits can only be set on fixed-bit quantizers (quantizer='fixed').")
    for q in quantizers:
        q.set_bits(bits)


def layer_bits(model) -> Dict[str, int]:
    """``{layer name: bits}`` of the fixed-bit host layers of ``model`` (the kernel quantizer's bits)."""
    return {h.name: int(h.quantized_params()[0][2].bits) for h in _hosts(model)}


# ---------------------------------------------------------------------------------------------------------------
# Algorithm 2


@dataclass
class BitSelection:
    """Result of :func:`select_bits`: the chosen ``bits`` per layer, its ``accuracy`` (``Acc_N``) and
    ``mean_bits``, and ``history`` — one row per iteration: ``iteration``, ``bits`` (dict), ``mean_bits``,
    ``accuracy`` (``Acc_N``), ``acc/<layer>`` (including ``acc/input``), ``lowered`` (the layer lowered next)."""

    bits: Dict[str, int]
    accuracy: float
    mean_bits: float
    history: pd.DataFrame = field(repr=False)


def select_bits(model, x, y, min_bits: int = 2, target_mean_bits: Optional[float] = None,
                exclude_first_last: bool = True, apply: bool = True, embedding_length: int = 1024,
                batch_size: int = 256, num_classes: Optional[int] = None) -> BitSelection:
    """Algorithm 2 on a fixed-bit model (module docstring); starts from the model's current per-layer bits.

    ``(x, y)``: the labelled samples for imprinting. ``apply``: leave the model at the chosen bits (else it is
    restored to its starting bits). Raises ``ValueError`` for bits/targets out of range or a model without
    fixed-bit layers.
    """
    hosts = _hosts(model)
    start = layer_bits(model)
    names = [h.name for h in hosts]
    min_bits = check_bits(min_bits, "min_bits")
    if any(b < min_bits for b in start.values()):
        raise ValueError(f"min_bits={min_bits} is above the starting bits {start}.")
    if target_mean_bits is not None:
        target_mean_bits = float(target_mean_bits)
        if not math.isfinite(target_mean_bits) or target_mean_bits < min_bits:
            raise ValueError(f"target_mean_bits must be a number >= min_bits={min_bits}, got {target_mean_bits!r}.")
    k = len(hosts)
    eligible = set(range(1, k - 1)) if exclude_first_last and k >= 3 else set(range(k))
    n_max = sum(start.values()) - min_bits * k + 1
    extract = _extractor(model, hosts)
    current = dict(start)
    rows: List[dict] = []
    for n in range(1, n_max + 1):
        for h in hosts:
            set_layer_bits(h, current[h.name])
        accs = layer_accuracies(model, x, y, embedding_length, batch_size, num_classes, _extract=extract)
        acc = [accs["input"]] + [accs[name] for name in names]
        importance = {i: abs(acc[i + 1] - acc[i]) for i in range(k)}
        candidates = [i for i in sorted(eligible) if current[names[i]] > min_bits]
        lowered = min(candidates, key=lambda i: importance[i]) if candidates else None
        rows.append({
            "iteration": n,
            "bits": dict(current),
            "mean_bits": float(np.mean(list(current.values()))),
            "accuracy": acc[-1],
            **{f"acc/{name}": value for name, value in accs.items()},
            "lowered": names[lowered] if lowered is not None else None,
        })
        if lowered is None:
            break
        current[names[lowered]] -= 1
    history = pd.DataFrame(rows)
    pool = [r for r in rows if target_mean_bits is None or r["mean_bits"] <= target_mean_bits + 1e-9]
    if not pool:
        raise ValueError(f"No configuration with mean bits <= {target_mean_bits} was reached (min_bits={min_bits}).")
    best = max(pool, key=lambda r: (r["accuracy"], r["iteration"]))
    final = best["bits"] if apply else start
    for h in hosts:
        set_layer_bits(h, final[h.name])
    return BitSelection(bits=dict(best["bits"]), accuracy=float(best["accuracy"]), mean_bits=best["mean_bits"],
                        history=history)


__all__ = [
    "BitSelection",
    "embed",
    "imprint_accuracy",
    "layer_accuracies",
    "layer_bits",
    "select_bits",
    "set_layer_bits",
]
