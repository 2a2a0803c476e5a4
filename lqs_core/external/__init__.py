"""Other libraries' quantization, trained or applied on lqs' networks and measured with lqs' own metrics.

=====================  ======================================================================  ====================
comparator             what                                                                    module
=====================  ======================================================================  ====================
``hgq2``               HGQ2 (PyPI ``hgq2``): learned per-weight bit widths, weights only,        :mod:`.hgq2`
                       bit-width regularizer ``MonoL1(beta)``
``keras_quantize``     Keras' own ``model.quantize("int8" | "int4")`` of the trained float twin   :mod:`.keras_quantize`
=====================  ======================================================================  ====================

Both give their weights as integer tensors (:func:`integer_report` turns them into the same size numbers as
:func:`lqs_core.metrics.report`), so every method of the comparison is measured by one yardstick.
"""

from lqs_core.external.sizes import integer_report

__all__ = ["integer_report"]
