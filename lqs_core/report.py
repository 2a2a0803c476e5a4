"""The thesis' reported numbers beside ours: the tables of ``RESULTS.md``, rendered from a results table.

A report is a Markdown template with placeholders ``{{name}}``; :func:`report_values` computes every placeholder
from a profile's stored results (``results/<name>/results.csv`` and the runs' integer files) and the thesis'
numbers in :data:`THESIS` (read off the thesis' text and figures, and reference runs of the thesis author's
published layer). Nothing is trained. The workflow's ``report`` rule calls

    python -m lqs_core.report --config config/quick_cpu.yaml [--repo .] [--root .]

which renders the template named in the config's ``report`` section (a path inside the repository, ``--repo``) into
its ``output`` (a path inside the working directory, ``--root``). An unknown placeholder is an error, so the
template and the code cannot drift apart silently. A profile run on another Keras backend than TensorFlow
(``backend: jax``, ``snakemake --config backend=jax``) is read from ``results/<name>-<backend>/`` and its report
written there too (:func:`lqs_core.workflow.config.report_output`), with a note on top; the TensorFlow report (e.g.
``RESULTS.md``) is never overwritten by it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from typing import Dict, List, Mapping, Optional

from lqs_core import spec as lqs_spec
from lqs_core.workflow import aggregate, config as wfconfig, names, sweep, table

#: The thesis' "MB" are 2^20 bytes: its zipped float32 MNIST model, 0.36 MB, is our 377 9xx bytes / 2^20; CIFAR-10's
#: 1.02 MB is 1 066 xxx bytes / 2^20. The report uses the same unit (written MiB).
MB = 2.0 ** 20

#: The thesis' numbers (docs/method.md §4). ``text``: what the thesis says; ``reference``: runs of the thesis
#: author's published layer (TF 2.21 / Keras 3, real MNIST, Table 4.1 settings, row-wise, seed 42, 2-core CPU).
THESIS = {
    "mnist": {
        "float_accuracy": 0.9636,  # reference run, plain Dense
        "nested": {  # λ: (thesis text / figures, reference run (accuracy, unique, min, max))
            0.0: ("≈2·10⁴ unique integers", (0.9621, 20165, -18977, 17925)),
            1e-11: ("≈70 unique integers", (0.9620, 72, -37, 34)),
            1e-10: ("≈96 %, ≈20 unique (text: 24 unique, −12…11, 5 bits)", (0.9594, 20, -10, 9)),
            1e-9: ("≈93 %, ≈8 unique", (0.9296, 8, -4, 4)),
            1e-8: ("26–40 %, ≈4 unique", None),
        },
        "sizes": {  # (family, param): thesis zipped MB
            ("float", None): 0.36,
            ("nested", 1e-10): 0.05,
            ("difference", 1e-7): 0.03,
            ("maxbin", 1e-8): 0.04,
            ("inverse", 1e-9): 0.04,
        },
    },
    "cifar10": {
        "float_accuracy": 0.85,
        "nested": {  # λ: thesis accuracy (low, high), text
            1e-11: ((0.85, 0.85), "≈85 %; row-wise range −22…32"),
            1e-10: ((0.83, 0.83), "≈83 %"),
            1e-9: ((0.81, 0.81), "≈81 %"),
            1e-8: ((0.60, 0.69), "60–69 %"),
        },
        "sizes": {("float", None): 1.02, ("nested", 1e-11): 0.16},
    },
}

#: Full training-set sizes and the thesis' epochs, for the time estimate of the ``thesis`` profile.
THESIS_TRAINING = {"mnist": (60000, 20), "cifar10": (50000, 100), "imagenette": (9469, 100)}


#: Profiles whose training time the report estimates from the measured speed.
ESTIMATED_PROFILES = ("quick", "thesis")


class ReportError(ValueError):
    """A template placeholder without a value, or results that lack what the report needs."""


# ---------------------------------------------------------------------------------------------------------------
# Formatting


def _pct(x, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def _pm_pct(values) -> str:
    """``mean ± sd`` in % over seeds (sd with ddof 1; just the value for one seed)."""
    values = [float(v) for v in values]
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{100 * mean:.2f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{100 * mean:.2f} ± {100 * sd:.2f}"


def _per_seed(values, fmt="{:.0f}") -> str:
    return " / ".join(fmt.format(v) for v in values) if len(values) else "–"


def _mb(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x / MB:.3f}"


def _lam(x) -> str:
    return "float" if x is None else names.format_value(x)


# ---------------------------------------------------------------------------------------------------------------
# Selections


def _runs(results, dataset: str, family: str, granularity: Optional[str] = None, mode: Optional[str] = "qat"):
    """The runs of one sweep at the profile's own settings (no learning-rate or gradual variant, :func:`_plain`);
    ``granularity`` / ``mode`` ``None``: all of them."""
    df = results[(results["dataset"] == dataset) & (results["kind"] == "run") & (results["family"] == family)]
    df = _plain(df)
    if granularity is not None:
        df = df[df["granularity"] == granularity]
    if mode is not None and "mode" in df.columns:
        df = df[df["mode"] == mode]
    return df.sort_values("seed")


def _baselines(results, dataset: str):
    return results[(results["dataset"] == dataset) & (results["kind"] == "baseline")].sort_values("seed")


def _at(df, param: float):
    return df[[math.isclose(float(p), param, rel_tol=1e-9, abs_tol=0.0) for p in df["param"]]]


def history(results_dir: str, row):
    """The per-epoch history (DataFrame) of a results-table row."""
    import pandas as pd

    return pd.read_csv(os.path.join(results_dir, row["history"]))


def last_epochs_range(results_dir: str, rows, n: int = 5) -> str:
    """``lo–hi`` of the validation accuracy (%) over the last ``n`` epochs, over all seeds' runs in ``rows``."""
    values = []
    for _, row in rows.iterrows():
        if isinstance(row.get("history"), str):
            values.extend(history(results_dir, row)["val_accuracy"].tail(n))
    return f"{100 * min(values):.2f}–{100 * max(values):.2f}" if values else "–"


def _tensor_integers(results_dir: str, integers_path: str) -> list:
    """The integer tensors of a run's integer file, in the model's order."""
    from lqs_core.export import read_integers

    integers, _ = read_integers(os.path.join(results_dir, integers_path))
    return list(integers.values())


def per_tensor_unique(results_dir: str, integers_path: str) -> List[int]:
    """Unique integers of every quantized tensor of a run (in the model's order), from its integer file."""
    import numpy as np

    return [int(np.unique(q).size) for q in _tensor_integers(results_dir, integers_path)]


def per_tensor_range(results_dir: str, integers_path: str) -> List[int]:
    """``max |P_q|`` of every quantized tensor of a run (in the model's order), from its integer file."""
    import numpy as np

    return [int(np.abs(q).max()) if q.size else 0 for q in _tensor_integers(results_dir, integers_path)]


# ---------------------------------------------------------------------------------------------------------------
# Tables


def mnist_nested_table(results, results_dir: str, granularity: str = "rowwise"):
    """MNIST nested scheme per λ: thesis text, the reference run and ours (accuracy mean ± sd over seeds, unique
    integers and range per seed, unique per tensor W1, b1, W2, b2 of the first seed, zipped size)."""
    import pandas as pd

    ref = THESIS["mnist"]
    runs = _runs(results, "mnist", "nested", granularity)
    base = _baselines(results, "mnist")
    rows = [{
        "λ": "float (plain Dense)", "thesis": "≈96 % at λ ≤ 1e-10",
        "reference run: acc % · unique · range": f"{_pct(ref['float_accuracy'])} · – · –",
        "ours: val acc %": _pm_pct(base["val_accuracy"]),
        "ours: val acc, last 5 epochs": last_epochs_range(results_dir, base), "ours: unique (per seed)": "–",
        "ours: range (per seed)": "–", "ours: unique W1, b1, W2, b2": "–",
        "ours: zip MiB": _mb(base["float_zip_bytes"].mean()) if len(base) else "–",
    }]
    for lam in sorted(set(float(p) for p in runs["param"])):
        at = _at(runs, lam)
        text, refrun = ref["nested"].get(lam, ("–", None))
        ref_cell = "–" if refrun is None else f"{_pct(refrun[0])} · {refrun[1]} · {refrun[2]}…{refrun[3]}"
        first = at.iloc[0]
        tensors = per_tensor_unique(results_dir, first["integers"]) if isinstance(first["integers"], str) else []
        rows.append({
            "λ": _lam(lam), "thesis": text, "reference run: acc % · unique · range": ref_cell,
            "ours: val acc %": _pm_pct(at["val_accuracy"]),
            "ours: val acc, last 5 epochs": last_epochs_range(results_dir, at),
            "ours: unique (per seed)": _per_seed(list(at["unique_integers"])),
            "ours: range (per seed)": " / ".join(f"{int(a)}…{int(b)}" for a, b in zip(at["int_min"], at["int_max"])),
            "ours: unique W1, b1, W2, b2": ", ".join(map(str, tensors)) + f" (seed {int(first['seed'])})",
            "ours: zip MiB": _mb(at["zip_bytes"].mean()),
        })
    return pd.DataFrame(rows)


def sizes_table(results, dataset: str, granularity: str):
    """The thesis' zipped sizes against ours (zip of int8 ``.npy`` as the thesis, fixed-width packed, the
    entropy-coded integer file lqs writes, Huffman-coded integers alone), with accuracy; factors relative to our
    zipped float32 model (zip) and to float32 (file)."""
    import pandas as pd

    ref = THESIS[dataset]["sizes"]
    base = _baselines(results, dataset)
    float_zip = float(base["float_zip_bytes"].mean()) if len(base) else float("nan")
    rows = []
    for (family, param), thesis_mb in ref.items():
        if family == "float":
            at, setting = base, "float32"
            float32 = float(base["float32_bytes"].mean()) if len(base) else float("nan")
            sizes = {"zip": float_zip, "packed": float32, "entropy": float32, "huffman": float("nan")}
        else:
            at = _at(_runs(results, dataset, family, granularity), param)
            setting = (f"{names.family_title(family).split(' (')[0]}, {granularity}, "
                       f"{names.param_symbol(family)}={_lam(param)}")
            sizes = {k: float(at[f"{k}_bytes"].mean()) if len(at) and f"{k}_bytes" in at.columns else float("nan")
                     for k in ("zip", "packed", "entropy", "huffman")}
            float32 = float(at["float32_bytes"].mean()) if len(at) else float("nan")
        thesis_factor = ref[("float", None)] / thesis_mb
        rows.append({
            "setting": setting, "thesis zip MB (×)": f"{thesis_mb:.2f} ({thesis_factor:.1f}×)",
            "ours zip MiB (×)": "–" if not len(at) else f"{_mb(sizes['zip'])} ({float_zip / sizes['zip']:.1f}×)",
            "ours packed MiB": _mb(sizes["packed"]),
            "ours file MiB (×)": "–" if not len(at) or math.isnan(sizes["entropy"])
            else f"{_mb(sizes['entropy'])} ({float32 / sizes['entropy']:.1f}×)",
            "ours Huffman MiB": _mb(sizes["huffman"]),
            "ours val acc %": _pm_pct(at["val_accuracy"]) if len(at) else "not run", "seeds": len(at),
        })
    return pd.DataFrame(rows)


def cifar_nested_table(results, results_dir: Optional[str] = None, granularity: str = "channelwise"):
    """CIFAR-10 nested scheme per λ: the thesis' accuracy and its drop from the float baseline beside ours."""
    import pandas as pd

    ref = THESIS["cifar10"]
    runs = _runs(results, "cifar10", "nested", granularity)
    base = _baselines(results, "cifar10")
    ours_float = float(base["val_accuracy"].mean()) if len(base) else float("nan")
    rows = [{"λ": "float", "thesis val acc %": f"≈{_pct(ref['float_accuracy'], 0)}", "thesis drop (points)": "–",
             "ours val acc %": _pm_pct(base["val_accuracy"]), "ours drop (points)": "–",
             "ours unique, epoch 1 → last": "–", "ours range": "–",
             "ours zip MiB": _mb(base["float_zip_bytes"].mean())}]
    for lam in sorted(set(float(p) for p in runs["param"])):
        at = _at(runs, lam)
        thesis = ref["nested"].get(lam)
        if thesis is None:
            t_acc, t_drop = "–", "–"
        else:
            (lo, hi), text = thesis
            t_acc = text
            d_lo, d_hi = 100 * (ref["float_accuracy"] - hi), 100 * (ref["float_accuracy"] - lo)
            t_drop = f"{d_lo:.0f}" if math.isclose(d_lo, d_hi) else f"{d_lo:.0f}–{d_hi:.0f}"
        acc = float(at["val_accuracy"].mean())
        rows.append({
            "λ": _lam(lam), "thesis val acc %": t_acc, "thesis drop (points)": t_drop,
            "ours val acc %": _pm_pct(at["val_accuracy"]), "ours drop (points)": f"{100 * (ours_float - acc):.1f}",
            "ours unique, epoch 1 → last": " / ".join(_unique_trend(results_dir, row) for _, row in at.iterrows()),
            "ours range": " / ".join(f"{int(a)}…{int(b)}" for a, b in zip(at["int_min"], at["int_max"])),
            "ours zip MiB": _mb(at["zip_bytes"].mean()),
        })
    return pd.DataFrame(rows)


def _unique_trend(results_dir: Optional[str], row) -> str:
    """``first → last`` unique integers over the epochs of a run (just the final count without its history)."""
    if results_dir is None or not isinstance(row.get("history"), str):
        return f"{row['unique_integers']:.0f}"
    h = history(results_dir, row)
    return f"{h['unique_integers'].iloc[0]:.0f} → {h['unique_integers'].iloc[-1]:.0f}"


def comparison_table(results, dataset: str):
    """Every method of ``dataset`` on the same numbers (accuracy, file and packed size, bits per weight): the workflow's
    comparison settings, formatted like its Pareto table, with a column marking the Pareto-optimal settings."""
    settings = aggregate.comparison_settings(results, dataset)
    optimal = aggregate.pareto_mask(settings["val_accuracy_mean"], settings[f"{aggregate.MODEL_SIZE}_mean"])
    display = aggregate.pareto_points_display(settings)
    display.insert(len(display.columns), "unique ints", ["–" if math.isnan(v) else f"{v:.0f}"
                                                               for v in settings["unique_integers_mean"]])
    display.insert(len(display.columns), "Pareto-optimal", ["yes" if o else "" for o in optimal])
    return display


def profile_image_epochs(config: Mapping) -> Dict[str, tuple]:
    """``{dataset: (trained runs, training images × epochs summed over them)}`` of a profile (``ptq`` comparator
    runs train nothing; unset epochs / subsets are the thesis' Table 4.1 values and the full training sets)."""
    out: Dict[str, tuple] = {}
    for run in sweep.expand_runs(config):
        if run.family == "ptq":
            continue
        full, thesis_epochs = THESIS_TRAINING.get(run.dataset, (0, 0))
        n = min(run.config.get("max_train") or full, full) if full else run.config.get("max_train") or 0
        runs, image_epochs = out.get(run.dataset, (0, 0))
        out[run.dataset] = (runs + 1, image_epochs + n * (run.config.get("epochs") or thesis_epochs))
    return out


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    return "–" if not seconds else f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.0f} days"


def timing_table(results, profiles: Optional[Mapping[str, Mapping]] = None):
    """Measured training time per dataset (the runs' ``train_seconds``: fitting and evaluation, without process
    start-up), and the time each of ``profiles`` (``{name: config}``) would take at the same speed per training
    image and epoch (a rough estimate: validation and network size differences are ignored)."""
    import pandas as pd

    sizes = {name: profile_image_epochs(cfg) for name, cfg in (profiles or {}).items()}
    rows = []
    for dataset in (d for d in lqs_spec.DATASETS if d in set(results["dataset"])):
        df = results[(results["dataset"] == dataset) & (results["family"] != "ptq")]
        trained = df[df["train_seconds"] > 0]
        image_epochs = (trained["n_train"] * trained["epochs"]).astype(float)
        per_image_epoch = float((trained["train_seconds"] / image_epochs).median())
        row = {
            "dataset": dataset, "trained runs": len(trained),
            "training images × epochs per run": " / ".join(sorted({f"{int(a)} × {int(b)}" for a, b in
                                                                    zip(trained["n_train"], trained["epochs"])})),
            "total training time (h)": f"{trained['train_seconds'].sum() / 3600:.2f}",
            "median per run (min)": f"{trained['train_seconds'].median() / 60:.1f}",
            "ms per image-epoch (median)": f"{1000 * per_image_epoch:.3f}",
        }
        for name, per_dataset in sizes.items():
            runs, total = per_dataset.get(dataset, (0, 0))
            row[f"{name}: trained runs"] = runs
            row[f"{name} at this speed (1 CPU thread)"] = _duration(total * per_image_epoch)
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# The complete MNIST profile (config/mnist.yaml): every granularity × mode, gradual quantization, equal bytes


def _cell(rows) -> str:
    """``acc ± sd · unique`` of a setting's runs (accuracy in %, median unique integers, seeds in brackets)."""
    if not len(rows):
        return "–"
    unique = float(rows["unique_integers"].median())
    return f"{_pm_pct(rows['val_accuracy'])} · {unique:.0f} ({len(rows)})"


def _plain(df):
    """Rows without a variant (the profile's learning rate, quantization from the start)."""
    if "variant" not in df.columns:
        return df
    return df[df["variant"].isna() | (df["variant"].astype(str) == "")]


def tensor_range_table(results, results_dir: str, dataset: str, family: str = "nested", min_param: float = 1e-10):
    """The thesis' "b2 compensates" check: per λ ≥ ``min_param`` and granularity × mode, ``max |P_q|`` of every
    tensor (W1, b1, W2, b2: the model's order), median over seeds, and the whole model's (the largest)."""
    import numpy as np
    import pandas as pd

    df = _runs(results, dataset, family, mode=None)
    df = df[(pd.to_numeric(df["param"], errors="coerce") >= min_param) & df["integers"].notna()]
    columns = [(g, m) for g in aggregate.present_granularities(df) for m in aggregate.present_modes(df)]
    rows = []
    for param in sorted(set(float(p) for p in df["param"])):
        row = {"λ": _lam(param)}
        for g, m in columns:
            at = _at(df[(df["granularity"] == g) & (df["mode"] == m)], param)
            if at.empty:
                row[f"{g} {m.upper()}"] = "–"
                continue
            ranges = np.array([per_tensor_range(results_dir, path) for path in at["integers"]])
            median = [int(v) for v in np.median(ranges, axis=0)]
            row[f"{g} {m.upper()}"] = " / ".join(map(str, median)) + f" ({len(at)})"
        rows.append(row)
    return pd.DataFrame(rows)


def grid_table(results, dataset: str, family: str):
    """One sweep over every granularity × mode: per λ/γ, ``val acc % (mean ± sd) · median unique integers (seeds)``."""
    import pandas as pd

    df = _plain(results[(results["dataset"] == dataset) & (results["kind"] == "run") & (results["family"] == family)])
    if df.empty:
        return pd.DataFrame([{names.param_symbol(family): "no finished runs yet"}])
    columns = [(g, m) for g in aggregate.present_granularities(df) for m in aggregate.present_modes(df)]
    rows = []
    for param in sorted(set(float(p) for p in df["param"])):
        at = _at(df, param)
        row = {names.param_symbol(family): _lam(param)}
        for g, m in columns:
            row[f"{g} {m.upper()}"] = _cell(at[(at["granularity"] == g) & (at["mode"] == m)])
        rows.append(row)
    return pd.DataFrame(rows)


def operating_points_table(results, dataset: str, family: str = "nested", tolerance: float = 0.01,
                           size: str = "zip_bytes"):
    """Per granularity × mode: the most compressed λ/γ whose mean accuracy is within ``tolerance`` of the float
    baseline (:func:`lqs_core.workflow.aggregate.select_operating_point`) — the thesis' "optimal λ"."""
    import pandas as pd

    df = _plain(results[(results["dataset"] == dataset) & (results["kind"] == "run") & (results["family"] == family)])
    base = aggregate.baseline_accuracy(results, dataset)
    rows = []
    for g in aggregate.present_granularities(df):
        for m in aggregate.present_modes(df):
            part = df[(df["granularity"] == g) & (df["mode"] == m)]
            if part.empty:
                continue
            agg = aggregate.aggregate_seeds(part, ["param"], ["val_accuracy", "unique_integers", size])
            row, ok = aggregate.select_operating_point(agg, base, tolerance, size=size)
            rows.append({"granularity": g, "mode": m.upper(), f"optimal {names.param_symbol(family)}": _lam(row["param"]),
                         "within tolerance": "yes" if ok else "no (most accurate shown)",
                         "val acc %": f"{100 * row['val_accuracy_mean']:.2f} ± {100 * row['val_accuracy_std']:.2f}",
                         "unique": f"{row['unique_integers_mean']:.0f}", "zip MiB": _mb(row[f"{size}_mean"]),
                         "λ values run": int(len(agg)), "seeds": int(row["n_seeds"])})
    if not rows:
        return pd.DataFrame([{"granularity": "no finished runs yet"}])
    return pd.DataFrame(rows)


def gradual_table(results, dataset: str):
    """Gradual quantization: per λ, accuracy and unique integers when the scales start learning at epoch k
    (k = 0: the QAT run from the start; PTQ: quantization switched on in the trained float baseline)."""
    import pandas as pd

    df = results[(results["dataset"] == dataset) & (results["kind"] == "run") & (results["family"] == "nested")]
    if "scale_from_epoch" not in df.columns:
        return pd.DataFrame([{"λ": "no gradual-quantization runs yet"}])
    grad = df[df["variant"].astype(str).str.startswith("from")]
    if grad.empty:
        return pd.DataFrame([{"λ": "no gradual-quantization runs yet"}])
    gran = sorted(set(grad["granularity"]))[0]
    plain = _plain(df[df["granularity"] == gran])
    starts = sorted(set(int(k) for k in grad["scale_from_epoch"]))
    rows = []
    for param in sorted(set(float(p) for p in grad["param"])):
        row = {"λ": _lam(param), "granularity": gran}
        row["k = 0 (QAT)"] = _cell(_at(plain[plain["mode"] == "qat"], param))
        for k in starts:
            at = _at(grad[(grad["granularity"] == gran) & (grad["scale_from_epoch"] == k)], param)
            row[f"k = {k}"] = _cell(at)
        row["PTQ (from float)"] = _cell(_at(plain[plain["mode"] == "ptq"], param))
        rows.append(row)
    return pd.DataFrame(rows)


#: Size budgets of the equal-bytes comparison (bytes of the entropy-coded integer file, :data:`aggregate.MODEL_SIZE`).
EQUAL_BYTES = (20_000, 30_000, 50_000, 70_000, 110_000)


def equal_bytes_table(results, dataset: str, size: str = aggregate.MODEL_SIZE, budgets=EQUAL_BYTES):
    """Every method at equal bytes: per method, the best mean accuracy among its settings of at most each budget
    (settings at their better learning rate, :func:`lqs_core.workflow.aggregate.comparison_settings`)."""
    import pandas as pd

    settings = aggregate.comparison_settings(results, dataset)
    settings = settings[settings["method"] != "float"]
    rows = []
    for method in sorted(settings["method"].unique(), key=names.method_order):
        own = settings[settings["method"] == method]
        row = {"method": names.METHOD_NAMES.get(method, method)}
        for budget in budgets:
            fit = own[own[f"{size}_mean"] <= budget]
            if fit.empty:
                row[f"≤ {budget / 1000:.0f} kB"] = "–"
                continue
            best = fit.sort_values(["val_accuracy_mean", f"{size}_mean"], ascending=[False, True]).iloc[0]
            row[f"≤ {budget / 1000:.0f} kB"] = f"{100 * best['val_accuracy_mean']:.2f} ({best['setting']})"
        rows.append(row)
    return pd.DataFrame(rows)


def parts_table(results):
    """How long each part of a profile took: finished runs and summed training time (the runs' ``train_seconds``,
    one CPU thread each) per part."""
    import pandas as pd

    def part(row) -> str:
        variant = str(row.get("variant") or "") if isinstance(row.get("variant"), str) else ""
        if row["kind"] == "baseline":
            return "float baselines"
        if row["family"] == "nested":
            if variant.startswith("from"):
                return "gradual quantization"
            return f"nested, {row['mode'].upper()}" + (f" ({variant})" if variant else "")
        if row["family"] in lqs_spec.TERMS:
            return "loss terms"
        return f"comparator {names.METHOD_NAMES.get(row['family'], row['family'])}"

    df = results.copy()
    df["part"] = [part(r) for _, r in df.iterrows()]
    rows = []
    for name, group in df.groupby("part", sort=False):
        seconds = pd.to_numeric(group["train_seconds"], errors="coerce").fillna(0.0)
        rows.append({"part": name, "finished runs": len(group), "training time (h, summed)": f"{seconds.sum() / 3600:.2f}",
                     "median per run (s)": f"{seconds.median():.0f}"})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# Values and rendering


def report_values(results, results_dir: str, profiles: Optional[Mapping[str, Mapping]] = None) -> Dict[str, str]:
    """Every placeholder of the report: Markdown tables (``*_table``) and single numbers; ``profiles`` are the
    profiles whose training time is estimated (see :func:`timing_table`)."""
    values: Dict[str, str] = {}
    datasets = set(results["dataset"])
    if "mnist" in datasets:
        values["mnist_nested_table"] = aggregate.to_markdown(mnist_nested_table(results, results_dir))
        values["mnist_sizes_table"] = aggregate.to_markdown(sizes_table(results, "mnist", "rowwise"))
        values["mnist_comparison_table"] = aggregate.to_markdown(comparison_table(results, "mnist"))
        for family in ("nested",) + lqs_spec.TERMS[:3]:
            values[f"mnist_grid_{family}"] = aggregate.to_markdown(grid_table(results, "mnist", family))
        values["mnist_operating_points"] = aggregate.to_markdown(operating_points_table(results, "mnist"))
        values["mnist_gradual_table"] = aggregate.to_markdown(gradual_table(results, "mnist"))
        if results_dir is not None and "integers" in results.columns:
            values["mnist_tensor_ranges"] = aggregate.to_markdown(tensor_range_table(results, results_dir, "mnist"))
        values["mnist_equal_bytes"] = aggregate.to_markdown(equal_bytes_table(results, "mnist"))
    if "cifar10" in datasets:
        values["cifar10_nested_table"] = aggregate.to_markdown(cifar_nested_table(results, results_dir))
        values["cifar10_sizes_table"] = aggregate.to_markdown(sizes_table(results, "cifar10", "channelwise"))
        values["cifar10_comparison_table"] = aggregate.to_markdown(comparison_table(results, "cifar10"))
    values["timing_table"] = aggregate.to_markdown(timing_table(results, profiles))
    values["parts_table"] = aggregate.to_markdown(parts_table(results))
    values["n_runs"] = str(len(results))
    return values


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every ``{{name}}`` replaced by ``values[name]`` (str); an unknown name raises
    :class:`ReportError` naming it and the names available."""
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(template)} - set(values))
    if missing:
        raise ReportError(f"The report template uses placeholders without a value: {missing}; "
                          f"available: {sorted(values)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]).rstrip("\n"), template)


def write_report(config: Mapping, root: str = ".", repo=None) -> str:
    """Render the template of ``config["report"]`` (a path inside the repository ``repo``, default this checkout)
    from ``<root>/results/<output name>/`` and write it atomically to ``<root>/<output>``; returns that path. The
    output name is the profile's ``name``, ``<name>-<backend>`` for runs on another Keras backend, whose report goes
    into that results folder (:func:`lqs_core.workflow.config.output_name`, :func:`~lqs_core.workflow.config.
    report_output`). Besides :func:`report_values` the template may use ``{{backend}}``, ``{{results_dir}}`` and
    ``{{figures_dir}}``. The time estimates are for the profiles :data:`ESTIMATED_PROFILES`
    (``<repo>/config/<name>.yaml``)."""
    spec = config.get("report")
    if not spec:
        raise ReportError(f"The config '{config.get('name')}' has no 'report' section (template, output).")
    repo = str(table.REPO_ROOT if repo is None else repo)
    for key, base, example in wfconfig.REPORT_PATHS:
        problem = wfconfig.path_problem(f"report.{key}", spec.get(key), base, example)
        if problem:
            raise ReportError(problem)
    name = wfconfig.output_name(config)
    results_dir = os.path.join(root, "results", name)
    results = table.read_results(results_dir)
    config_dir = os.path.join(repo, "config")
    profiles = {name: wfconfig.load_config(os.path.join(config_dir, f"{name}.yaml")) for name in ESTIMATED_PROFILES
                if os.path.exists(os.path.join(config_dir, f"{name}.yaml"))}
    with open(os.path.join(repo, spec["template"]), encoding="utf-8") as f:
        template = f.read()
    values = report_values(results, results_dir, profiles)
    backends = table.backends(results)
    values.update(backend=", ".join(backends), results_dir=f"results/{name}", figures_dir=f"figures/{name}",
                  n_planned=str(len(sweep.expand_runs(config))))
    text = render(template, values)
    if name != config["name"]:  # the template's words may be the TensorFlow profile's: a note under the title
        note = (f"> Rendered from `results/{name}/` (Keras backend: {', '.join(backends)}), figures in "
                f"`figures/{name}/`; where the text below names `results/{config['name']}/` or "
                f"`figures/{config['name']}/`, those are the TensorFlow runs of the same profile.\n\n")
        title, sep, rest = text.partition("\n\n") if text.startswith("#") else ("", "", text)
        text = f"{title}{sep}{note}{rest}"
    return table.write_text_atomic(os.path.join(root, wfconfig.report_output(config)), text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Render a profile's report (e.g. RESULTS.md) from its results.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="the profile, e.g. config/quick_cpu.yaml")
    source.add_argument("--config-json", help="the profile as JSON (the workflow's report rule passes it so)")
    parser.add_argument("--root", default=".", help="working directory of the workflow (results/, the output)")
    parser.add_argument("--repo", default=None, help="the repository: the template, config/ (default: this checkout)")
    args = parser.parse_args(argv)
    if args.config:
        config = wfconfig.load_config(args.config)
    else:
        config = wfconfig.validate_config(json.loads(args.config_json), source="--config-json")
    print(write_report(config, args.root, args.repo))


if __name__ == "__main__":
    main()
