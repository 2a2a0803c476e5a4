"""A finished run on disk: :class:`RunResult`, its files, and reading it back.

Files of a saved run (:meth:`RunResult.save`; each written atomically, ``metrics.json`` last so that its presence
marks a complete run): ``history.csv`` (one row per epoch), ``summary.csv`` (per-tensor table, quantized runs),
``integers.lqsint`` (the integers and scales, :func:`lqs_core.export.save_integers`), ``model.keras`` and
``metrics.json`` (``{"run_id", "config", "report", "files", "versions", "machine"}``; ``machine`` is
:func:`lqs_core.provenance.record`: CPU model and instruction set, backend, versions, devices, the pinning and the
determinism in force).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
import zipfile
from dataclasses import dataclass
from typing import Any, Dict, Optional

import keras
import numpy as np
import pandas as pd

from lqs_core import __version__, export, provenance
from lqs_core.atomic import atomic_path, remove_stale, write_text
from lqs_core.intfile import scale_problem
from lqs_core.layers import quantized_params
from lqs_core.quantizers import Quantizer
from lqs_core.spec import (
    EXTERNAL_METHODS,
    HISTORY_FILE,
    INTEGERS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    SUMMARY_FILE,
    RunConfig,
    describe,
    run_id,
)



def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


#: Keras backend -> the module whose version a run records (the backend's package).
_BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def _versions() -> dict:
    """Versions of what computed the run: lqs, the Keras backend (its name and its package's version, under the
    package's name: ``"tensorflow": "2.21.0"``), Keras, NumPy, Python."""
    backend = keras.backend.backend()
    out = {"lqs": __version__}
    module = _BACKEND_MODULES.get(backend)
    if module is not None:
        out[module] = getattr(importlib.import_module(module), "__version__", None)  # imported already by Keras
    out.update(keras=keras.__version__, numpy=np.__version__, python=platform.python_version(), backend=backend)
    return out


@dataclass
class RunResult:
    """A finished run: its config, trained model, per-epoch history, final report and per-tensor summary."""

    config: RunConfig
    model: Any
    history: pd.DataFrame
    report: Dict[str, Any]
    summary: Optional[pd.DataFrame] = None

    @property
    def run_id(self) -> str:
        return run_id(self.config)

    def save(self, out_dir) -> str:
        """Write the run to ``out_dir`` (created); every file atomically, ``metrics.json`` last.

        A ``metrics.json`` already there is removed first, so a failure midway never leaves a directory that
        looks complete. Returns ``out_dir``.
        """
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        remove_stale(out_dir)  # temporary files of an earlier save that was killed
        metrics_path = os.path.join(out_dir, METRICS_FILE)
        if os.path.exists(metrics_path):
            os.unlink(metrics_path)
        files = {}

        write_text(os.path.join(out_dir, HISTORY_FILE), self.history.to_csv(index=False), fsync=True)
        files["history"] = HISTORY_FILE
        if self.summary is not None:
            write_text(os.path.join(out_dir, SUMMARY_FILE), self.summary.to_csv(index=False), fsync=True)
            files["summary"] = SUMMARY_FILE
        if self.model is not None and self.config.quantized and self.config.method not in EXTERNAL_METHODS:
            files["integers"] = self._save_integers(out_dir)
        if self.model is not None:
            with atomic_path(os.path.join(out_dir, MODEL_FILE)) as tmp:
                self.model.save(tmp)
            files["model"] = MODEL_FILE

        payload = {
            "run_id": self.run_id,
            "config": self.config.to_dict(),
            "report": self.report,
            "files": files,
            "versions": _versions(),
            "machine": provenance.record(),
        }
        write_text(metrics_path, json.dumps(_json_ready(payload), indent=2, sort_keys=False) + "\n", fsync=True)
        return out_dir

    def _save_integers(self, out_dir: str) -> str:
        with atomic_path(os.path.join(out_dir, INTEGERS_FILE)) as tmp:
            export.save_integers(self.model, tmp)
        return INTEGERS_FILE

    def report_line(self) -> str:
        """One readable line: dataset, scheme, granularity, λ/γ, mode, seed, val accuracy, unique integers,
        integer range, bits, zipped size."""
        r = self.report
        parts = [describe(self.config)]
        acc = r.get("val_accuracy")
        parts.append(f"val acc {100 * acc:.2f}%" if acc is not None and math.isfinite(acc) else "val acc n/a")
        if self.config.quantized:
            if "unique_integers" in r:
                parts.append(f"unique {r['unique_integers']}")
            if "int_min" in r and "int_max" in r:
                parts.append(f"range {r['int_min']}..{r['int_max']}")
            if "bits_unique" in r:
                bits = f"{r['bits_unique']} bits"
                if "bits_fixed" in r:
                    bits += f" ({r['bits_fixed']} fixed)"
                parts.append(bits)
            if "zip_bytes" in r:
                size = f"zip {_size(r['zip_bytes'])}"
                if r.get("float_zip_bytes"):
                    size += f" vs float {_size(r['float_zip_bytes'])}"
                parts.append(size)
        elif "float_zip_bytes" in r:
            parts.append(f"float zip {_size(r['float_zip_bytes'])}")
        return " | ".join(parts)


def _size(nbytes) -> str:
    nbytes = float(nbytes)
    if nbytes >= 1e6:
        return f"{nbytes / 1e6:.2f} MB"
    if nbytes >= 1e3:
        return f"{nbytes / 1e3:.1f} kB"
    return f"{int(nbytes)} B"


def is_complete(out_dir) -> bool:
    """Whether ``out_dir`` holds a completely saved run (its ``metrics.json``)."""
    return os.path.isfile(os.path.join(os.fspath(out_dir), METRICS_FILE))


#: Most bytes of a ``metrics.json`` or of a ``.keras`` file's ``config.json`` lqs reads (64 MiB; a run's are a few kB).
MAX_JSON_BYTES = 2**26


def _parse_json(text, where: str):
    """``json.loads(text)``, or one ``ValueError`` naming ``where`` (not JSON, nested too deeply to parse)."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: not valid JSON ({e}).") from None
    except RecursionError:
        raise ValueError(f"{where}: its JSON is nested too deeply to parse.") from None


def read_metrics(path) -> dict:
    """The ``metrics.json`` at ``path`` as a dict; a ``ValueError`` naming the file for one that is not a JSON object
    of at most :data:`MAX_JSON_BYTES` with a ``config`` object."""
    path = os.fspath(path)
    if os.path.getsize(path) > MAX_JSON_BYTES:
        raise ValueError(f"{path}: {os.path.getsize(path)} bytes, more than the {MAX_JSON_BYTES} a metrics.json may "
                         "have.")
    with open(path, "rb") as f:
        payload = _parse_json(f.read(), path)
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict):
        raise ValueError(f"{path}: not a run's metrics.json: expected a JSON object with a 'config' object.")
    return payload


def _keras_config(path: str) -> dict:
    """The ``config.json`` of the ``.keras`` file ``path``; ``ValueError`` for a file that is not a valid zip
    (truncated?) or lacks a readable ``config.json`` of at most :data:`MAX_JSON_BYTES`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such .keras file.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"not a valid .keras (zip) file: {path} (truncated?).")
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > MAX_JSON_BYTES:
                raise ValueError(f"{path}: its config.json has {info.file_size} bytes, more than the "
                                 f"{MAX_JSON_BYTES} lqs reads.")
            text = archive.read(info)
    except KeyError:
        raise ValueError(f"not a valid .keras file: {path} has no config.json.") from None
    except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as e:
        raise ValueError(f"not a valid .keras (zip) file: {path} (truncated?): {e}.") from None
    config = _parse_json(text, f"{path} (config.json)")
    if not isinstance(config, dict):
        raise ValueError(f"{path} (config.json): expected a JSON object, got a {type(config).__name__}.")
    return config


def _quantizer_class(node: dict):
    """The lqs quantizer class a serialized object names (``registered_name`` ``"lqs>NestedQuantizer"``), or None."""
    name = node.get("registered_name")
    cls = keras.saving.get_registered_object(name) if isinstance(name, str) and name.startswith("lqs>") else None
    return cls if isinstance(cls, type) and issubclass(cls, Quantizer) else None


def _check_quantizer_configs(node, path: str, layer: str = "?", key: str = "") -> None:
    """Every serialized lqs quantizer in a ``.keras`` config checked (:meth:`Quantizer.check_config`); the
    ``ValueError`` names the file, the layer and the quantizer."""
    if isinstance(node, list):
        for item in node:
            _check_quantizer_configs(item, path, layer, key)
        return
    if not isinstance(node, dict):
        return
    cls = _quantizer_class(node)
    if cls is not None:
        try:
            cls.check_config(node.get("config"))
        except ValueError as e:
            raise ValueError(f"{path}: layer {layer!r}, {key or 'quantizer'} ({cls.__name__}): {e}") from None
        return
    inner = node.get("config")
    if isinstance(inner, dict) and isinstance(inner.get("name"), str) and "class_name" in node:
        layer = inner["name"]
    for k, v in node.items():
        _check_quantizer_configs(v, path, layer, k if isinstance(v, dict) else key)


def _root_cause(error: BaseException) -> BaseException:
    """The first exception of the chain Keras' deserialization wraps (``__context__`` / ``__cause__``)."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or error.__context__
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def _check_loaded_weights(model, path: str) -> None:
    """Refuse NaN/inf: every float weight must be finite and every lqs quantizer's scale finite and > 0."""
    for w in model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(w))
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            bad = int((~np.isfinite(value)).sum())
            raise ValueError(f"{path}: weight {getattr(w, 'path', w.name)!r} has {bad} of {value.size} value(s) NaN "
                             "or inf; a weight must be finite (predictions would be NaN).")
    for _, layer, param, _, quantizer in quantized_params(model):
        problem = scale_problem(keras.ops.convert_to_numpy(quantizer.scale))
        if problem:
            raise ValueError(f"{path}: layer {layer.name!r}, the scale of {param!r}: {problem}.")


def load_model(path, **kwargs):
    """``keras.saving.load_model(path, **kwargs)`` for a ``.keras`` file of an lqs model, with lqs' checks and
    reasons: a file that is not a valid zip (truncated?), a quantizer config that cannot be (its exact reason, its
    layer; checked before Keras builds anything), any other deserialization error (its first cause, not Keras'
    wrapping of the whole config), and NaN/inf weights or scales that are not finite and > 0 (refused after
    loading, naming the layer and variable). Each raises one ``ValueError`` naming ``path``."""
    path = os.fspath(path)
    config = _keras_config(path)
    try:
        _check_quantizer_configs(config, path)
    except RecursionError:
        raise ValueError(f"{path} (config.json): nested too deeply to be a model's config.") from None
    try:
        model = keras.saving.load_model(path, **kwargs)
    except MemoryError:
        raise
    except Exception as e:
        cause = _root_cause(e)
        if cause is e:
            raise ValueError(f"{path}: {e}") from e
        raise ValueError(f"{path}: cannot be loaded: {type(cause).__name__}: {cause}") from e
    _check_loaded_weights(model, path)
    return model


def load_result(out_dir, load_model: bool = True) -> RunResult:
    """Read a run saved by :meth:`RunResult.save`. Raises ``FileNotFoundError`` for an incomplete run (no
    ``metrics.json``) and a ``ValueError`` naming the file for a corrupt one (:func:`read_metrics`,
    :func:`lqs_core.results.load_model`). ``load_model=False`` skips ``model.keras`` (``model`` is then ``None``)."""
    out_dir = os.fspath(out_dir)
    metrics_path = os.path.join(out_dir, METRICS_FILE)
    if not os.path.isfile(metrics_path):
        raise FileNotFoundError(f"{out_dir}: no {METRICS_FILE} — not a complete run.")
    payload = read_metrics(metrics_path)
    try:
        config = RunConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{metrics_path}: its 'config' is not a valid run configuration ({e}).") from None
    report = payload.get("report", {})
    if not isinstance(report, dict):
        raise ValueError(f"{metrics_path}: its 'report' is a {type(report).__name__}, expected an object.")
    report = {k: (float("nan") if v is None else v) for k, v in report.items()}
    history = _read_csv(os.path.join(out_dir, HISTORY_FILE))
    summary_path = os.path.join(out_dir, SUMMARY_FILE)
    summary = _read_csv(summary_path) if os.path.isfile(summary_path) else None
    model = None
    model_path = os.path.join(out_dir, MODEL_FILE)
    if load_model and os.path.isfile(model_path):
        model = _load_model(model_path)
    return RunResult(config=config, model=model, history=history, report=report, summary=summary)


def _read_csv(path: str) -> pd.DataFrame:
    """``pandas.read_csv(path)``; a parse error as a ``ValueError`` naming the file."""
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CSV table ({e}).") from None


_load_model = load_model  # load_result's argument `load_model` shadows the function


__all__ = ["MAX_JSON_BYTES", "RunResult", "is_complete", "load_model", "load_result", "read_metrics"]
