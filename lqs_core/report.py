"""The thesis' reported numbers beside ours: the tables of ``RESULTS.md``, rendered from a results table.

A report is a Markdown template with placeholders ``{{name}}``; :func:`report_values` computes every placeholder
from a profile's stored results (``results/<name>/results.csv`` and the runs' integer files) and the thesis'
numbers in :data:`THESIS` (each with its source, :data:`THESIS_DOCS`: the thesis draft's or the finished thesis'
text, tables and figures, and reference runs of the thesis author's published layer). Every number of ours the
prose quotes is a placeholder too — ``{{s.<dataset>.<setting>.<metric>}}`` (:func:`setting_values`) or
``{{q.<dataset>.<name>}}`` (:func:`quote_values`) —, so the text cannot drift from the tables;
tests/test_report_numbers.py recomputes them. Nothing is trained. The workflow's ``report`` rule calls

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

#: The two versions of the thesis the numbers come from, and the run that stands beside them:
#:
#: * ``draft``: the thesis draft (not part of this repository): its text and figure captions, but no numbers read off
#:   figures; its Table 4.1 has 100 MNIST epochs and lr 1e-3 for Imagenette, and its text points at figures five
#:   numbers after the captions it means (text "Figure 4.6" for caption 4.1, 4.7 → 4.3, 4.8 → 4.2, 4.9/4.10 →
#:   4.4/4.5).
#: * ``finished``: the finished thesis, whose LaTeX source and figure files are in its author's published
#:   repository (github.com/anuunchin/learned-quantization, ``thesis/``, Jan 2025; figure numbers from its
#:   ``thesis.aux``). Its Table 4.1 (MNIST 20 epochs; Imagenette lr 1e-4 ×0.5 at epoch 40, ×0.2 at 60, as in the
#:   published ``IMAGENETTE/*/experiment.py``) is what the reproduction follows; "read off" numbers are read off its
#:   figures (seed 42 curves, or the Pareto fronts).
#: * ``reference``: runs of the thesis author's published layer (TF 2.21 / Keras 3, real MNIST, Table 4.1 settings,
#:   row-wise, seed 42, 2-core CPU), made for this project.
THESIS_DOCS = {
    "draft": "thesis draft",
    "finished": "finished thesis (LaTeX source in the author's published repository, thesis/)",
    "reference": "reference run of the thesis author's published layer (TF 2.21 / Keras 3, row-wise, seed 42)",
}

#: The thesis' numbers and where each comes from (:data:`THESIS_DOCS`). MNIST ``nested``: λ → (what the thesis says
#: or shows, its source, the reference run (accuracy, unique, min, max) or None); CIFAR-10 ``nested``: λ →
#: ((accuracy low, high), text, source); ``sizes``: (family, param) → zipped MB (the finished thesis' Tables 4.4 and
#: 4.5, "PTQ + Compression": quantization of the trained float model, int8 ``.npy`` files zipped).
THESIS = {
    "mnist": {
        "float_accuracy": 0.9636,  # reference run, plain Dense
        "float_text": ("≈96 % at λ ≤ 1e-10", "read off finished Fig. 4.3 (last epoch, seed 42)"),
        "nested": {
            0.0: ("≈2·10⁴ unique integers", "read off finished Fig. 4.1", (0.9621, 20165, -18977, 17925)),
            1e-11: ("≈70 unique integers", "read off finished Fig. 4.1", (0.9620, 72, -37, 34)),
            1e-10: ("≈96 %, ≈20 unique in −10…9 (text: 24 unique, −12…11, 5 bits; "
                    "draft text: 10 unique, −5…5, 4 bits)",
                    "read off finished Figs. 4.1–4.3; text: finished §4.2.1; draft §4.2.1", (0.9594, 20, -10, 9)),
            1e-9: ("≈93 %, ≈8 unique", "read off finished Figs. 4.3, 4.1", (0.9296, 8, -4, 4)),
            1e-8: ("26–40 %, ≈4 unique", "read off finished Fig. 4.3 (last epoch, three granularities), Fig. 4.1",
                   None),
        },
        "sizes": {  # (family, param): thesis zipped MB
            ("float", None): 0.36,
            ("nested", 1e-10): 0.05,
            ("difference", 1e-7): 0.03,
            ("maxbin", 1e-8): 0.04,
            ("inverse", 1e-9): 0.04,
        },
        "sizes_source": {"float": "finished Tables 4.4, 4.5", "nested": "finished Table 4.4 (PTQ, row-wise)",
                         "terms": "finished Table 4.5 (PTQ, row-wise)"},
    },
    "cifar10": {
        "float_accuracy": 0.85,
        "float_source": "read off finished Fig. 4.7 (last epochs, seed 42)",
        "nested": {
            1e-11: ((0.85, 0.85), "≈85 %; row-wise range −22…32, 60 unique",
                    "read off finished Fig. 4.7; range: finished §4.2.2 text"),
            1e-10: ((0.83, 0.83), "≈83 %", "read off finished Fig. 4.7"),
            1e-9: ((0.81, 0.81), "≈81 %", "read off finished Fig. 4.7"),
            1e-8: ((0.60, 0.69), "60–69 %", "read off finished Fig. 4.7 (noisy last epochs)"),
        },
        "sizes": {("float", None): 1.02, ("nested", 1e-11): 0.16},
        "sizes_source": {"float": "finished Table 4.4", "nested": "finished Table 4.4 (PTQ, row-wise λ=1e-11)"},
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
    import numpy as np

    return df[np.array([math.isclose(float(p), param, rel_tol=1e-9, abs_tol=0.0) for p in df["param"]], dtype=bool)]


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
    """MNIST nested scheme per λ: what the thesis says or shows and where (:data:`THESIS_DOCS`), the reference run
    and ours (accuracy mean ± sd over seeds, unique integers and range per seed, unique per tensor W1, b1, W2, b2 of
    the first seed, zipped size)."""
    import pandas as pd

    ref = THESIS["mnist"]
    runs = _runs(results, "mnist", "nested", granularity)
    base = _baselines(results, "mnist")
    rows = [{
        "λ": "float (plain Dense)", "thesis": ref["float_text"][0], "thesis: source": ref["float_text"][1],
        "reference run: acc % · unique · range": f"{_pct(ref['float_accuracy'])} · – · –",
        "ours: val acc %": _pm_pct(base["val_accuracy"]),
        "ours: val acc, last 5 epochs": last_epochs_range(results_dir, base), "ours: unique (per seed)": "–",
        "ours: range (per seed)": "–", "ours: unique W1, b1, W2, b2": "–",
        "ours: zip MiB": _mb(base["float_zip_bytes"].mean()) if len(base) else "–",
    }]
    for lam in sorted(set(float(p) for p in runs["param"])):
        at = _at(runs, lam)
        text, source, refrun = ref["nested"].get(lam, ("–", "–", None))
        ref_cell = "–" if refrun is None else f"{_pct(refrun[0])} · {refrun[1]} · {refrun[2]}…{refrun[3]}"
        first = at.iloc[0]
        tensors = per_tensor_unique(results_dir, first["integers"]) if isinstance(first["integers"], str) else []
        rows.append({
            "λ": _lam(lam), "thesis": text, "thesis: source": source,
            "reference run: acc % · unique · range": ref_cell,
            "ours: val acc %": _pm_pct(at["val_accuracy"]),
            "ours: val acc, last 5 epochs": last_epochs_range(results_dir, at),
            "ours: unique (per seed)": _per_seed(list(at["unique_integers"])),
            "ours: range (per seed)": " / ".join(f"{int(a)}…{int(b)}" for a, b in zip(at["int_min"], at["int_max"])),
            "ours: unique W1, b1, W2, b2": ", ".join(map(str, tensors)) + f" (seed {int(first['seed'])})",
            "ours: zip MiB": _mb(at["zip_bytes"].mean()),
        })
    return pd.DataFrame(rows)


def sizes_table(results, dataset: str, granularity: str):
    """The thesis' zipped sizes (its Tables 4.4 and 4.5, source column) against ours (zip of int8 ``.npy`` as the
    thesis, fixed-width packed, the entropy-coded integer file lqs writes, Huffman-coded integers alone), with
    accuracy; factors relative to our zipped float32 model (zip) and to float32 (file). Our rows are the QAT runs at
    ``granularity``; where the profile also has PTQ runs of a setting (the thesis' sizes are of PTQ), a PTQ row
    follows."""
    import pandas as pd

    ref = THESIS[dataset]["sizes"]
    sources = THESIS[dataset]["sizes_source"]
    base = _baselines(results, dataset)
    float_zip = float(base["float_zip_bytes"].mean()) if len(base) else float("nan")
    rows = []
    entries = []
    for (family, param), thesis_mb in ref.items():
        entries.append((family, param, thesis_mb, "qat"))
        if family != "float" and len(_at(_runs(results, dataset, family, granularity, "ptq"), param)):
            entries.append((family, param, thesis_mb, "ptq"))
    for family, param, thesis_mb, mode in entries:
        if family == "float":
            at, setting = base, "float32"
            float32 = float(base["float32_bytes"].mean()) if len(base) else float("nan")
            sizes = {"zip": float_zip, "packed": float32, "entropy": float32, "huffman": float("nan")}
        else:
            at = _at(_runs(results, dataset, family, granularity, mode), param)
            setting = (f"{names.family_title(family).split(' (')[0]}, {granularity}, {mode.upper()}, "
                       f"{names.param_symbol(family)}={_lam(param)}")
            sizes = {k: float(at[f"{k}_bytes"].mean()) if len(at) and f"{k}_bytes" in at.columns else float("nan")
                     for k in ("zip", "packed", "entropy", "huffman")}
            float32 = float(at["float32_bytes"].mean()) if len(at) else float("nan")
        thesis_factor = ref[("float", None)] / thesis_mb
        source = sources["float" if family == "float" else "nested" if family == "nested" else "terms"]
        rows.append({
            "setting": setting, "thesis zip MB (×)": f"{thesis_mb:.2f} ({thesis_factor:.1f}×)",
            "thesis: source": source,
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
    rows = [{"λ": "float", "thesis val acc %": f"≈{_pct(ref['float_accuracy'], 0)}",
             "thesis: source": ref["float_source"], "thesis drop (points)": "–",
             "ours val acc %": _pm_pct(base["val_accuracy"]), "ours drop (points)": "–",
             "ours unique, epoch 1 → last": "–", "ours range": "–",
             "ours zip MiB": _mb(base["float_zip_bytes"].mean())}]
    for lam in sorted(set(float(p) for p in runs["param"])):
        at = _at(runs, lam)
        thesis = ref["nested"].get(lam)
        if thesis is None:
            t_acc, t_drop, t_source = "–", "–", "–"
        else:
            (lo, hi), text, t_source = thesis
            t_acc = text
            d_lo, d_hi = 100 * (ref["float_accuracy"] - hi), 100 * (ref["float_accuracy"] - lo)
            t_drop = f"{d_lo:.0f}" if math.isclose(d_lo, d_hi) else f"{d_lo:.0f}–{d_hi:.0f}"
        acc = float(at["val_accuracy"].mean())
        rows.append({
            "λ": _lam(lam), "thesis val acc %": t_acc, "thesis: source": t_source, "thesis drop (points)": t_drop,
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


def tensor_range_medians(results, results_dir: str, dataset: str, family: str = "nested", min_param: float = 1e-10):
    """``{(λ, granularity, mode): (median max |P_q| per tensor over seeds, seeds)}`` for every λ ≥ ``min_param``
    (tensors in the model's order: W1, b1, W2, b2 for the MNIST MLP), read from the runs' integer files."""
    import numpy as np
    import pandas as pd

    df = _runs(results, dataset, family, mode=None)
    df = df[(pd.to_numeric(df["param"], errors="coerce") >= min_param) & df["integers"].notna()]
    out = {}
    for param in sorted(set(float(p) for p in df["param"])):
        for g in aggregate.present_granularities(df):
            for m in aggregate.present_modes(df):
                at = _at(df[(df["granularity"] == g) & (df["mode"] == m)], param)
                if at.empty:
                    continue
                ranges = np.array([per_tensor_range(results_dir, path) for path in at["integers"]])
                out[(param, g, m)] = ([int(v) for v in np.median(ranges, axis=0)], len(at))
    return out


def tensor_range_table(results, results_dir: str, dataset: str, family: str = "nested", min_param: float = 1e-10,
                       medians=None):
    """The thesis' "b2 compensates" check: per λ ≥ ``min_param`` and granularity × mode, ``max |P_q|`` of every
    tensor (W1, b1, W2, b2: the model's order), median over seeds (:func:`tensor_range_medians`, or ``medians``
    computed by it)."""
    import pandas as pd

    if medians is None:
        medians = tensor_range_medians(results, results_dir, dataset, family, min_param)
    columns = []
    for _, g, m in medians:
        if (g, m) not in columns:
            columns.append((g, m))
    columns.sort(key=lambda gm: (names.GRANULARITY_ORDER.index(gm[0]) if gm[0] in names.GRANULARITY_ORDER else 99,
                                 list(lqs_spec.MODES).index(gm[1]) if gm[1] in lqs_spec.MODES else 99))
    rows = []
    for param in sorted({p for p, _, _ in medians}):
        row = {"λ": _lam(param)}
        for g, m in columns:
            cell = medians.get((param, g, m))
            row[f"{g} {m.upper()}"] = "–" if cell is None else " / ".join(map(str, cell[0])) + f" ({cell[1]})"
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
# The numbers the reports' prose quotes. Every number the text states about our runs is a placeholder filled here,
# so that the text cannot drift from the tables: ``s.<dataset>.<setting>.<metric>`` for one setting of the
# comparison table, ``q.<dataset>.<name>`` for a number derived from several (a range, a difference, the
# smallest setting with a property). tests/test_report_numbers.py recomputes them from results.csv.


def _fmt(x, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _span(values, digits: int = 1, sep: str = "–") -> str:
    """``lo–hi`` of ``values`` at ``digits`` decimals (one number where both ends read the same); "–" if empty."""
    values = [float(v) for v in values if v == v]
    if not values:
        return "–"
    lo, hi = _fmt(min(values), digits), _fmt(max(values), digits)
    return lo if lo == hi else f"{lo}{sep}{hi}"


def _minus(v) -> str:
    """An integer with a typographic minus (−12), as the prose writes it."""
    return f"−{-int(v)}" if int(v) < 0 else str(int(v))


def _grouped(n) -> str:
    """An integer with a space every three digits (377 948)."""
    return f"{int(round(n)):,}".replace(",", " ")


#: The metrics of a setting placeholder ``s.<dataset>.<method>[.<granularity>][.<mode>][.<param>][.<variant>]
#: [.lr<rate>].<metric>`` (the ``lr`` part only for the setting at that learning rate; without it, the setting at
#: its better rate, as in the comparison table): accuracy in % at 2 (``acc``) or 1 (``acc1``) decimals, its sd,
#: ``accpm`` (mean ± sd), ``below`` (points below the float baseline), file / packed size in kB (10³ bytes), fixed
#: and entropy bits per weight, unique integers (mean over seeds), zipped MiB, the factors against the zipped float32
#: model (``xzip``) and float32 (``xf32``), and the number of seeds.
SETTING_METRICS = ("acc", "acc1", "sd", "accpm", "below", "kB", "packedkB", "bits", "ent", "unique", "zip", "xzip",
                   "xf32", "seeds")


def setting_key(dataset: str, row, with_lr: bool = False) -> str:
    """``s.<dataset>.<method>[.<granularity>][.<mode>][.<param>][.<variant>][.lr<rate>]`` of a row of
    :func:`lqs_core.workflow.aggregate.comparison_settings` (empty parts left out)."""
    parts = ["s", dataset, str(row["method"])]
    for col in ("granularity", "mode"):
        if isinstance(row.get(col), str) and row[col]:
            parts.append(row[col])
    param = row.get("param")
    if row["method"] != "float" and param is not None and param == param:
        parts.append(names.format_value(float(param)))
    if isinstance(row.get("variant"), str) and row["variant"]:
        parts.append(row["variant"])
    lr = row.get("learning_rate")
    if with_lr and lr is not None and lr == lr:
        parts.append(f"lr{names.format_value(float(lr))}")
    return ".".join(parts)


def _metric_values(row, base_acc, float_zip, float32) -> Dict[str, str]:
    acc, sd = 100 * row["val_accuracy_mean"], 100 * row["val_accuracy_std"]
    zip_bytes = float_zip if row["method"] == "float" else row["zip_bytes_mean"]
    entropy = row["entropy_bytes_mean"]
    return {
        "acc": _fmt(acc, 2), "acc1": _fmt(acc, 1), "sd": _fmt(sd, 2), "accpm": f"{_fmt(acc, 2)} ± {_fmt(sd, 2)}",
        "below": _fmt(None if base_acc is None else 100 * base_acc - acc, 2),
        "kB": _fmt(entropy / 1000, 1), "packedkB": _fmt(row["packed_bytes_mean"] / 1000, 1),
        "bits": _fmt(row["mean_bits_fixed_mean"], 1), "ent": _fmt(row["entropy_bits_per_weight_mean"], 1),
        "unique": _fmt(row["unique_integers_mean"], 0), "zip": _mb(zip_bytes),
        "xzip": _fmt(float_zip / zip_bytes if zip_bytes else float("nan"), 1),
        "xf32": _fmt(float32 / entropy if entropy else float("nan"), 1), "seeds": str(int(row["n_seeds"])),
    }


def setting_values(results, dataset: str) -> Dict[str, str]:
    """Every ``s.<dataset>.…`` placeholder (:data:`SETTING_METRICS`) of every setting of ``dataset``: at its better
    learning rate (the comparison table's row) and at each learning rate it was trained at (``.lr<rate>``)."""
    base = _baselines(results, dataset)
    base_acc = aggregate.baseline_accuracy(results, dataset)
    float_zip = float(base["float_zip_bytes"].mean()) if len(base) else float("nan")
    float32 = float(base["float32_bytes"].mean()) if len(base) else float("nan")
    out: Dict[str, str] = {}
    for settings, with_lr in ((aggregate.comparison_settings(results, dataset), False),
                              (aggregate.comparison_settings(results, dataset, best_lr=False), True)):
        for _, row in settings.iterrows():
            key = setting_key(dataset, row, with_lr)
            for metric, value in _metric_values(row, base_acc, float_zip, float32).items():
                name = f"{key}.{metric}"
                if name in out and out[name] != value:
                    raise ReportError(f"Two settings of {dataset} share the placeholder {name}.")
                out[name] = value
    return out


def _setting_name(row) -> str:
    """A setting in words: ``Difference γ=1e-7, rowwise QAT``, ``LSQ 2 bits, outputwise QAT``, ``nested scheme
    λ=1e-10, rowwise QAT from15``."""
    method = names.METHOD_NAMES.get(row["method"], row["method"]).split(" (")[0]
    method = "nested scheme" if row["method"] == "nested" else method
    detail = [v for v in (row.get("granularity"), str(row.get("mode") or "").upper(), row.get("variant"))
              if isinstance(v, str) and v]
    return f"{method} {row['setting'].split(' (')[0]}" + (f", {' '.join(detail)}" if detail else "")


def _best_within(settings, accuracy: float):
    """The smallest file (ties: more accurate) among ``settings`` whose mean accuracy is at least ``accuracy``."""
    fit = settings[settings["val_accuracy_mean"] >= accuracy - 1e-12]
    if fit.empty:
        return None
    return fit.sort_values([f"{aggregate.MODEL_SIZE}_mean", "val_accuracy_mean"], ascending=[True, False],
                           kind="mergesort").iloc[0]


def _best_below(settings, size: float):
    """The most accurate (ties: smaller) among ``settings`` whose file is at most ``size`` bytes."""
    fit = settings[settings[f"{aggregate.MODEL_SIZE}_mean"] <= size]
    if fit.empty:
        return None
    return fit.sort_values(["val_accuracy_mean", f"{aggregate.MODEL_SIZE}_mean"], ascending=[False, True],
                           kind="mergesort").iloc[0]


def _named(q: Dict[str, str], key: str, row) -> None:
    """``key`` (the setting in words), ``key.acc``, ``key.kB`` of a comparison-settings row (or "–")."""
    q[key] = "–" if row is None else _setting_name(row)
    q[f"{key}.acc"] = "–" if row is None else _fmt(100 * row["val_accuracy_mean"], 2)
    q[f"{key}.kB"] = "–" if row is None else _fmt(row[f"{aggregate.MODEL_SIZE}_mean"] / 1000, 1)


def _history_values(results_dir: str, rows, n: int = 5) -> List[float]:
    values: List[float] = []
    for _, row in rows.iterrows():
        if isinstance(row.get("history"), str):
            values.extend(100 * history(results_dir, row)["val_accuracy"].tail(n))
    return values


def mnist_quotes(results, results_dir: Optional[str]) -> Dict[str, str]:
    """The ``q.mnist.…`` placeholders: the numbers the MNIST prose derives from several settings."""
    q: Dict[str, str] = {}
    ref = THESIS["mnist"]
    base = _baselines(results, "mnist")
    base_acc = aggregate.baseline_accuracy(results, "mnist")
    rw = _runs(results, "mnist", "nested", "rowwise")
    lams = sorted(set(float(p) for p in rw["param"]))
    settings = aggregate.comparison_settings(results, "mnist")
    own = settings[settings["method"] != "float"]

    # the row-wise QAT sweep against the thesis and the reference run
    q["q.mnist.seedacc.float"] = " / ".join(_fmt(100 * a, 2) for a in base["val_accuracy"])
    diffs = [("the float baseline", abs(100 * (base_acc - ref["float_accuracy"])))] if base_acc is not None else []
    for lam in lams:
        at, key = _at(rw, lam), _lam(lam)
        refrun = ref["nested"].get(lam, ("", "", None))[2]
        q[f"q.mnist.unique.{key}"] = _span(at["unique_integers"], 0)
        q[f"q.mnist.seedacc.{key}"] = " / ".join(_fmt(100 * a, 2) for a in at["val_accuracy"])
        per_seed = zip(at["unique_integers"], at["int_min"], at["int_max"])
        q[f"q.mnist.ranges.{key}"] = " and ".join(f"{int(u)} in {_minus(a)}…{_minus(b)}" for u, a, b in per_seed)
        q[f"q.mnist.absmax.{key}"] = _grouped(max(abs(at["int_min"]).max(), abs(at["int_max"]).max()))
        if results_dir is not None:
            last = _history_values(results_dir, at)
            q[f"q.mnist.last5.{key}"] = last_epochs_range(results_dir, at)
            q[f"q.mnist.last5span.{key}"] = _fmt(max(last) - min(last), 1) if last else "–"
        if refrun is not None:
            diff = 100 * (float(at["val_accuracy"].mean()) - refrun[0])
            if lam <= 1e-10:
                diffs.append((f"λ = {key}", abs(diff)))
            q[f"q.mnist.ref.{key}.diff"] = _fmt(diff, 2)
            sd = 100 * float(at["val_accuracy"].std(ddof=1)) if len(at) > 1 else float("nan")
            q[f"q.mnist.ref.{key}.nsd"] = _fmt(diff / sd if sd else float("nan"), 1)
    if diffs:
        at, worst = max(diffs, key=lambda d: d[1])
        q["q.mnist.ref.maxdiff"], q["q.mnist.ref.maxdiff_at"] = _fmt(worst, 2), at

    # sizes at the thesis' settings
    if len(base):
        zip_bytes = float(base["float_zip_bytes"].mean())
        q["q.mnist.float_zip_bytes"] = _grouped(zip_bytes)
        q["q.mnist.float_zip_mib"], q["q.mnist.float_zip_mb"] = _mb(zip_bytes), _fmt(zip_bytes / 1e6, 3)
    terms = [(f, p) for f, p in ref["sizes"] if f in lqs_spec.TERMS]
    term_rows = {f: _at(_runs(results, "mnist", f, "rowwise"), p) for f, p in terms}
    if base_acc is not None:
        for family, rows in list(term_rows.items()) + [("nested", _at(rw, 1e-10))]:
            if len(rows):
                gap = 100 * (base_acc - float(rows["val_accuracy"].mean()))
                q[f"q.mnist.vsfloat.{family}"] = f"{abs(gap):.2f} points {'below' if gap >= 0 else 'above'}"
    present = [rows for rows in term_rows.values() if len(rows)]
    if present and len(base):
        q["q.mnist.terms.acc"] = _span([100 * r["val_accuracy"].mean() for r in present], 1)
        q["q.mnist.terms.unique"] = _span([r["unique_integers"].median() for r in present], 0)
        q["q.mnist.terms.zip"] = _span([r["zip_bytes"].mean() / MB for r in present], 3)
        q["q.mnist.terms.xzip"] = _span([base["float_zip_bytes"].mean() / r["zip_bytes"].mean() for r in present], 1)

    # every method: the smallest file within a point of the float baseline, and the like
    if base_acc is not None:
        _named(q, "q.mnist.within1", _best_within(own, base_acc - 0.01))
        within = _best_within(own, base_acc - 0.01)
        q["q.mnist.within1.below"] = ("–" if within is None else
                                      _fmt(100 * (base_acc - within["val_accuracy_mean"]), 2))
    thesis_schemes = own[own["method"].isin(("nested",) + tuple(lqs_spec.TERMS))]
    _named(q, "q.mnist.reach94", _best_within(thesis_schemes, 0.94))
    lsq2 = own[(own["method"] == "lsq") & (own["param"] == 2)]
    if len(lsq2):
        size = float(lsq2.iloc[0][f"{aggregate.MODEL_SIZE}_mean"])
        _named(q, "q.mnist.atlsq2.nested", _best_below(own[own["method"] == "nested"], size))
        _named(q, "q.mnist.atlsq2.term", _best_below(own[own["method"].isin(lqs_spec.TERMS)], size))
    cgmq = own[(own["method"] == "cgmq") & (own["param"] == 0.125)]
    if len(cgmq):
        c = cgmq.iloc[0]
        size = c[f"{aggregate.MODEL_SIZE}_mean"]
        near = own[(own["method"] != "cgmq") & ((own[f"{aggregate.MODEL_SIZE}_mean"] - size).abs() <= 0.1 * size)]
        top = None if near.empty else near.sort_values("val_accuracy_mean", ascending=False).iloc[0]
        _named(q, "q.mnist.cgmq.rival", top)
        q["q.mnist.cgmq.gap"] = ("–" if top is None else
                                 _fmt(100 * (top["val_accuracy_mean"] - c["val_accuracy_mean"]), 1))
    ptq_losses = []
    for g in ("outputwise", "scalar"):
        rows = results[(results["dataset"] == "mnist") & (results["family"] == "ptq") & (results["granularity"] == g)
                       & (results["param"] == 4)]
        twin = base[base["seed"].isin(rows["seed"])]
        if len(rows) and len(twin):
            ptq_losses.append(100 * (twin["val_accuracy"].mean() - rows["val_accuracy"].mean()))
    q["q.mnist.ptq4.loss"] = _span(ptq_losses, 1)

    # the complete profile: every granularity × mode
    nested = _plain(results[(results["dataset"] == "mnist") & (results["kind"] == "run")
                            & (results["family"] == "nested")])
    columns = [(g, m) for g in aggregate.present_granularities(nested) for m in aggregate.present_modes(nested)]
    optimal, others = 0, []
    for g, m in columns:
        part = nested[(nested["granularity"] == g) & (nested["mode"] == m)]
        agg = aggregate.aggregate_seeds(part, ["param"], ["val_accuracy", "unique_integers", "zip_bytes"])
        row, _ = aggregate.select_operating_point(agg, base_acc, 0.01, size="zip_bytes")
        if math.isclose(float(row["param"]), 1e-10):
            optimal += 1
        else:
            others.append(f"{g} {m.upper()} (λ = {_lam(row['param'])})")
    q["q.mnist.optimal.count"] = f"{optimal} of {len(columns)}"
    q["q.mnist.optimal.others"] = ", ".join(others) or "none"

    def cells(lam):
        return [(g, m, _at(nested[(nested["granularity"] == g) & (nested["mode"] == m)], lam)) for g, m in columns]

    if base_acc is not None:
        q["q.mnist.loss.1e-9"] = _span([100 * (base_acc - r["val_accuracy"].mean()) for *_, r in cells(1e-9) if len(r)])
    q["q.mnist.acc.1e-8"] = _span([100 * r["val_accuracy"].mean() for *_, r in cells(1e-8) if len(r)], 0)
    sds = {lam: [100 * r["val_accuracy"].std(ddof=1) for *_, r in cells(lam) if len(r) > 1]
           for lam in sorted(set(float(p) for p in nested["param"]))}
    q["q.mnist.sd.le1e-10"] = _span([v for lam, vs in sds.items() if lam <= 1e-10 for v in vs], 2)
    q["q.mnist.sd.1e-9"] = _span(sds.get(1e-9, []), 1)
    q["q.mnist.sd.1e-8"] = _span(sds.get(1e-8, []), 0)
    gains, fewer, pairs = [], 0, 0
    for lam in (1e-11, 1e-10, 1e-9):
        for g in aggregate.present_granularities(nested):
            qat, ptq = (_at(nested[(nested["granularity"] == g) & (nested["mode"] == m)], lam) for m in ("qat", "ptq"))
            if len(qat) and len(ptq):
                gains.append(100 * (ptq["val_accuracy"].mean() - qat["val_accuracy"].mean()))
                pairs += 1
                fewer += int(ptq["unique_integers"].median() <= qat["unique_integers"].median())
    q["q.mnist.ptqgain"] = _span(gains, 1)
    q["q.mnist.ptqfewer"] = f"{fewer} of {pairs}"
    for m in ("qat", "ptq"):
        rows = [r for g, mm, r in cells(1e-10) if mm == m and len(r)]
        q[f"q.mnist.{m}.1e-10.acc"] = _span([100 * r["val_accuracy"].mean() for r in rows], 1)
        q[f"q.mnist.{m}.1e-10.unique"] = _span([r["unique_integers"].median() for r in rows], 0)

    # the loss terms over γ: how much smaller a γ the scalar granularity needs for the row-wise accuracy
    for family, param in terms:
        row_acc = _at(_runs(results, "mnist", family, "rowwise"), param)["val_accuracy"].mean()
        scalar = _runs(results, "mnist", family, "scalar")
        if scalar.empty or row_acc != row_acc:
            continue
        means = scalar.groupby("param")["val_accuracy"].mean().sort_index(ascending=False)
        reach = [p for p, a in means.items() if a >= row_acc - 1e-12]
        q[f"q.mnist.scalargamma.{family}"] = (f"{param / reach[0]:.0f}×" if reach else
                                              f"more than {param / means.index.min():.0f}× (never reached)")
    # equal bytes: which loss terms beat the nested scheme at each budget
    parts = []
    for budget in EQUAL_BYTES:
        best = {}
        for method in ("nested",) + tuple(lqs_spec.TERMS):
            row = _best_below(own[own["method"] == method], budget)
            if row is not None:
                best[method] = row["val_accuracy_mean"]
        if "nested" not in best:
            continue
        beat = [names.METHOD_NAMES[t].split(" (")[0] for t in lqs_spec.TERMS if best.get(t, -1) > best["nested"]]
        parts.append(f"≤ {budget / 1000:.0f} kB: {', '.join(beat) or 'none'}")
    q["q.mnist.eqbytes.terms_beat_nested"] = "; ".join(parts) or "–"
    # gradual quantization at λ = 1e-10: the accuracy over k > 0
    grad = own[(own["method"] == "nested") & own["variant"].astype(str).str.startswith("from")]
    at = _at(grad, 1e-10)
    q["q.mnist.gradual.1e-10.acc"] = _span(100 * at["val_accuracy_mean"], 2)
    # the two learning rates
    every = aggregate.comparison_settings(results, "mnist", best_lr=False)
    every = every[every["method"] != "float"]
    keys = ["method", "granularity", "mode", "param", "variant"]
    losses, better = [], []
    for _, group in every.groupby(keys, dropna=False):
        if len(group) < 2:
            continue
        by_lr = group.set_index("learning_rate")["val_accuracy_mean"]
        better.append(float(by_lr.idxmax()))
        if 1e-4 in by_lr.index and 1e-3 in by_lr.index:
            losses.append(100 * (by_lr[1e-4] - by_lr[1e-3]))
    q["q.mnist.lr.n"] = str(len(better))
    q["q.mnist.lr.better_1e-4"] = str(sum(math.isclose(b, 1e-4) for b in better))
    q["q.mnist.lr.loss"] = _span(losses, 0)
    q["q.total_hours"] = _fmt(_sum(results["train_seconds"]) / 3600, 1)
    return q


def _sum(values) -> float:
    import pandas as pd

    return float(pd.to_numeric(values, errors="coerce").fillna(0.0).sum())


def tensor_range_quotes(medians) -> Dict[str, str]:
    """The b2 numbers of the MNIST report from :func:`tensor_range_medians` (tensors W1, b1, W2, b2)."""
    q: Dict[str, str] = {}
    at9 = {(g, m): v for (p, g, m), (v, _) in medians.items() if math.isclose(p, 1e-9)}
    widest = {k: v for k, v in at9.items() if v[3] > max(v[:3])}
    q["q.mnist.b2.widest"] = f"{len(widest)} of {len(at9)}"
    q["q.mnist.b2.notwidest"] = ", ".join(f"{g} {m.upper()}: {' / '.join(map(str, v))}"
                                          for (g, m), v in at9.items() if (g, m) not in widest) or "none"
    q["q.mnist.b2.b2range"] = _span([v[3] for v in widest.values()], 0)
    q["q.mnist.b2.weights"] = _span([w for v in widest.values() for w in (v[0], v[2])], 0)
    for lam in sorted({p for p, _, _ in medians}):
        q[f"q.mnist.modelrange.{_lam(lam)}"] = _span([max(v) for (p, _, _), (v, _) in medians.items()
                                                      if math.isclose(p, lam)], 0)
    at8 = [v for (p, _, _), (v, _) in medians.items() if math.isclose(p, 1e-8)]
    q["q.mnist.b2.1e-8"] = _span([v[3] for v in at8], 0)
    q["q.mnist.W1b1.1e-8"] = _span([w for v in at8 for w in v[:2]], 0)
    return q


def cifar_quotes(results, results_dir: Optional[str]) -> Dict[str, str]:
    """The ``q.cifar10.…`` placeholders of the quick_cpu report's CIFAR-10 prose."""
    q: Dict[str, str] = {}
    base = _baselines(results, "cifar10")
    runs = _runs(results, "cifar10", "nested", "channelwise")
    if len(base):
        b = base.iloc[0]
        steps = math.ceil(float(b["n_train"]) / float(b["batch_size"])) * int(b["epochs"])
        full, epochs = THESIS_TRAINING["cifar10"]
        thesis_steps = math.ceil(full / float(b["batch_size"])) * epochs
        q["q.cifar10.steps"], q["q.cifar10.thesis_steps"] = _grouped(steps), _grouped(thesis_steps)
        q["q.cifar10.steps_pct"] = _fmt(100 * steps / thesis_steps, 1)
    q["q.cifar10.unique.quantized"] = _span(runs[runs["param"] > 0]["unique_integers"], 0)
    base_acc = aggregate.baseline_accuracy(results, "cifar10")
    if base_acc is not None:
        drops = {float(p): 100 * (base_acc - _at(runs, p)["val_accuracy"].mean()) for p in set(runs["param"])}
        low = {p: d for p, d in drops.items() if p <= 1e-9}
        if low:
            worst = max(low, key=low.get)
            q["q.cifar10.maxdrop.le1e-9"], q["q.cifar10.maxdrop.le1e-9.at"] = _fmt(low[worst], 1), _lam(worst)
    if results_dir is not None:
        trained = _concat([base, runs])
        fell = []
        for _, row in trained.iterrows():
            if not isinstance(row.get("history"), str):
                continue
            acc = 100 * history(results_dir, row)["val_accuracy"]
            if len(acc) > 1 and acc.iloc[-1] <= acc.iloc[-2]:
                label = "the float baseline" if row["kind"] == "baseline" else f"λ = {_lam(row['param'])}"
                fell.append(f"{label}: {acc.iloc[-2]:.2f} → {acc.iloc[-1]:.2f} %")
        n = len(trained)
        q["q.cifar10.rising"] = (f"all {n} trained runs' accuracy still rose in the last epoch" if not fell else
                                 f"{n - len(fell)} of the {n} trained runs' accuracy still rose in the last epoch "
                                 f"(not: {'; '.join(fell)})")
    return q


def _concat(frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def quote_values(results, results_dir: Optional[str], medians=None) -> Dict[str, str]:
    """Every ``s.…`` and ``q.…`` placeholder the results allow (:func:`setting_values`, :func:`mnist_quotes`,
    :func:`cifar_quotes`, :func:`tensor_range_quotes` of ``medians``)."""
    values: Dict[str, str] = {}
    datasets = set(results["dataset"])
    for dataset in (d for d in ("mnist", "cifar10") if d in datasets):
        values.update(setting_values(results, dataset))
    if "mnist" in datasets:
        values.update(mnist_quotes(results, results_dir))
        if medians:
            values.update(tensor_range_quotes(medians))
    if "cifar10" in datasets:
        values.update(cifar_quotes(results, results_dir))
    return values


# ---------------------------------------------------------------------------------------------------------------
# The same settings on another Keras backend


#: How the reports write the Keras backends.
BACKEND_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


def _backend_name(results) -> str:
    return ", ".join(BACKEND_NAMES.get(b, b) for b in table.backends(results))


#: Columns that must agree for two runs to be "the same setting" (on different backends).
TWIN_KEYS = ("dataset", "kind", "family", "granularity", "mode", "param", "epochs", "learning_rate", "batch_size",
             "n_train", "n_val")


def _settings_of(results):
    import pandas as pd

    df = _plain(results).copy()
    for col in TWIN_KEYS:
        if col not in df.columns:
            df[col] = None
    df = df[df["kind"].isin(("run", "baseline"))]
    for col in ("granularity", "mode"):
        df[col] = df[col].where(df[col].notna(), "")
    df["param"] = pd.to_numeric(df["param"], errors="coerce").fillna(-1.0)
    return df


def find_backend_twin(root: str, name: str, results):
    """Another results table under ``<root>/results/`` with runs of the same settings (:data:`TWIN_KEYS`, no
    variant) on another Keras backend: ``(folder name, its table)`` of the one sharing most settings, or None."""
    import glob

    own_backends = set(table.backends(results))
    own = _settings_of(results)
    own_keys = set(map(tuple, own[list(TWIN_KEYS)].astype(str).values))
    best = None
    for path in sorted(glob.glob(os.path.join(root, "results", "*", "results.csv"))):
        folder = os.path.basename(os.path.dirname(path))
        if folder == name:
            continue
        other = table.read_results(os.path.dirname(path))
        if set(table.backends(other)) & own_backends or other.empty:
            continue
        keys = set(map(tuple, _settings_of(other)[list(TWIN_KEYS)].astype(str).values))
        shared = len(own_keys & keys)
        if shared and (best is None or shared > best[0]):
            best = (shared, folder, other)
    return None if best is None else (best[1], best[2])


def backend_table(results, twin):
    """The settings run on both backends: per seed accuracy and unique integers on each, the difference of the
    means (this backend − the other) and that difference in pooled standard deviations (where either side has
    two or more seeds)."""
    import pandas as pd

    ours, theirs = _settings_of(results), _settings_of(twin)
    this_name, other_name = _backend_name(results), _backend_name(twin)
    rows = []
    for key, mine in ours.groupby(list(TWIN_KEYS), sort=False, dropna=False):
        other = theirs
        for col, value in zip(TWIN_KEYS, key):
            other = other[other[col].astype(str) == str(value)]
        if other.empty:
            continue
        mine, other = mine.sort_values("seed"), other.sort_values("seed")
        a, b = 100 * mine["val_accuracy"], 100 * other["val_accuracy"]
        var = [(len(x) - 1, x.var(ddof=1)) for x in (a, b) if len(x) > 1]
        pooled = math.sqrt(sum(n * v for n, v in var) / sum(n for n, _ in var)) if var else float("nan")
        delta = a.mean() - b.mean()
        row0 = mine.iloc[0]
        setting = "float32" if row0["kind"] == "baseline" else _setting_name(dict(
            method=row0["family"], granularity=row0["granularity"], mode=row0["mode"], variant="",
            setting=names.setting_label(row0["family"], row0["param"])))
        unique = {name: "–" if row0["kind"] == "baseline" else _per_seed(list(rows_["unique_integers"]))
                  for name, rows_ in ((other_name, other), (this_name, mine))}
        rows.append({
            "setting": setting,
            f"{other_name}: val acc % (per seed)": " / ".join(_fmt(v, 2) for v in b),
            f"{this_name}: val acc % (per seed)": " / ".join(_fmt(v, 2) for v in a),
            f"Δ mean ({this_name} − {other_name}), points": f"{delta:+.2f}",
            "Δ / pooled sd": _fmt(abs(delta) / pooled if pooled else float("nan"), 1),
            f"{other_name}: unique (per seed)": unique[other_name],
            f"{this_name}: unique (per seed)": unique[this_name],
            "_delta": delta, "_nsd": abs(delta) / pooled if pooled else float("nan"), "_kind": row0["kind"],
            "_family": row0["family"], "_granularity": row0["granularity"], "_mode": row0["mode"],
            "_param": float(row0["param"]), "_other_acc": list(b), "_other_unique": list(other["unique_integers"]),
            "_seconds": (float(pd.to_numeric(mine["train_seconds"], errors="coerce").median()),
                         float(pd.to_numeric(other["train_seconds"], errors="coerce").median())),
        })
    return pd.DataFrame(rows)


def backend_values(results, twin_name: Optional[str], twin) -> Dict[str, str]:
    """``backend_table`` and the ``q.backend.…`` numbers: the other backend, its folder, the settings both ran,
    the range of the differences, how many exceed two pooled sd, the float baseline's difference."""
    if twin is None:
        return {"backend_table": "No runs of the same settings on another Keras backend are stored.",
                "q.backend.this": "–", "q.backend.other": "–", "q.backend.folder": "–", "q.backend.n": "0",
                "q.backend.delta": "–",
                "q.backend.over2sd": "–", "q.backend.float.delta": "–", "q.backend.float.nsd": "–",
                "q.backend.float.other": "–", "q.backend.speedup": "–", "q.backend.nested.maxnsd": "–",
                **{f"q.backend.unique.{_lam(lam)}.other": "–" for lam in THESIS["mnist"]["nested"]}}
    df = backend_table(results, twin)
    shown = df[[c for c in df.columns if not c.startswith("_")]]
    float_row = df[df["setting"] == "float32"]
    tested = df[df["_nsd"].notna()]
    q: Dict[str, str] = {}
    nested = df[(df["_family"] == "nested") & (df["_granularity"] == "rowwise") & (df["_mode"] == "qat")]
    for _, row in nested.iterrows():
        q[f"q.backend.unique.{_lam(row['_param'])}.other"] = _span(row["_other_unique"], 0)
    q["q.backend.nested.maxnsd"] = _fmt(nested["_nsd"].max(), 1) if len(nested) else "–"
    if len(float_row):
        q["q.backend.float.other"] = " / ".join(_fmt(v, 2) for v in float_row["_other_acc"].iloc[0])
    trained = [(a, b) for a, b in df["_seconds"] if a > 0 and b > 0]
    if trained:
        import statistics

        ratio = statistics.median(b for _, b in trained) / statistics.median(a for a, _ in trained)
        q["q.backend.speedup"] = _fmt(ratio, 1)
    return {**q,
        "backend_table": aggregate.to_markdown(shown),
        "q.backend.this": _backend_name(results), "q.backend.other": _backend_name(twin),
        "q.backend.folder": f"results/{twin_name}",
        "q.backend.n": str(len(df)), "q.backend.delta": f"{df['_delta'].min():+.2f} to {df['_delta'].max():+.2f}",
        "q.backend.over2sd": f"{int((tested['_nsd'] > 2).sum())} of {len(tested)}",
        "q.backend.float.delta": "–" if float_row.empty else f"{float_row['_delta'].iloc[0]:+.2f}",
        "q.backend.float.nsd": "–" if float_row.empty else _fmt(float_row["_nsd"].iloc[0], 1),
    }


# ---------------------------------------------------------------------------------------------------------------
# Values and rendering


def report_values(results, results_dir: str, profiles: Optional[Mapping[str, Mapping]] = None) -> Dict[str, str]:
    """Every placeholder of the report: Markdown tables (``*_table``), single numbers and the numbers the prose
    quotes (:func:`quote_values`); ``profiles`` are the profiles whose training time is estimated (see
    :func:`timing_table`)."""
    values: Dict[str, str] = {}
    datasets = set(results["dataset"])
    medians = None
    if "mnist" in datasets:
        values["mnist_nested_table"] = aggregate.to_markdown(mnist_nested_table(results, results_dir))
        values["mnist_sizes_table"] = aggregate.to_markdown(sizes_table(results, "mnist", "rowwise"))
        values["mnist_comparison_table"] = aggregate.to_markdown(comparison_table(results, "mnist"))
        for family in ("nested",) + lqs_spec.TERMS[:3]:
            values[f"mnist_grid_{family}"] = aggregate.to_markdown(grid_table(results, "mnist", family))
        values["mnist_operating_points"] = aggregate.to_markdown(operating_points_table(results, "mnist"))
        values["mnist_gradual_table"] = aggregate.to_markdown(gradual_table(results, "mnist"))
        if results_dir is not None and "integers" in results.columns:
            medians = tensor_range_medians(results, results_dir, "mnist")
            values["mnist_tensor_ranges"] = aggregate.to_markdown(
                tensor_range_table(results, results_dir, "mnist", medians=medians))
        values["mnist_equal_bytes"] = aggregate.to_markdown(equal_bytes_table(results, "mnist"))
    if "cifar10" in datasets:
        values["cifar10_nested_table"] = aggregate.to_markdown(cifar_nested_table(results, results_dir))
        values["cifar10_sizes_table"] = aggregate.to_markdown(sizes_table(results, "cifar10", "channelwise"))
        values["cifar10_comparison_table"] = aggregate.to_markdown(comparison_table(results, "cifar10"))
    timing = timing_table(results, profiles)
    values["timing_table"] = aggregate.to_markdown(timing)
    for _, row in timing.iterrows():  # q.time.<dataset>.<profile> / .median_min: cells of the timing table
        values[f"q.time.{row['dataset']}.median_min"] = row["median per run (min)"]
        for name in profiles or {}:
            values[f"q.time.{row['dataset']}.{name}"] = row[f"{name} at this speed (1 CPU thread)"]
    values["parts_table"] = aggregate.to_markdown(parts_table(results))
    values["n_runs"] = str(len(results))
    values.update(quote_values(results, results_dir, medians))
    return values


def missing_runs(planned, results_dir: str) -> str:
    """The planned runs without a finished run in ``results_dir`` (no ``metrics.json``), in the profile's order, as
    a Markdown list with the epochs each has done so far (from its checkpoint, :mod:`lqs_core.checkpoint`); or
    "none"."""
    lines = []
    for run in planned:
        directory = run.directory(results_dir)
        if os.path.exists(os.path.join(directory, lqs_spec.METRICS_FILE)):
            continue
        done = _checkpoint_epochs(os.path.join(directory, "checkpoint.npz"))
        epochs = run.config.get("epochs") or lqs_spec.DATASET_DEFAULTS[run.dataset]["epochs"]
        state = f"{done} of {epochs} epochs done, resumes from there" if done else "not started"
        if run.scheme == "ptq_eval":
            state = "not run (no training: evaluated once its float baseline exists)"
        lines.append(f"- `{run.run_id}` — {state}")
    return "\n".join(lines) if lines else "none: every planned run has finished."


def _checkpoint_epochs(path: str) -> int:
    """Finished epochs recorded in a run's checkpoint (0 if there is none or it cannot be read)."""
    import zipfile

    import numpy as np

    try:
        with zipfile.ZipFile(path) as z, z.open("meta.json.npy") as member:
            return int(json.loads(np.lib.format.read_array(member).tobytes())["epochs_done"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return 0


def epoch_seconds(results_dir: str, results) -> str:
    """Median seconds per training epoch per dataset and Keras backend over the finished runs' histories
    (``epoch_seconds``: fitting one epoch and validating), e.g. ``cifar10 (tensorflow): 98 s``."""
    import pandas as pd

    parts = []
    if "backend" not in results or "history" not in results:
        return "no finished training epoch yet"
    for (dataset, backend), rows in results.groupby(["dataset", "backend"]):
        seconds = []
        for _, row in rows.iterrows():
            if isinstance(row.get("history"), str) and int(row.get("epochs") or 0) > 0:
                h = history(results_dir, row)
                seconds.extend(pd.to_numeric(h.get("epoch_seconds"), errors="coerce").dropna().tolist())
        if seconds:
            parts.append(f"{dataset} ({backend}): {float(pd.Series(seconds).median()):.0f} s")
    return "; ".join(parts) or "no finished training epoch yet"


#: ``{{name}}``: letters, digits, ``_``, and the ``.`` / ``-`` of the quoted numbers' names (``s.mnist.lsq.…``).
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")


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
    report_output`). Besides :func:`report_values` the template may use ``{{backend}}``, ``{{results_dir}}``,
    ``{{figures_dir}}``, ``{{n_planned}}``, ``{{missing_runs}}``, ``{{epoch_seconds}}`` and the comparison with the
    same settings on another Keras backend found under ``<root>/results/`` (:func:`find_backend_twin`,
    :func:`backend_values`: ``{{backend_table}}``, ``{{q.backend.…}}``). The time estimates are for the profiles
    :data:`ESTIMATED_PROFILES` (``<repo>/config/<name>.yaml``)."""
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
    planned = sweep.expand_runs(config)
    twin = find_backend_twin(root, name, results)
    values.update(backend_values(results, *(twin or (None, None))))
    values.update(backend=", ".join(backends), results_dir=f"results/{name}", figures_dir=f"figures/{name}",
                  n_planned=str(len(planned)), missing_runs=missing_runs(planned, results_dir),
                  epoch_seconds=epoch_seconds(results_dir, results))
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
