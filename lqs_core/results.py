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
from dataclasses import dataclass
from typing import Any, Dict, Optional

import keras
import numpy as np
import pandas as pd

from lqs_core import __version__, export, provenance
from lqs_core.atomic import atomic_path, remove_stale, write_text
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


def load_result(out_dir, load_model: bool = True) -> RunResult:
    """Read a run saved by :meth:`RunResult.save`. Raises ``FileNotFoundError`` for an incomplete run (no
    ``metrics.json``). ``load_model=False`` skips ``model.keras`` (``model`` is then ``None``)."""
    out_dir = os.fspath(out_dir)
    metrics_path = os.path.join(out_dir, METRICS_FILE)
    if not os.path.isfile(metrics_path):
        raise FileNotFoundError(f"{out_dir}: no {METRICS_FILE} — not a complete run.")
    with open(metrics_path, encoding="utf-8") as f:
        payload = json.load(f)
    config = RunConfig.from_dict(payload["config"])
    report = {k: (float("nan") if v is None else v) for k, v in payload.get("report", {}).items()}
    history = pd.read_csv(os.path.join(out_dir, HISTORY_FILE))
    summary_path = os.path.join(out_dir, SUMMARY_FILE)
    summary = pd.read_csv(summary_path) if os.path.isfile(summary_path) else None
    model = None
    model_path = os.path.join(out_dir, MODEL_FILE)
    if load_model and os.path.isfile(model_path):
        model = keras.saving.load_model(model_path)
    return RunResult(config=config, model=model, history=history, report=report, summary=summary)


__all__ = ["RunResult", "is_complete", "load_result"]
