"""The loss-term scheme (SPEC §2): scales trained by a term added to the task loss.

The nested quantizers run with ``threshold=0`` (zero scale gradient from the task loss, STE for ``P``); the scales
learn from ``L_total = L_task + Σ_terms γ · L_custom`` where every term is a parameter-count-weighted mean over all
quantized parameters ``P`` of the model (weights and biases alike)::

    L_custom = Σ_P #(P) · t(P, s_P) / Σ_P #(P)

| term                  | ``t(P, s)``                                   |
|-----------------------|-----------------------------------------------|
| ``MaxBin``            | ``mean_k(max_{slice k} |P| / s_k)``           |
| ``Inverse``           | ``mean(1 / s)``                               |
| ``Difference``        | ``mean(|P − P / s|)`` (literally, as the thesis defines it) |
| ``ReconstructionError``| ``mean(|P − floor(P / s)·s|)``, ``floor(P/s)`` a constant for the gradient |

Use: ``attach(model, MaxBin(gamma=1e-8), Inverse(gamma=1e-9))`` before ``compile``/``fit``. Each quantizer then
adds its share ``γ · #(P)/Σ#(P) · t(P, s)`` with ``add_loss`` in its own ``call``, so the terms are part of
``model.losses`` and train with plain ``model.fit`` (and survive ``.keras`` save/load).
"""

from __future__ import annotations

import math

import tensorflow as tf

from lqs_core.layers import quantized_params


def maxbin(p, s, axes):
    """``t = mean_k(max_{slice k} |P| / s_k)``: the largest integer each scale produces, before flooring."""
    return tf.reduce_mean(tf.reduce_max(tf.abs(p), axis=axes, keepdims=True) / s)


def inverse(p, s, axes):
    """``t = mean(1 / s)``."""
    return tf.reduce_mean(1.0 / s)


def difference(p, s, axes):
    """``t = mean(|P − P / s|)`` — the thesis' definition (not a reconstruction error)."""
    return tf.reduce_mean(tf.abs(p - p / s))


def reconstruction_error(p, s, axes):
    """``t = mean(|P − floor(P / s) · s|)`` with ``floor(P / s)`` held constant for the gradient."""
    return tf.reduce_mean(tf.abs(p - tf.stop_gradient(tf.floor(p / s)) * s))


TERM_FUNCTIONS = {
    "maxbin": maxbin,
    "inverse": inverse,
    "difference": difference,
    "reconstruction": reconstruction_error,
}


def term_value(term: str, p, s, axes):
    """``t(P, s)`` of the term named ``term`` (one of :data:`TERM_FUNCTIONS`)."""
    if term not in TERM_FUNCTIONS:
        raise ValueError(f"Unknown loss term {term!r}; allowed: {', '.join(TERM_FUNCTIONS)}.")
    p = tf.convert_to_tensor(p)
    return TERM_FUNCTIONS[term](p, tf.cast(tf.convert_to_tensor(s), p.dtype), axes)


class LossTerm:
    """A loss term with penalty rate ``gamma >= 0``; ``term(model)`` is ``γ · L_custom`` of the model now."""

    term = ""

    def __init__(self, gamma: float):
        try:
            gamma = float(gamma)
        except (TypeError, ValueError):
            raise ValueError(f"gamma (penalty rate) must be a number >= 0, got {gamma!r}.") from None
        if not math.isfinite(gamma) or gamma < 0:
            raise ValueError(f"gamma (penalty rate) must be a finite number >= 0, got {gamma!r}.")
        self.gamma = gamma

    def __call__(self, model):
        params = quantized_params(model)
        if not params:
            raise ValueError(f"Model {model.name!r} has no quantized parameters to apply {type(self).__name__} to.")
        total = sum(_size(v) for *_, v, _ in params)
        value = 0.0
        for _, _, _, variable, quantizer in params:
            value += _size(variable) / total * term_value(self.term, variable, quantizer.scale, quantizer.slice_axes)
        return self.gamma * value

    def get_config(self):
        return {"term": self.term, "gamma": self.gamma}

    def __repr__(self):
        return f"{type(self).__name__}(gamma={self.gamma:g})"


class MaxBin(LossTerm):
    """MaxBin: ``t(P, s) = mean_k(max_{slice k} |P| / s_k)``; pushes ``s`` up, the integer range down."""

    term = "maxbin"


class Inverse(LossTerm):
    """Inverse: ``t(P, s) = mean(1 / s)``; pushes ``s`` up regardless of ``P``."""

    term = "inverse"


class Difference(LossTerm):
    """Difference: ``t(P, s) = mean(|P − P / s|)``; pushes ``s`` towards 1 and ``P`` towards 0."""

    term = "difference"


class ReconstructionError(LossTerm):
    """Reconstruction error: ``t(P, s) = mean(|P − floor(P / s)·s|)`` (floor held constant)."""

    term = "reconstruction"


TERMS = {cls.term: cls for cls in (MaxBin, Inverse, Difference, ReconstructionError)}
# Class names (``"ReconstructionError"``) and snake case (``"reconstruction_error"``) are accepted too.
_TERM_ALIASES = {"reconstructionerror": "reconstruction"}


def make_term(name: str, gamma: float) -> LossTerm:
    """The loss term called ``name`` (``maxbin``, ``inverse``, ``difference``, ``reconstruction``; case-insensitive,
    the class names such as ``ReconstructionError`` work too)."""
    key = str(name).lower().replace("_", "").replace("-", "").replace(" ", "")
    key = _TERM_ALIASES.get(key, key)
    if key not in TERMS:
        raise ValueError(f"Unknown loss term {name!r}; allowed: {', '.join(TERMS)}.")
    return TERMS[key](gamma)


def _size(variable) -> int:
    n = 1
    for d in variable.shape:
        n *= int(d)
    return n


def attach(model, *terms: LossTerm):
    """Add ``terms`` to the training loss of ``model`` (its quantized layers must be built).

    Replaces terms attached before. Returns the model. Call before ``compile``/``fit``.
    """
    for t in terms:
        if not isinstance(t, LossTerm):
            raise ValueError(f"attach() takes LossTerm objects (MaxBin, Inverse, ...), got {t!r}.")
    params = quantized_params(model)
    if not params:
        raise ValueError(f"Model {model.name!r} has no built quantized layers; build it before attaching loss terms.")
    total = sum(_size(v) for *_, v, _ in params)
    for _, layer, name, variable, quantizer in params:
        entries = [{"term": t.term, "gamma": t.gamma, "weight": _size(variable) / total} for t in terms]
        layer.loss_terms[name] = entries
        quantizer.loss_terms = [dict(e) for e in entries]
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
    "TERMS",
    "attach",
    "make_term",
    "term_value",
]
