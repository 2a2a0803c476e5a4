"""The loss-term scheme on a whole model (docs/method.md §2): hand every quantizer its share of the terms.

The terms themselves (``MaxBin``, ``Inverse``, ``Difference``, ``ReconstructionError``; their formulas) are in
:mod:`lqs_core.loss_terms` and re-exported here. ``attach(model, MaxBin(gamma=1e-8), Inverse(gamma=1e-9))`` before
``compile``/``fit`` gives each nested quantizer of the model the terms with ``weight = #(P) / Σ#(P)``; each then
adds ``γ · weight · t(P, s)`` with ``add_loss`` in its own ``call``, so the terms are part of ``model.losses``,
train with plain ``model.fit`` and survive ``.keras`` save/load. Together::

    γ · L_custom = γ · Σ_P #(P) · t(P, s_P) / Σ_P #(P)          (:func:`evaluate`)
"""

from __future__ import annotations

from lqs_core.layers import quantized_params
from lqs_core.loss_terms import (
    TERM_CLASSES,
    Difference,
    Inverse,
    LossTerm,
    MaxBin,
    ReconstructionError,
    make_term,
    term_value,
)


def _size(variable) -> int:
    n = 1
    for d in variable.shape:
        n *= int(d)
    return n


def _shares(model):
    """``[(quantizer, variable, #(P) / Σ#(P)), ...]`` over every quantized parameter of ``model``."""
    params = quantized_params(model)
    if not params:
        raise ValueError(f"Model {model.name!r} has no built quantized layers; build it before attaching loss terms.")
    total = sum(_size(v) for *_, v, _ in params)
    return [(quantizer, variable, _size(variable) / total) for *_, variable, quantizer in params]


def evaluate(term: LossTerm, model):
    """``γ · L_custom`` of ``term`` over every quantized parameter of ``model`` now."""
    value = 0.0
    for quantizer, variable, weight in _shares(model):
        value += weight * term.value(variable, quantizer.scale, quantizer.slice_axes)
    return term.gamma * value


def attach(model, *terms: LossTerm):
    """Add ``terms`` to the training loss of ``model`` (its quantized layers must be built).

    Replaces terms attached before. Returns the model. Call before ``compile``/``fit``.
    """
    for t in terms:
        if not isinstance(t, LossTerm):
            raise ValueError(f"attach() takes LossTerm objects (MaxBin, Inverse, ...), got {t!r}.")
    for quantizer, _, weight in _shares(model):
        if not hasattr(quantizer, "loss_terms"):
            raise ValueError(f"attach(): {type(quantizer).__name__} takes no loss terms; the loss-term scheme needs "
                             "nested quantizers.")
        quantizer.loss_terms = [t.with_weight(weight) for t in terms]
    # A model traced before must retrace so the new add_loss calls are part of the train step.
    for attr in ("train_function", "test_function", "predict_function"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    return model


__all__ = [
    "Difference",
    "Inverse",
    "LossTerm",
    "MaxBin",
    "ReconstructionError",
    "TERM_CLASSES",
    "attach",
    "evaluate",
    "make_term",
    "term_value",
]
