"""Shared test set-up: quiet, deterministic runs on the CPU, with the CPU code path pinned (AVX2) as in every
workflow job, before anything imports TensorFlow; and the helpers that let a test run on every Keras backend.

Backends: the suite runs on the Keras backend of the environment (``KERAS_BACKEND=tensorflow``, ``jax`` or
``torch``; TensorFlow by default), once per backend, as Keras' own suite does. Tests marked ``backends`` must pass
on every backend (``KERAS_BACKEND=jax pytest -m backends``); tests that are TensorFlow by nature (tf.data, op
determinism) carry :data:`requires_tensorflow`. The helpers below replace ``tf.GradientTape`` / ``.numpy()``:
:func:`to_numpy`, :func:`tensor`, :func:`value_and_grads`. This module imports Keras only inside the helpers, so
the workflow tests stay light.
"""

import os

import numpy as np
import pytest

from lqs_core import _configured_backend
from lqs_core.provenance import pin_cpu

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
pin_cpu()

#: The Keras backend this run of the suite uses (read as Keras reads it, without importing Keras).
BACKEND = _configured_backend()

#: For tests that are TensorFlow by nature (tf.data pipelines, TensorFlow's op determinism, tf.function).
requires_tensorflow = pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow-only (tf.data / TF op state)")


def pytest_report_header(config):
    return f"keras backend: {BACKEND}"


def to_numpy(x) -> np.ndarray:
    """A tensor, variable or array of any backend as a NumPy array (``.numpy()`` does not exist for JAX arrays and
    refuses PyTorch tensors that require grad)."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


def tensor(x, dtype="float32"):
    """``x`` as a tensor of the current backend (``tf.constant`` on TensorFlow)."""
    import keras

    return keras.ops.convert_to_tensor(np.asarray(x), dtype=dtype)


def value_and_grads(f, wrt, jit=False):
    """``(f(*wrt), [df/dw for w in wrt])`` as NumPy arrays, on the current Keras backend.

    ``wrt``: arrays (``f`` gets them as tensors of the backend) or ``keras.Variable`` objects (``f`` gets the
    variables; it may read other variables too, such as a model's weights). ``f`` returns a scalar; inside ``f``,
    ``model.losses`` holds the losses added by the layers ``f`` called. ``jit``: trace it as a training step does
    (``tf.function``, ``jax.jit``; PyTorch stays eager). A variable ``f`` does not depend on gets zeros.
    """
    import keras

    wrt = list(wrt)
    is_var = [isinstance(w, keras.Variable) for w in wrt]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        args = [w if v else tf.constant(np.asarray(w)) for w, v in zip(wrt, is_var)]

        def run():
            with tf.GradientTape() as tape:
                for a, v in zip(args, is_var):
                    if not v:
                        tape.watch(a)
                y = f(*args)
            return y, tape.gradient(y, args)

        y, grads = (tf.function(run) if jit else run)()
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        values = [w.value if v else jnp.asarray(np.asarray(w)) for w, v in zip(wrt, is_var)]

        def fn(values):
            mapping = [(w, x) for w, x, v in zip(wrt, values, is_var) if v]
            args = [w if v else x for w, x, v in zip(wrt, values, is_var)]
            with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
                return f(*args)

        step = jax.value_and_grad(fn)
        y, grads = (jax.jit(step) if jit else step)(values)
    elif backend == "torch":
        import torch

        args = [w if v else keras.ops.convert_to_tensor(np.asarray(w)).detach().requires_grad_(True)
                for w, v in zip(wrt, is_var)]
        targets = [a.value if v else a for a, v in zip(args, is_var)]
        y = f(*args)
        grads = torch.autograd.grad(y, targets, allow_unused=True)
    else:
        raise NotImplementedError(f"no gradients on the Keras backend {backend!r}")
    grads = [np.zeros(tuple(w.shape), np.float32) if g is None else to_numpy(g) for w, g in zip(wrt, grads)]
    return to_numpy(y), grads
