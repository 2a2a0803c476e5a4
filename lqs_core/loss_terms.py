"""The loss terms of the loss-term scheme (docs/method.md §2) as objects a quantizer holds.

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

A quantizer that holds a term with ``weight = #(P) / Σ#(P)`` adds its share ``γ · weight · t(P, s)``
(:meth:`LossTerm.penalty`) with ``add_loss`` in its own ``call``; :func:`lqs_core.losses.attach` hands every
quantizer of a model its terms with the right weights.
"""

from __future__ import annotations


import keras
from keras import ops

from lqs_core.spec import TERMS, check_number


def _as_tensor(x):
    """A tensor holding ``x``'s current value (on TensorFlow ``tf.convert_to_tensor``: a variable's read, which a
    custom gradient needs; ``keras.ops.convert_to_tensor`` would hand the variable back)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.convert_to_tensor(x)
    return ops.convert_to_tensor(x)


@ops.custom_gradient
def _abs(x):
    """``|x|`` with the gradient ``sign(x)`` (0 at 0) on every backend: TensorFlow's and PyTorch's rule for the
    kink; JAX's own ``abs`` gives 1 there (on TensorFlow this is the same Abs / Sign / Mul kernels as ``tf.abs``)."""

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return upstream * ops.sign(x)

    return ops.abs(x), grad


def maxbin(p, s, axes):
    """``t = mean_k(max_{slice k} |P| / s_k)``: the largest integer each scale produces, before flooring."""
    return ops.mean(ops.max(_abs(p), axis=tuple(axes), keepdims=True) / s)


def inverse(p, s, axes):
    """``t = mean(1 / s)``."""
    return ops.mean(1.0 / s)


def difference(p, s, axes):
    """``t = mean(|P − P / s|)`` — the thesis' definition (not a reconstruction error)."""
    return ops.mean(_abs(p - p / s))


def reconstruction_error(p, s, axes):
    """``t = mean(|P − floor(P / s) · s|)`` with ``floor(P / s)`` held constant for the gradient."""
    return ops.mean(_abs(p - ops.stop_gradient(ops.floor(p / s)) * s))


TERM_FUNCTIONS = {
    "maxbin": maxbin,
    "inverse": inverse,
    "difference": difference,
    "reconstruction": reconstruction_error,
}
assert tuple(TERM_FUNCTIONS) == TERMS


def term_value(term: str, p, s, axes):
    """``t(P, s)`` of the term named ``term`` (one of :data:`lqs_core.spec.TERMS`)."""
    if term not in TERM_FUNCTIONS:
        raise ValueError(f"Unknown loss term {term!r}; allowed: {', '.join(TERM_FUNCTIONS)}.")
    p = _as_tensor(p)
    return TERM_FUNCTIONS[term](p, ops.cast(_as_tensor(s), p.dtype), axes)


class LossTerm:
    """A loss term with penalty rate ``gamma >= 0`` and the ``weight`` of the parameter it is attached to
    (``#(P) / Σ#(P)``; 1 until :func:`lqs_core.losses.attach` sets it)."""

    term = ""

    def __init__(self, gamma: float, weight: float = 1.0):
        self.gamma = check_number("gamma (penalty rate)", gamma)
        self.weight = check_number("weight", weight)

    def value(self, p, s, axes):
        """``t(P, s)`` of this term."""
        return term_value(self.term, p, s, axes)

    def penalty(self, p, s, axes):
        """``γ · weight · t(P, s)``: the share of one parameter in ``γ · L_custom``."""
        return self.gamma * self.weight * self.value(p, s, axes)

    def with_weight(self, weight: float) -> "LossTerm":
        return type(self)(self.gamma, weight)

    def get_config(self):
        return {"gamma": self.gamma, "weight": self.weight}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and (self.gamma, self.weight) == (other.gamma, other.weight)

    def __repr__(self):
        weight = "" if self.weight == 1.0 else f", weight={self.weight:g}"
        return f"{type(self).__name__}(gamma={self.gamma:g}{weight})"


@keras.saving.register_keras_serializable(package="lqs")
class MaxBin(LossTerm):
    """MaxBin: ``t(P, s) = mean_k(max_{slice k} |P| / s_k)``; pushes ``s`` up, the integer range down."""

    term = "maxbin"


@keras.saving.register_keras_serializable(package="lqs")
class Inverse(LossTerm):
    """Inverse: ``t(P, s) = mean(1 / s)``; pushes ``s`` up regardless of ``P``."""

    term = "inverse"


@keras.saving.register_keras_serializable(package="lqs")
class Difference(LossTerm):
    """Difference: ``t(P, s) = mean(|P − P / s|)``; pushes ``s`` towards 1 and ``P`` towards 0."""

    term = "difference"


@keras.saving.register_keras_serializable(package="lqs")
class ReconstructionError(LossTerm):
    """Reconstruction error: ``t(P, s) = mean(|P − floor(P / s)·s|)`` (floor held constant)."""

    term = "reconstruction"


#: Term name -> class.
TERM_CLASSES = {cls.term: cls for cls in (MaxBin, Inverse, Difference, ReconstructionError)}
# Class names (``"ReconstructionError"``) and snake case (``"reconstruction_error"``) are accepted too.
_TERM_ALIASES = {"reconstructionerror": "reconstruction"}


def make_term(name: str, gamma: float, weight: float = 1.0) -> LossTerm:
    """The loss term called ``name`` (``maxbin``, ``inverse``, ``difference``, ``reconstruction``; case-insensitive,
    the class names such as ``ReconstructionError`` work too)."""
    key = str(name).lower().replace("_", "").replace("-", "").replace(" ", "")
    key = _TERM_ALIASES.get(key, key)
    if key not in TERM_CLASSES:
        raise ValueError(f"Unknown loss term {name!r}; allowed: {', '.join(TERM_CLASSES)}.")
    return TERM_CLASSES[key](gamma, weight)


def get(term) -> LossTerm:
    """A :class:`LossTerm` from a term, its Keras serialization, or the ``{"term", "gamma", "weight"}`` dict that
    ``.keras`` files written before lqs 0.2 hold."""
    if isinstance(term, LossTerm):
        return term
    if isinstance(term, dict) and "term" in term:
        return make_term(term["term"], term.get("gamma"), term.get("weight", 1.0))
    if isinstance(term, dict) and "class_name" in term:
        obj = keras.saving.deserialize_keras_object(term)
        if isinstance(obj, LossTerm):
            return obj
    raise ValueError(f"A loss term must be a LossTerm (MaxBin, Inverse, ...) or its config, got {term!r}.")


__all__ = [
    "Difference",
    "Inverse",
    "LossTerm",
    "MaxBin",
    "ReconstructionError",
    "TERM_CLASSES",
    "TERM_FUNCTIONS",
    "get",
    "make_term",
    "term_value",
]
