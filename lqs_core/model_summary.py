"""``summary(model)``: every layer of a model, quantized or not, and what the whole model takes to store.

The analogue of ``larq.models.summary`` for learned quantization. One row per layer (nested models walked,
``outer/inner`` paths), with, for a quantized layer, its quantizer, the distinct integers of its tensors and their
widest fixed width, and for every layer (``n`` = its number of weights)::

    float32_bytes = 4 · n                                   # the float32 model
    packed_bytes  = Σ_tensors packed_size_bytes(P_q, s)     # quantized: fixed-width integers + scales
                  = raw bytes of its weights                #   float layers (BatchNorm, excluded ones)
    entropy_bytes = Σ_tensors (coded integers + 4 · #s)     # quantized: lqs_core.entropy.encode, + the scales
                  = raw bytes of its weights                #   float layers

Totals: the same sums over the layers, except ``entropy_bytes``, which is the size of the whole model's integer
file (:func:`lqs_core.export.save_integers` with the float weights included: header and code tables too), and
``compression = float32_bytes / entropy_bytes``. Printed (``print(summary(model))``) it is a plain-text table that
is never cut short; in Jupyter it renders as HTML; ``.layers`` is the table as a DataFrame, ``.totals`` a dict.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lqs_core import entropy, metrics
from lqs_core.convert import float_layers, leaf_layers
from lqs_core.export import encode_integers
from lqs_core.layers import QuantizedLayer, QuantizedWrapper, quantized_params
from lqs_core.quantizers import registry

COLUMNS = ["layer", "type", "quantizer", "params", "unique", "bits", "float32_bytes", "packed_bytes",
           "entropy_bytes", "note"]


def _describe(layer: QuantizedLayer) -> str:
    """``"nested outputwise λ=1e-09"``, ``"lsq scalar 4 bits"``: the kernel quantizer in a few words."""
    q = layer.kernel_quantizer
    try:
        spec = registry.serialize_spec(q)
    except ValueError:
        return type(q).__name__
    words = [spec["method"], f"axis={spec['axis']}" if spec.get("axis") is not None else spec["granularity"]]
    if "threshold" in spec:
        words.append(f"λ={spec['threshold']:g}")
    if "bits" in spec:
        words.append(f"{spec['bits']} bits")
    if getattr(q, "loss_terms", None):
        words.append("+ " + ", ".join(type(t).__name__ for t in q.loss_terms))
    return " ".join(words)


class ModelSummary:
    """The per-layer table (``layers``) and the whole-model totals (``totals``) of :func:`summary`."""

    def __init__(self, name: str, layers: pd.DataFrame, totals: dict, left_float: dict):
        self.name, self.layers, self.totals, self.left_float = name, layers, totals, left_float

    def _total_line(self) -> str:
        t = self.totals
        return (f"params {t['params']:,} ({t['quantized_params']:,} quantized) | float32 {t['float32_bytes']:,} B | "
                f"packed {t['packed_bytes']:,} B | entropy-coded file {t['entropy_bytes']:,} B | "
                f"compression {t['compression']:.2f}x | unique integers {t['unique_integers']}")

    def _head(self) -> str:
        left = f"; float weights kept in {len(self.left_float)}: {', '.join(self.left_float)}" if self.left_float else ""
        return f'Model "{self.name}": {len(self.layers)} layers{left}'

    def __str__(self) -> str:
        table = self.layers.to_string(index=False, max_rows=None, max_cols=None, max_colwidth=None)
        return "\n".join([self._head(), table, "Total: " + self._total_line()])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return (f"<p><b>{self._head()}</b></p>" + self.layers.to_html(index=False, max_rows=None, max_cols=None)
                + f"<p><b>Total:</b> {self._total_line()}</p>")


def summary(model) -> ModelSummary:
    """Every layer of ``model`` and the whole model's sizes (module docstring)."""
    ints = metrics.integer_tensors(model) if quantized_params(model) else {}
    scales = metrics.scales(model) if ints else {}
    by_layer = {}
    for (tensor, layer, *_), name in zip(quantized_params(model), ints):
        by_layer.setdefault(id(layer), []).append((ints[name], scales[name]))
    left = float_layers(model)
    rows = []
    for path, layer in leaf_layers(model):
        n = int(sum(int(np.prod(w.shape)) for w in layer.weights))
        row = {"layer": path, "type": type(layer).__name__, "quantizer": "", "params": n, "unique": "", "bits": "",
               "float32_bytes": 4 * n, "packed_bytes": 0, "entropy_bytes": 0, "note": left.get(path, "")}
        if isinstance(layer, QuantizedLayer):
            tensors = by_layer.get(id(layer), [])
            if isinstance(layer, QuantizedWrapper):
                row["type"] = f"{type(layer).__name__}({type(layer.layer).__name__})"
            row["quantizer"] = _describe(layer)
            row["unique"] = metrics.unique_integers([q for q, _ in tensors]) if tensors else 0
            row["bits"] = max((metrics.bits_fixed(q) for q, _ in tensors), default=0)
            row["params"] = int(sum(q.size for q, _ in tensors))
            row["float32_bytes"] = 4 * row["params"]
            row["packed_bytes"] = int(sum(metrics.packed_size_bytes(q, s) for q, s in tensors))
            row["entropy_bytes"] = int(sum(entropy.coded_size(q) + 4 * s.size for q, s in tensors))
        else:
            raw = int(sum(np.asarray(metrics._to_numpy(w)).nbytes for w in layer.weights))
            row["packed_bytes"] = row["entropy_bytes"] = raw
        rows.append(row)
    layers = pd.DataFrame(rows, columns=COLUMNS)
    float32 = int(layers["float32_bytes"].sum())
    file_bytes = len(encode_integers(model, include_other=True)[0]) if ints else int(layers["entropy_bytes"].sum())
    q_params = int(sum(q.size for q in ints.values()))
    totals = {
        "params": int(layers["params"].sum()),
        "quantized_params": q_params,
        "float_params": int(layers["params"].sum()) - q_params,
        "float32_bytes": float32,
        "packed_bytes": int(layers["packed_bytes"].sum()),
        "entropy_bytes": int(file_bytes),
        "compression": float(float32 / file_bytes) if file_bytes else 0.0,
        "unique_integers": metrics.unique_integers(ints) if ints else 0,
    }
    return ModelSummary(model.name, layers, totals, left)


__all__ = ["COLUMNS", "ModelSummary", "summary"]
