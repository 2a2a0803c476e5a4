"""``summary(model)``: every layer of a model, quantized or not, and what the whole model takes to store.

The analogue of ``larq.models.summary`` for learned quantization. One row per layer (nested models walked,
``outer/inner`` paths), with, for a quantized layer, its quantizer, the distinct integers of its tensors and their
widest fixed width, and for every layer (``n`` = its number of weights)::

    float32_bytes = 4 · n                                   # the float32 model
    packed_bytes  = Σ_tensors packed_size_bytes(P_q, s)     # quantized: fixed-width integers + scales
                  = raw bytes of its weights                #   float layers (BatchNorm, excluded ones)
    entropy_bytes = Σ_tensors (coded integers + 4 · #s)     # quantized: lqs_core.entropy.encode, + the scales
                  = raw bytes of its weights                #   float layers

A layer with quantized layers inside (a :class:`~lqs_core.convert.QuantizedMultiHeadAttention`) is one row over
all their tensors. Totals: the same sums over the layers, except ``entropy_bytes``, which is the size of the whole
model's integer file (:func:`lqs_core.export.save_integers` with the float weights included: header and code tables
too), and ``compression = float32_bytes / entropy_bytes``.

Printed (``print(summary(model))``) it is a plain-text table at most :data:`TEXT_WIDTH` characters wide that is
never cut short: the text columns (layer, type, quantizer) wrap onto extra lines where they must, type names are
shortened (``QuantizedWrapper(Conv2D)`` → ``Conv2D``, ``…Normalization`` → ``…Norm``), ``float32_bytes`` (= 4 ·
params) and ``packed_bytes`` are left to ``.layers``, and a layer that keeps float weights reads ``float [k]`` with
note ``k`` printed once below the table. In Jupyter it renders as an HTML table of every column; ``.layers`` is the
table as a DataFrame, ``.totals`` a dict.
"""

from __future__ import annotations

import re
import textwrap
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd

from lqs_core import entropy, intfile, metrics
from lqs_core.convert import float_layers, leaf_layers, quantized_sublayers
from lqs_core.export import encode_integers
from lqs_core.layers import QuantizedLayer, QuantizedWrapper, quantized_params
from lqs_core.quantizers import registry

COLUMNS = ["layer", "type", "quantizer", "params", "unique", "bits", "float32_bytes", "packed_bytes",
           "entropy_bytes", "note"]
#: Widest line of ``str(summary(model))``.
TEXT_WIDTH = 100
#: The columns of the printed table: ``(column, header)``; text columns are left-aligned, numbers right-aligned.
TEXT_COLUMNS = (("layer", "layer"), ("type", "type"), ("quantizer", "quantizer"), ("params", "params"),
                ("unique", "unique"), ("bits", "bits"), ("entropy_bytes", "entropy B"))
#: The text columns of the printed table, in the order they give up width when it is too wide: ``{column:
#: narrowest width}`` (a long layer name wraps first, rarely; then the quantizer, then the type).
_TEXT = {"layer": 16, "quantizer": 16, "type": 9}
#: Parts of Keras type names shortened in the printed table.
_SHORTER = (("Normalization", "Norm"), ("GlobalAveragePooling", "GlobalAvgPool"), ("GlobalMaxPooling", "GlobalMaxPool"),
            ("MultiHeadAttention", "MHA"))


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


def short_type(type_name: str) -> str:
    """The type as the printed table shows it: a wrapper by the layer it wraps, ``Quantized`` dropped, long
    Keras words shortened (:data:`_SHORTER`)."""
    wrapped = re.fullmatch(r"QuantizedWrapper\((.*)\)", type_name)
    name = wrapped.group(1) if wrapped else re.sub(r"^Quantized(?=[A-Z])", "", type_name)
    for long, short in _SHORTER:
        name = name.replace(long, short)
    return name


def _cell(value) -> str:
    """A number with thousands separators; anything else as it is."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    return str(value)


def fit_widths(natural: Dict[str, int], shrinkable: Dict[str, int], total: int) -> Dict[str, int]:
    """Column widths whose sum is at most ``total``: the ``shrinkable`` columns (``{column: minimum width}``) give
    up characters in their order, each down to its minimum before the next; the others keep their ``natural``
    width."""
    widths = dict(natural)
    for column, minimum in shrinkable.items():
        excess = sum(widths.values()) - total
        if excess <= 0:
            break
        widths[column] = max(min(minimum, widths[column]), widths[column] - excess)
    return widths


def wrap_text(text: str, width: int) -> List[str]:
    """``text`` in lines of at most ``width`` characters, broken after a space, ``_`` or ``/`` where possible
    (layer names), else inside a word."""
    lines, line = [], ""
    for piece in re.findall(r"[^ _/]*[ _/]|[^ _/]+$", text):
        if len(line) + len(piece.rstrip()) > width and line:
            lines.append(line.rstrip())
            line = ""
        while len(piece.rstrip()) > width:
            lines.append(piece[:width])
            piece = piece[width:]
        line += piece
    return lines + [line.rstrip()] if line.strip() or not lines else lines


def _gap(column: str, text_columns) -> str:
    """What goes before ``column``: two spaces before text, one before a right-aligned number."""
    return "  " if column in text_columns else " "


def render_table(rows: List[Dict[str, str]], columns: Sequence[Tuple[str, str]], text_columns: Dict[str, int],
                 width: int = TEXT_WIDTH) -> List[str]:
    """The lines of a plain-text table of ``rows`` (cells as strings) no wider than ``width``: numbers keep their
    width, the ``text_columns`` wrap, narrowed in their order (:func:`fit_widths`)."""
    gaps = sum(len(_gap(c, text_columns)) for c, _ in columns[1:])
    natural = {c: max([len(header)] + [len(r[c]) for r in rows]) for c, header in columns}
    widths = fit_widths(natural, text_columns, width - gaps)

    def line(cells: Dict[str, List[str]], i: int) -> str:
        out = ""
        for k, (c, _) in enumerate(columns):
            text = cells[c][i] if i < len(cells[c]) else ""
            out += (_gap(c, text_columns) if k else "") + (text.ljust(widths[c]) if c in text_columns
                                                            else text.rjust(widths[c]))
        return out.rstrip()

    out = []
    for cells in [{c: [h] for c, h in columns}] + [{c: wrap_text(r[c], widths[c]) if c in text_columns else [r[c]]
                                                    for c, _ in columns} for r in rows]:
        out += [line(cells, i) for i in range(max(len(v) for v in cells.values()))]
    return out


def _note_numbers(notes: Sequence[str]) -> Dict[str, int]:
    """``{note: k}``: each distinct non-empty note numbered from 1 in order of appearance."""
    numbers: Dict[str, int] = {}
    for note in notes:
        if note and note not in numbers:
            numbers[note] = len(numbers) + 1
    return numbers


class ModelSummary:
    """The per-layer table (``layers``) and the whole-model totals (``totals``) of :func:`summary`."""

    def __init__(self, name: str, layers: pd.DataFrame, totals: dict, left_float: dict):
        self.name, self.layers, self.totals, self.left_float = name, layers, totals, left_float

    def _total_parts(self) -> List[str]:
        t = self.totals
        return [f"params {t['params']:,} ({t['quantized_params']:,} quantized)", f"float32 {t['float32_bytes']:,} B",
                f"packed {t['packed_bytes']:,} B", f"entropy-coded file {t['entropy_bytes']:,} B",
                f"compression {t['compression']:.2f}x", f"unique integers {t['unique_integers']:,}"]

    def _total_line(self) -> str:
        return " | ".join(self._total_parts())

    def _total_lines(self) -> List[str]:
        """``Total: ...`` in lines of at most :data:`TEXT_WIDTH` characters, broken between its parts."""
        groups, current = [], []
        for part in self._total_parts():
            if current and 7 + len(" | ".join(current + [part])) > TEXT_WIDTH:
                groups.append(current)
                current = []
            current.append(part)
        return [("Total: " if i == 0 else " " * 7) + " | ".join(g) for i, g in enumerate(groups + [current])]

    def _head(self) -> str:
        quantized = int((self.layers["quantizer"] != "").sum())
        left = f", {len(self.left_float)} keep float weights" if self.left_float else ""
        return f'Model "{self.name}": {len(self.layers)} layers, {quantized} quantized{left}'

    def _text_rows(self, numbers: Dict[str, int]) -> List[Dict[str, str]]:
        rows = []
        for r in self.layers.to_dict("records"):
            quantizer = r["quantizer"] or (f"float [{numbers[r['note']]}]" if r["note"] else "")
            rows.append({**{c: _cell(r[c]) for c, _ in TEXT_COLUMNS}, "type": short_type(r["type"]),
                         "quantizer": quantizer})
        return rows

    def _notes(self, numbers: Dict[str, int]) -> List[str]:
        """Each note once, with the layers it applies to, wrapped to :data:`TEXT_WIDTH`."""
        lines = []
        for note, k in numbers.items():
            paths = self.layers.loc[self.layers["note"] == note, "layer"].tolist()
            lines += textwrap.wrap(f"[{k}] {note}: {', '.join(paths)}", TEXT_WIDTH, subsequent_indent="    ",
                                   break_on_hyphens=False)
        return lines

    def __str__(self) -> str:
        numbers = _note_numbers(self.layers["note"])
        table = render_table(self._text_rows(numbers), TEXT_COLUMNS, _TEXT)
        foot = "(float32 B = 4 · params; packed B per layer: .layers)"
        return "\n".join(textwrap.wrap(self._head(), TEXT_WIDTH) + table + [foot] + self._total_lines()
                         + self._notes(numbers))

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return (f"<p><b>{self._head()}</b></p>" + self.layers.to_html(index=False, max_rows=None, max_cols=None)
                + f"<p><b>Total:</b> {self._total_line()}</p>")


def _hosts(layer) -> list:
    """The quantized layers whose tensors a row of ``layer`` counts: itself, or those inside it."""
    return [layer] if isinstance(layer, QuantizedLayer) else quantized_sublayers(layer)


def _raw_bytes(weights) -> int:
    return int(sum(np.asarray(metrics._to_numpy(w)).nbytes for w in weights))


def coded_bytes(blob: bytes) -> Dict[str, int]:
    """``{tensor: coded integers + 4 · #s}`` read from the header of an integer file's bytes: the same number as
    ``entropy.coded_size(P_q) + 4 · #s`` (the file codes each tensor with ``entropy.encode``), without coding
    every tensor a second time."""
    _, version, header_len, _ = intfile.PREFIX.unpack_from(blob, 0)
    header = intfile.decode_header(blob[intfile.PREFIX.size:intfile.PREFIX.size + header_len], version)
    return {t["name"]: t["nbytes"] + t["scale_nbytes"]
            + (entropy.table_bytes(len(t["symbols"])) if t["coding"] == "huffman" else 0) for t in header["tensors"]}


def _row(path: str, layer, tensors_of: dict, note: str) -> dict:
    """The summary row of one layer (module docstring); ``tensors_of[id(host)]`` = ``[(P_q, s, coded bytes), ...]``."""
    n = int(sum(int(np.prod(w.shape)) for w in layer.weights))
    row = {"layer": path, "type": type(layer).__name__, "quantizer": "", "params": n, "unique": "", "bits": "",
           "float32_bytes": 4 * n, "packed_bytes": 0, "entropy_bytes": 0, "note": note}
    hosts = _hosts(layer)
    if not hosts:
        row["packed_bytes"] = row["entropy_bytes"] = _raw_bytes(layer.weights)
        return row
    tensors = [t for host in hosts for t in tensors_of.get(id(host), [])]
    if isinstance(layer, QuantizedWrapper):
        row["type"] = f"{type(layer).__name__}({type(layer.layer).__name__})"
    row["quantizer"] = "; ".join(dict.fromkeys(_describe(host) for host in hosts))
    row["unique"] = metrics.unique_integers([q for q, _, _ in tensors]) if tensors else 0
    row["bits"] = max((metrics.bits_fixed(q) for q, _, _ in tensors), default=0)
    row["params"] = int(sum(q.size for q, _, _ in tensors))
    row["float32_bytes"] = 4 * row["params"]
    row["packed_bytes"] = int(sum(metrics.packed_size_bytes(q, s) for q, s, _ in tensors))
    row["entropy_bytes"] = int(sum(coded for _, _, coded in tensors))
    return row


def summary(model) -> ModelSummary:
    """Every layer of ``model`` and the whole model's sizes (module docstring)."""
    ints = metrics.integer_tensors(model) if quantized_params(model) else {}
    scales = metrics.scales(model) if ints else {}
    blob = encode_integers(model, include_other=True)[0] if ints else b""
    coded = coded_bytes(blob) if ints else {}
    tensors_of: dict = {}
    for (tensor, layer, *_), name in zip(quantized_params(model), ints):
        tensors_of.setdefault(id(layer), []).append((ints[name], scales[name], coded[name]))
    left = float_layers(model)
    rows = [_row(path, layer, tensors_of, left.get(path, "")) for path, layer in leaf_layers(model)]
    layers = pd.DataFrame(rows, columns=COLUMNS)
    float32 = int(layers["float32_bytes"].sum())
    file_bytes = len(blob) if ints else int(layers["entropy_bytes"].sum())
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


__all__ = ["COLUMNS", "TEXT_WIDTH", "ModelSummary", "render_table", "short_type", "summary"]
