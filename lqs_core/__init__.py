"""lqs_core: Keras 3 layers that learn their own quantization scale (Learned Quantization Schemes).

Modules: ``quantizers`` (the nested quantization layer), ``granularity`` (scale shapes), ``layers`` (QDense,
QConv2D), ``losses`` (the loss-term scheme), ``metrics``, ``export``, ``data``, ``models``, ``training``,
``workflow`` (the reproduction's helpers).
"""

from lqs_core.layers import QConv2D, QDense, QuantizedLayer
from lqs_core.quantizers import NestedQuantizer

__version__ = "0.1.0"
__all__ = ["NestedQuantizer", "QConv2D", "QDense", "QuantizedLayer", "__version__"]
