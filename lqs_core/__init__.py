"""lqs_core: Keras 3 layers that learn their own quantization scale (Learned Quantization Schemes).

Modules: ``quantizers`` (the nested quantization layer), ``granularity`` (scale shapes), ``layers`` (QDense,
QConv2D), ``losses`` (the loss-term scheme), ``comparators`` (fixed-bit QAT, LSQ, PTQ, CGMQ, layer-importance bit
selection: SPEC §5), ``metrics``, ``export``, ``data``, ``models``, ``training``,
``workflow`` (the reproduction's helpers).
"""

import importlib

__version__ = "0.1.0"

# Imported on first use, so `import lqs_core.workflow` (the Snakefile's helpers) does not pay for TensorFlow.
_LAZY = {"NestedQuantizer": "lqs_core.quantizers", "QDense": "lqs_core.layers", "QConv2D": "lqs_core.layers",
         "QuantizedLayer": "lqs_core.layers"}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lqs_core' has no attribute {name!r}")
