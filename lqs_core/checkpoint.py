"""Resumable training: the state of an unfinished run, written at every epoch end, read back by the next call.

A run that is interrupted (``kill -9``, the end of a sitting, a SLURM time limit) continues from its last finished
epoch when the same run is started again. After epoch ``e`` (1-based count of finished epochs) one file,
``checkpoint.npz`` in the run's folder, holds everything the epochs after ``e`` depend on:

* every variable of the model (weights, quantizer scales, gates, batch-norm statistics and the dropout layers'
  seed-generator states: ``model.variables``) and of the optimizer (Adam's moments and its step count), by path;
* the data order: epoch ``e + 1`` of the training pipeline is the ``(e + 1)``-th pass over a seeded, reshuffled
  stream, so the resumed run's pipeline starts there (``lqs_core.data.load(start_epoch=e)``; no data is read for
  the skipped epochs);
* the global random states (Python's ``random``, NumPy's legacy generator, Keras' global seed generator);
* the per-epoch history rows, with each value's exact type, and the state of callbacks that keep one
  (``get_state()`` / ``set_state(state)``, e.g. :class:`lqs_core.procedures.CGMQConstraint`);
* the seconds trained so far, and a fingerprint of the run (its config and Keras backend): a checkpoint of another
  run is never restored (it is removed, with a warning, and the run starts over).

The file is written atomically (:mod:`lqs_core.atomic`, flushed to disk), so an interruption while writing leaves
the previous checkpoint; it is removed when the run completes. On the same machine and backend the resumed run's
numbers are bit-identical to an uninterrupted run's (tests/test_resume.py kills a training and compares).
"""

from __future__ import annotations

import io
import json
import os
import random
import warnings
from typing import Any, Dict, List, Optional, Sequence

import keras
import numpy as np

from lqs_core.atomic import atomic_path

#: The checkpoint's file name inside the run's folder (never committed: .gitignore).
CHECKPOINT_FILE = "checkpoint.npz"
#: Layout version of the file; another version is not restored.
FORMAT = 1


def _encode_value(value) -> list:
    """``[type, value]`` for one history value, so that a restored row is the same Python/NumPy object type."""
    if isinstance(value, (bool, np.bool_)):
        return ["bool", bool(value)]
    if isinstance(value, np.generic):
        return [value.dtype.str, value.item()]
    if isinstance(value, int):
        return ["int", value]
    if isinstance(value, float):
        return ["float", value]
    if isinstance(value, str):
        return ["str", value]
    raise TypeError(f"checkpoint: history value {value!r} of type {type(value).__name__} cannot be stored.")


def _decode_value(pair):
    kind, value = pair
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "str":
        return str(value)
    return np.dtype(kind).type(value)


def encode_rows(rows: Sequence[dict]) -> list:
    """History rows as JSON-ready lists of ``[key, [type, value]]`` (key order kept)."""
    return [[[key, _encode_value(value)] for key, value in row.items()] for row in rows]


def decode_rows(rows: list) -> List[dict]:
    """The inverse of :func:`encode_rows`."""
    return [{key: _decode_value(pair) for key, pair in row} for row in rows]


def _random_states() -> dict:
    """Python's and NumPy's global random states (JSON-ready)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def _set_random_states(states: dict) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _global_seed_variable():
    """The state variable of Keras' global seed generator (random ops without their own seed), if it exists yet."""
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator

    generator = global_state.get_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR)
    return None if generator is None else generator.state


def _variables(model) -> Dict[str, Any]:
    """``name -> variable`` for the model's and its optimizer's variables in their order (``model/00000``, ...,
    ``optimizer/00000``, ...)."""
    out = {}
    for prefix, variables in (("model", model.variables),
                              ("optimizer", model.optimizer.variables if model.optimizer is not None else [])):
        for index, variable in enumerate(variables):  # by position: paths carry auto-numbered layer names
            out[f"{prefix}/{index:05d}"] = variable
    return out


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes the run's state (module docstring) to ``path`` at every epoch end; :meth:`restore` reads it back.

    ``fingerprint``: a string naming the run (:func:`fingerprint`). Before training, :meth:`attach` names the
    history recorder (an object with a ``rows`` list), the callbacks whose state it keeps (``get_state()`` /
    ``set_state()``) and a function returning the seconds trained in this process. Place it last among the
    callbacks, after those it reads.
    """

    def __init__(self, path, fingerprint: str):
        super().__init__()
        self.path = os.fspath(path)
        self.fingerprint = str(fingerprint)
        self.recorder = None
        self.stateful: list = []
        self.seconds = lambda: 0.0
        self.seconds_before = 0.0  # trained in earlier processes (restored)
        self._found = None  # (arrays, meta) read by epochs_stored, not yet restored

    def attach(self, recorder, stateful: Sequence = (), seconds=None) -> "EpochCheckpoint":
        self.recorder, self.stateful = recorder, list(stateful)
        self.seconds = seconds or (lambda: 0.0)
        return self

    # -- writing ---------------------------------------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1)

    def save(self, epochs_done: int) -> None:
        """Write the state after ``epochs_done`` finished epochs (atomically, flushed to disk)."""
        variables = _variables(self.model)
        arrays = {name: np.asarray(keras.ops.convert_to_numpy(v)) for name, v in variables.items()}
        global_seed = _global_seed_variable()
        if global_seed is not None:
            arrays["global_seed_generator"] = np.asarray(keras.ops.convert_to_numpy(global_seed))
        meta = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "epochs_done": int(epochs_done),
            "seconds": float(self.seconds_before + self.seconds()),
            "history": encode_rows(self.recorder.rows),
            "callbacks": [cb.get_state() for cb in self.stateful],
            "random": _random_states(),
        }
        arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())

    # -- reading ---------------------------------------------------------------------------------------------
    def _read(self):
        """``(arrays, meta)`` of the checkpoint at ``path``, or None (absent; or removed with a warning: another
        run's, another layout, unreadable)."""
        if not os.path.exists(self.path):
            return None
        try:
            with np.load(self.path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
            meta = json.loads(arrays.pop("meta.json").tobytes().decode("utf-8"))
        except Exception as error:  # noqa: BLE001 - any unreadable file: start over
            return self._discard(f"it cannot be read ({type(error).__name__}: {error})")
        if meta.get("format") != FORMAT:
            return self._discard(f"its layout is {meta.get('format')!r}, this lqs writes {FORMAT}")
        if meta.get("fingerprint") != self.fingerprint:
            return self._discard("it belongs to another run (config or backend differ)")
        return arrays, meta

    def epochs_stored(self) -> int:
        """The finished epochs of this run's checkpoint (0: none, or not this run's: then it is removed); the file
        read is kept for :meth:`restore`, so it is read once."""
        self._found = self._read()
        return 0 if self._found is None else int(self._found[1]["epochs_done"])

    def restore(self, model) -> int:
        """Load the checkpoint into ``model`` (compiled), the recorder and the callbacks; returns the number of
        finished epochs (0: nothing to resume; a checkpoint that does not fit is removed with a warning)."""
        found = self._found if self._found is not None else self._read()
        self._found = None
        if found is None:
            return 0
        arrays, meta = found
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        variables = _variables(model)
        global_seed = arrays.pop("global_seed_generator", None)
        if set(arrays) != set(variables):
            return self._discard("its variables are not this model's") or 0
        for name, variable in variables.items():
            if tuple(arrays[name].shape) != tuple(variable.shape):
                return self._discard(f"{name} has shape {arrays[name].shape}, the model's is {variable.shape}") or 0
        for name, variable in variables.items():
            variable.assign(arrays[name])
        if global_seed is not None:
            from keras.src.random import seed_generator

            seed_generator.global_seed_generator().state.assign(global_seed)
        self.recorder.rows = decode_rows(meta["history"])
        for callback, state in zip(self.stateful, meta["callbacks"]):
            callback.set_state(state)
        _set_random_states(meta["random"])
        self.seconds_before = float(meta["seconds"])
        return int(meta["epochs_done"])

    def _discard(self, why: str):
        warnings.warn(f"Checkpoint {self.path} not resumed: {why}; the run starts over.", RuntimeWarning,
                      stacklevel=3)
        os.unlink(self.path)
        return None

    def remove(self) -> None:
        """Remove the checkpoint (the run is complete)."""
        if os.path.exists(self.path):
            os.unlink(self.path)


def fingerprint(config_dict: dict, backend: Optional[str] = None) -> str:
    """The string a checkpoint must carry to be restored into a run: its config and the Keras backend."""
    return json.dumps({"config": config_dict, "backend": backend or keras.backend.backend()}, sort_keys=True)


__all__ = ["CHECKPOINT_FILE", "EpochCheckpoint", "decode_rows", "encode_rows", "fingerprint"]
