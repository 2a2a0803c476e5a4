"""Names of the workflow's things: display labels, plotting orders and the figures' file stems.

The vocabulary itself (datasets, loss terms, modes, comparators, granularities) is :mod:`lqs_core.spec`; this
module only adds how the workflow *shows* it: the order of the families in tables and legends, the order of the
granularity columns in a figure, readable names, λ/γ labels, and the stem of every figure file. It is imported by
the sweep (which figure files a profile has) and by the figure notebooks (what they are called), so it imports
nothing but :mod:`lqs_core.spec`.
"""

from __future__ import annotations

import math
from typing import Optional

from lqs_core import spec

#: The ``method`` / ``family`` column of the results table, in plotting order: the float baseline, the thesis'
#: schemes (nested λ, each loss term on its own γ grid), then the comparators.
FAMILIES = ("float", "nested") + spec.TERMS + spec.COMPARATORS
#: Granularities in the order of a figure's columns (the thesis' three first, per-tensor last).
GRANULARITY_ORDER = ("rowwise", "columnwise", "channelwise", "outputwise", "scalar", "weightwise")

METHOD_NAMES = {"float": "float baseline", "nested": "nested (λ)", "maxbin": "MaxBin (γ)", "inverse": "Inverse (γ)",
                "difference": "Difference (γ)", "reconstruction": "Reconstruction (γ)", "ptq": "PTQ min-max",
                "fixed": "fixed-bit QAT", "lsq": "LSQ", "cgmq": "CGMQ", "layer_importance": "layer importance", "hgq2": "HGQ2",
                "keras_quantize": "Keras quantize"}
TERM_NAMES = {"maxbin": "MaxBin", "inverse": "Inverse", "difference": "Difference",
              "reconstruction": "Reconstruction error"}
MODE_NAMES = {"qat": "QAT (from scratch)", "ptq": "PTQ (from float baseline)"}


def format_value(value: float) -> str:
    """Compact, unique text of a λ/γ value for labels: ``0``, ``1e-10``, ``0.5``."""
    value = float(value)
    if value == 0:
        return "0"
    text = f"{value:.6g}"
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def param_symbol(family: str) -> str:
    return "λ" if family == "nested" else "γ"


def family_title(family: str) -> str:
    if family == "nested":
        return "nested scheme (threshold λ)"
    if family == "float":
        return "float baseline"
    return f"loss term {TERM_NAMES.get(family, family)} (penalty rate γ)"


def family_order(family: str) -> int:
    """Sort key of the thesis' sweeps: nested first, then the loss terms in :data:`lqs_core.spec.TERMS` order."""
    return 0 if family == "nested" else 1 + spec.TERMS.index(family) if family in spec.TERMS else 99


def method_order(method: str) -> int:
    return FAMILIES.index(method) if method in FAMILIES else len(FAMILIES)


def setting_label(method: str, param, variant: Optional[str] = None) -> str:
    """Readable swept value of a setting: ``λ=1e-10``, ``γ=1e-13``, ``4 bits``, ``budget 0.1``, ``start 8 bits``."""
    if method == "float" or param is None or (isinstance(param, float) and math.isnan(param)):
        text = "float32"
    elif method == "nested":
        text = f"λ={format_value(param)}"
    elif method in spec.TERMS:
        text = f"γ={format_value(param)}"
    elif method == "cgmq":
        text = f"budget {format_value(param)}"
    elif method == "layer_importance":
        text = f"start {int(param)} bits"
    elif method == "hgq2":
        text = f"β={format_value(param)}"
    elif method == "keras_quantize":
        text = f"int{int(param)}"
    else:
        text = f"{int(param)} bits"
    if isinstance(variant, str) and variant:
        text += f" ({variant})"
    return text


# ---------------------------------------------------------------------------------------------------------------
# Figure files (figures/<profile>/<stem>.{png,pdf})


def pareto_stem(dataset: str, family: str) -> str:
    return f"pareto_{dataset}_{family}"


def curves_stem(dataset: str, family: str, mode: str) -> str:
    return f"curves_{dataset}_{family}_{mode}"


def histograms_stem(dataset: str, family: str) -> str:
    return f"histograms_{dataset}_{family}"


def gradual_stem(dataset: str) -> str:
    return f"gradual_{dataset}"


def comparison_stem(dataset: str) -> str:
    return f"comparison_{dataset}"


def pareto_table_stem(dataset: str) -> str:
    return f"pareto_points_{dataset}"


#: Files of the compression table besides its PNG/PDF figure.
TABLE_FILES = ("compression.csv", "compression.md", "compression_settings.csv")
