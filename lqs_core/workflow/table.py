"""The results table: one tidy row per finished run, written by the workflow's ``results`` rule.

:func:`collect_results` reads every finished run of a sweep (``metrics.json``: the resolved ``RunConfig`` and the
final report) into a DataFrame; :func:`write_table` writes it byte-identically; :func:`read_results` is how the
figure notebooks and the report read it back, :func:`load_histories` the per-epoch curves of its runs. The table is
the figures' only input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

from lqs_core import atomic, intfile, spec
from lqs_core.workflow import names

#: The checkout this package lives in (an editable install): the notebooks' default results/figures folders.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Columns of the results table that describe the run (the final metrics follow).
ID_COLUMNS = ["run_id", "kind", "dataset", "scheme", "method", "family", "granularity", "mode", "seed", "param",
              "variant", "threshold", "term", "gamma"]
#: Metrics every figure needs, in the order they come after the configuration columns.
METRIC_COLUMNS = ["val_accuracy", "val_loss", "accuracy", "loss", "unique_integers", "int_range", "int_min",
                  "int_max", "bits_unique", "bits_fixed", "zip_bytes", "float_zip_bytes", "packed_bytes",
                  "entropy_bytes", "huffman_bytes", "float32_bytes", "zip_ratio", "packed_ratio"]
PATH_COLUMNS = ["history", "integers"]
#: The Keras backend that computed a run (``metrics.json["machine"]["backend"]``; runs stored before it was recorded
#: are TensorFlow's). A column of the table only where a run of it is not TensorFlow's: the tables of TensorFlow
#: profiles (``results/demo``, ``results/quick_cpu``) stay as they were, byte for byte.
BACKEND_COLUMN = "backend"
DEFAULT_BACKEND = "tensorflow"


def profile_dirs(profile: str, results_dir: str = "", figures_dir: str = "") -> Tuple[str, str]:
    """``(results_dir, figures_dir)`` of a figure notebook: the given folders, else ``results/<profile>`` and
    ``figures/<profile>`` of this checkout (a notebook run on its own)."""
    return (results_dir or os.path.join(REPO_ROOT, "results", profile),
            figures_dir or os.path.join(REPO_ROOT, "figures", profile))


def _cell(v):
    """A table cell: scalars as they are, lists/dicts as compact JSON text."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def run_backend(metrics) -> str:
    """The Keras backend a run was computed on, from its ``metrics.json`` (a dict): ``machine.backend`` as
    :func:`lqs_core.provenance.record` wrote it, else ``tensorflow`` (runs stored before the backend was recorded)."""
    machine = metrics.get("machine") if isinstance(metrics, Mapping) else None
    backend = machine.get("backend") if isinstance(machine, Mapping) else None
    return str(backend) if backend else DEFAULT_BACKEND


def result_row(run, run_dir: str, results_dir: str) -> dict:
    """One row of the results table for a finished run (a :class:`lqs_core.workflow.sweep.Run`).

    The run's identity (:data:`ID_COLUMNS`; ``granularity``/``mode``/``param`` empty for the float baseline),
    the Keras backend that computed it (:data:`BACKEND_COLUMN`, see :func:`run_backend`),
    every field of its resolved ``RunConfig`` (``metrics.json["config"]``; ``terms`` as ``term``/``gamma``,
    ``lr_schedule`` as JSON text; ``float_weights``, ``data_dir`` and ``tensorboard_dir`` left out since they
    are machine paths), every number of its final report (``metrics.json["report"]``), and the paths of its
    history and integer files relative to the results folder.

    ``entropy_bytes`` (the size of the run's entropy-coded integer file, the comparison's model size) of a run
    stored before reports had it is measured from its integer file (:func:`lqs_core.intfile.recoded_size`: the
    same number :func:`lqs_core.metrics.entropy_bytes` gives for its model today).
    """
    with open(os.path.join(run_dir, spec.METRICS_FILE), encoding="utf-8") as f:
        metrics = json.load(f)
    cfg = run.config
    loss_terms = cfg["scheme"] == "loss_terms"
    row = {
        "run_id": run.run_id,
        "kind": run.kind,
        "dataset": run.dataset,
        "scheme": cfg["scheme"],
        "method": run.family,
        "family": run.family,
        "granularity": run.granularity,
        "mode": run.mode,
        "seed": run.seed,
        "param": run.param,
        "variant": run.variant,
        "threshold": run.param if cfg["scheme"] == "nested" and run.family == "nested" else None,
        "term": run.family if loss_terms else None,
        "gamma": run.param if loss_terms else None,
        BACKEND_COLUMN: run_backend(metrics),
    }
    for key, value in (metrics.get("report") or {}).items():
        row.setdefault(key, _cell(value))
    for key, value in (metrics.get("config") or {}).items():
        if key in ("terms", "float_weights", "data_dir", "tensorboard_dir") or key in row:
            continue
        row[key] = _cell(value)
    rel = os.path.relpath(run_dir, results_dir)
    files = metrics.get("files") or {}
    for col, default in (("history", spec.HISTORY_FILE), ("integers", spec.INTEGERS_FILE)):
        name = files.get(col, default)
        row[col] = Path(rel, name).as_posix() if os.path.exists(os.path.join(run_dir, name)) else None
    if row.get("entropy_bytes") is None and row["integers"]:
        row["entropy_bytes"] = intfile.recoded_size(os.path.join(results_dir, row["integers"]))
    return row


def collect_results(runs: Sequence, results_dir: str, missing_ok: bool = False):
    """The tidy results table (a DataFrame): one row per finished run, sorted by kind and run id.

    Columns: :data:`ID_COLUMNS`, then ``backend`` where a run is not TensorFlow's (:data:`BACKEND_COLUMN`), then
    :data:`METRIC_COLUMNS` (where present), then the other configuration fields and report numbers in alphabetical
    order, then the relative paths of the run's history and integer files (see :func:`result_row`). A run without
    ``metrics.json`` raises unless ``missing_ok``.
    """
    import pandas as pd

    rows = []
    for run in runs:
        run_dir = run.directory(results_dir)
        if not os.path.exists(os.path.join(run_dir, spec.METRICS_FILE)):
            if missing_ok:
                continue
            raise FileNotFoundError(f"Run {run.run_id} has no {spec.METRICS_FILE} in {run_dir}.")
        rows.append(result_row(run, run_dir, results_dir))
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=ID_COLUMNS + METRIC_COLUMNS + PATH_COLUMNS)
    backend = [BACKEND_COLUMN] if (df[BACKEND_COLUMN] != DEFAULT_BACKEND).any() else []
    fixed = ID_COLUMNS + [BACKEND_COLUMN] + METRIC_COLUMNS + PATH_COLUMNS
    rest = sorted(c for c in df.columns if c not in fixed)
    cols = ID_COLUMNS + backend + [c for c in METRIC_COLUMNS if c in df.columns] + rest + PATH_COLUMNS
    df = df.reindex(columns=cols)
    df["_k"] = (df["kind"] != "baseline").astype(int)
    return df.sort_values(["_k", "run_id"], kind="mergesort").drop(columns="_k").reset_index(drop=True)


def write_text_atomic(path, text: str) -> str:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    return atomic.write_text(path, text)


def write_table(df, path) -> str:
    """Write ``df`` as CSV atomically (temporary file + rename); byte-identical for the same table."""
    return write_text_atomic(path, df.to_csv(index=False, lineterminator="\n"))


def read_results(results_dir):
    """The results table ``<results_dir>/results.csv`` (``kind`` ``baseline`` rows are the float runs; a table
    without a ``backend`` column is TensorFlow's, see :func:`backends`)."""
    import pandas as pd

    path = os.path.join(str(results_dir), "results.csv")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No results table at {path}. Run the workflow first (snakemake --cores N), or point results_dir at "
            "a profile's results folder (results/<name>/)."
        )
    return pd.read_csv(path)


def backends(results) -> List[str]:
    """The Keras backends of a results table's runs (``["tensorflow"]`` for a table without a ``backend`` column)."""
    if BACKEND_COLUMN not in results.columns:
        return [DEFAULT_BACKEND] if len(results) else []
    return sorted(set(results[BACKEND_COLUMN].fillna(DEFAULT_BACKEND).astype(str)))


def load_histories(results, results_dir):
    """Per-epoch history of every run of ``results`` with a history file, joined with the run's columns.

    Returns a long DataFrame with the run columns (``run_id``, ``kind``, ``dataset``, ``family``,
    ``granularity``, ``mode``, ``seed``, ``param``) and the history's columns (``epoch``, ``val_accuracy``, ...).
    The untrained comparator runs (``ptq``, ``keras_quantize``: quantized and evaluated, one row at epoch 0) are
    left out.
    """
    import pandas as pd

    keep = ["run_id", "kind", "dataset", "family", "granularity", "mode", "seed", "param", "variant"]
    frames = []
    for row in results.sort_values("run_id").itertuples(index=False):
        if getattr(row, "family") in ("ptq", "keras_quantize"):
            continue
        rel = getattr(row, "history")
        if not isinstance(rel, str) or not rel:
            continue
        h = pd.read_csv(os.path.join(str(results_dir), rel))
        if "epoch" not in h.columns:
            h.insert(0, "epoch", range(1, len(h) + 1))
        for col in keep:
            h[col] = getattr(row, col)
        frames.append(h)
    if not frames:
        return pd.DataFrame(columns=keep + ["epoch"])
    return pd.concat(frames, ignore_index=True)


def thesis_runs(results):
    """The quantized runs of the thesis' schemes (nested, loss terms): no comparators."""
    runs = results[(results["kind"] == "run") & ~results["family"].isin(spec.COMPARATORS)]
    if "variant" in runs.columns:  # the thesis' settings only: no other learning rate, no gradual quantization
        runs = runs[runs["variant"].isna() | (runs["variant"].astype(str) == "")]
    return runs


def result_families(results) -> List[tuple]:
    """``[(dataset, family), ...]`` of the thesis' sweeps present in a results table (as
    :func:`lqs_core.workflow.sweep.sweep_families` for a profile)."""
    runs = thesis_runs(results)
    found = {(d, f) for d, f in zip(runs["dataset"], runs["family"])}
    return sorted(found, key=lambda t: (spec.DATASETS.index(t[0]), names.family_order(t[1])))


def curve_keys(results, modes: Optional[Sequence[str]] = None) -> List[tuple]:
    """``[(dataset, family, mode), ...]`` of a results table that get a curves figure (as
    :func:`lqs_core.workflow.sweep.curve_modes`)."""
    runs = thesis_runs(results)
    found = {(d, f, m) for d, f, m in zip(runs["dataset"], runs["family"], runs["mode"])}
    keys = sorted(found, key=lambda t: (spec.DATASETS.index(t[0]), names.family_order(t[1]), spec.MODES.index(t[2])))
    return [k for k in keys if modes is None or k[2] in modes]
