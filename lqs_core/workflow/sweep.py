"""The sweep: every run of a profile (:func:`expand_runs`), and the figure files the profile gets.

Per dataset and seed one float baseline, then datasets × scheme (nested: the λ grid; loss terms: each term over its
γ grid) × granularity × mode (``qat`` | ``ptq``) × seed, then the comparators; a ``ptq`` run (and a ``ptq_eval``
comparator) starts from the baseline of its dataset and seed. Every run is described by a
:class:`lqs_core.spec.RunConfig`, built here for every run before anything is trained (so a run the library would
refuse is a config error naming its key path), and its id is :func:`lqs_core.spec.run_id` without the training
suffixes a profile shares by all its runs.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional

from lqs_core import spec
from lqs_core.workflow import names
from lqs_core.workflow.config import (DEFAULT_BACKEND, ConfigError, dataset_backend, dataset_seeds, granularities,
                                      max_runs, modes, output_name, validate_config)

#: The folder of a run's kind under ``results/<profile>/`` (and ``logs/<profile>/``).
FOLDERS = {"baseline": "baselines", "run": "runs"}
#: The figure notebooks (``notebooks/<name>.ipynb``) and their section of the profile's ``figures`` parameters.
#: The granularity label of the other libraries' methods in the results table (their own, not lqs' scales).
EXTERNAL_GRANULARITY = {"hgq2": "weightwise", "keras_quantize": "outputwise"}
FIGURE_NOTEBOOKS = {"fig_pareto": "pareto", "fig_curves": "curves", "fig_histograms": "histograms",
                    "table_compression": "compression", "fig_comparison": "comparison"}


@dataclass(frozen=True)
class Run:
    """One training run of the workflow.

    ``config`` is the ``RunConfig`` dict as the job gets it (unset fields take the dataset's defaults); ``baseline``
    the id of the float run a ``ptq`` run starts from. ``family`` is ``nested``, the loss term's name, ``float``, or
    a comparator (:data:`lqs_core.spec.COMPARATORS`); ``param`` the swept λ or γ, a comparator's bits (``cgmq``: its
    BOP budget; None for the float baseline); ``variant`` the comparator's other knobs as in the run id (``gweight``,
    ``avg3``; None where there are none). ``mode`` is None for the baseline and ``ptq``. ``backend`` is the Keras
    backend the job runs on (:func:`lqs_core.workflow.config.dataset_backend`; ``KERAS_BACKEND`` of its job).
    """

    run_id: str
    kind: str  # "baseline" | "run"
    dataset: str
    family: str
    granularity: Optional[str]
    mode: Optional[str]
    param: Optional[float]
    seed: int
    config: Dict[str, Any] = field(hash=False, compare=False)
    baseline: Optional[str] = None
    variant: Optional[str] = None
    backend: str = DEFAULT_BACKEND

    @property
    def scheme(self) -> str:
        return self.config["scheme"]

    @property
    def folder(self) -> str:
        return FOLDERS[self.kind]

    def directory(self, results_dir) -> str:
        return os.path.join(str(results_dir), self.folder, self.run_id)


def _train_fields(config: Mapping, dataset: str) -> dict:
    """The RunConfig fields a dataset's ``train`` section sets (``ptq_epochs`` aside: :func:`_ptq_epochs`)."""
    fields = dict(config["datasets"][dataset].get("train") or {})
    fields.pop("ptq_epochs", None)
    if config.get("data_dir"):
        fields["data_dir"] = config["data_dir"]
    return fields


def _ptq_epochs(config: Mapping, dataset: str) -> Optional[int]:
    """``train.ptq_epochs``: the epochs of every run in ``ptq`` mode (fine-tuned from the float baseline: the nested
    scheme, the loss terms and the trained comparators alike); None = the dataset's ``epochs``."""
    value = (config["datasets"][dataset].get("train") or {}).get("ptq_epochs")
    return None if value is None else int(value)


def _comparator_settings(comp: Mapping) -> List[tuple]:
    """``[(family, param, granularities, modes, {RunConfig fields}), ...]`` of a dataset's ``comparators`` section,
    in the order of :data:`lqs_core.spec.COMPARATORS`."""
    default_grans = list(comp.get("granularities") or ["scalar"])
    default_modes = list(comp.get("modes") or ["qat"])
    out = []
    for family in spec.COMPARATORS:
        section = comp.get(family)
        if not section:
            continue
        grans = list(section.get("granularities") or default_grans)
        run_modes = [None] if family in ("ptq", "keras_quantize") else list(section.get("modes") or default_modes)
        if family == "hgq2":  # HGQ2's own per-weight widths: one label, its regularizer strength swept
            for beta in section["betas"]:
                out.append((family, float(beta), [EXTERNAL_GRANULARITY[family]], ["qat"],
                            {"method_options": {"beta": float(beta)}}))
        elif family == "keras_quantize":
            for bits in section["bits"]:
                out.append((family, int(bits), [EXTERNAL_GRANULARITY[family]], run_modes, {"bits": int(bits)}))
        elif family in ("ptq", "fixed", "lsq"):
            for bits in section["bits"]:
                out.append((family, int(bits), grans, run_modes, {"bits": int(bits)}))
        elif family == "cgmq":
            extra = {k: section[k] for k in ("direction", "gate_lr", "gate_init") if k in section}
            for gates in section.get("gates") or ["layer"]:
                options = {"gates": gates, **extra}
                for budget in section["budgets"]:
                    out.append((family, float(budget), grans, run_modes,
                                {"budget": float(budget), "method_options": dict(options)}))
        else:  # layer_importance
            options = {k: section[k] for k in ("min_bits", "finetune_epochs", "imprint_samples") if k in section}
            for bits in section["bits"]:
                for budget in section.get("budgets") or [None]:
                    fields = {"bits": int(bits), "method_options": dict(options)}
                    if budget is not None:
                        fields["budget"] = float(budget)
                    out.append((family, int(bits), grans, run_modes, fields))
    return out


def train_lr(train: Mapping, dataset: str) -> float:
    """The learning rate of a dataset's runs: its ``train`` section's, else the dataset's default."""
    lr = train.get("learning_rate")
    return float(spec.DATASET_DEFAULTS[dataset]["learning_rate"] if lr is None else lr)


def lr_tag(learning_rate: float) -> str:
    """The run-id part and variant of a run trained at another learning rate than its profile's: ``lr0.001``."""
    return f"lr{float(learning_rate):g}"


def _points(config: Mapping, dataset: str, results_dir: str):
    """``(key path, kind, family, granularity, mode, param, seed, config dict, baseline)`` of every run of
    ``dataset`` in the sweep's order: baselines first (per seed), then the thesis' schemes, then the comparators."""
    ds = config["datasets"][dataset]
    train = _train_fields(config, dataset)
    seeds = dataset_seeds(config, dataset)
    ptq_epochs = _ptq_epochs(config, dataset)

    def float_weights(seed):
        base = spec.baseline_id(dataset, seed)
        return base, os.path.join(results_dir, FOLDERS["baseline"], base, spec.MODEL_FILE)

    for seed in seeds:
        cfg = {"dataset": dataset, "scheme": "float", "seed": seed, **train}
        yield f"datasets.{dataset}.train", "baseline", "float", None, None, None, seed, cfg, None
    sweeps = []  # (key path, family, scheme, params)
    if ds.get("nested"):
        sweeps.append((f"datasets.{dataset}.nested", "nested", "nested", ds["nested"]["thresholds"]))
    if ds.get("loss_terms"):
        for term in spec.TERMS:
            if term in ds["loss_terms"]["terms"]:
                sweeps.append((f"datasets.{dataset}.loss_terms.terms.{term}", term, "loss_terms",
                               ds["loss_terms"]["terms"][term]))
    lr_sweeps = []  # the nested λ grid again at other learning rates (nested.learning_rates)
    extra_lrs = (ds.get("nested") or {}).get("learning_rates")
    if extra_lrs:
        lr_sweeps.append((f"datasets.{dataset}.nested.learning_rates", extra_lrs))
    for where, family, scheme, params in sweeps:
        settings = [(g, m, None) for g in granularities(ds, scheme) for m in modes(ds, scheme)]
        if scheme == "nested":
            for _, section in lr_sweeps:
                grans = section.get("granularities") or granularities(ds, scheme)[:1]
                settings += [(g, m, float(lr)) for lr in section["values"] for g in grans
                             for m in section.get("modes") or ["qat"]]
        section_seeds = [s for s in seeds if s in (ds[scheme].get("seeds") or seeds)]
        for granularity, mode, lr in settings:
            for param in params:
                for seed in section_seeds:
                    cfg = {"dataset": dataset, "scheme": scheme, "granularity": granularity, "mode": mode,
                           "seed": seed, **train}
                    if lr is not None:
                        cfg["learning_rate"] = lr
                    if scheme == "nested":
                        cfg["threshold"] = float(param)
                    else:
                        cfg["terms"] = {family: float(param)}
                    base = None
                    if mode == "ptq":
                        base, cfg["float_weights"] = float_weights(seed)
                        if ptq_epochs is not None:
                            cfg["epochs"] = ptq_epochs
                    yield where, "run", family, granularity, mode, float(param), seed, cfg, base
    gradual = ds.get("gradual")
    if gradual:  # gradual quantization: λ switched on at epoch k (lqs_core.gradual), QAT from scratch
        for granularity in gradual.get("granularities") or list(ds["granularities"])[:1]:
            for start in gradual["start_epochs"]:
                for param in gradual["thresholds"]:
                    for seed in [s for s in seeds if s in gradual.get("seeds", seeds)]:
                        cfg = {"dataset": dataset, "scheme": "nested", "granularity": granularity, "mode": "qat",
                               "seed": seed, "threshold": float(param), "scale_from_epoch": int(start), **train}
                        yield (f"datasets.{dataset}.gradual", "run", "nested", granularity, "qat", float(param),
                               seed, cfg, None)
    comp = ds.get("comparators") or {}
    comp_seeds = [s for s in seeds if s in comp.get("seeds", seeds)]
    comp_lrs = [None] + [float(lr) for lr in comp.get("learning_rates") or [] if float(lr) != train_lr(train, dataset)]
    for family, param, grans, run_modes, fields in _comparator_settings(comp):
        for granularity in grans:
            for mode, lr in [(m, lr) for m in run_modes for lr in (comp_lrs if m is not None else [None])]:
                for seed in comp_seeds:
                    cfg = {"dataset": dataset, "granularity": granularity, "seed": seed, **train, **fields}
                    if lr is not None:
                        cfg["learning_rate"] = lr
                    if family in EXTERNAL_GRANULARITY:  # not an lqs granularity: the config keeps a valid one
                        cfg["granularity"] = "outputwise"
                    if family == "keras_quantize":
                        cfg.update(scheme="ptq_eval", method=family)
                    elif family == "ptq":
                        cfg["scheme"] = "ptq_eval"
                    else:
                        cfg.update(scheme="nested", method=family, mode=mode)
                    base = None
                    if family in ("ptq", "keras_quantize") or mode == "ptq":
                        base, cfg["float_weights"] = float_weights(seed)
                    if mode == "ptq" and ptq_epochs is not None:
                        cfg["epochs"] = ptq_epochs
                    yield (f"datasets.{dataset}.comparators.{family}", "run", family, granularity, mode,
                           float(param), seed, cfg, base)


#: Counting a sweep's runs stops here (a larger one is "more than" this many).
COUNT_CEILING = 1_000_000
#: The keys of a sweep's section and of its dataset that multiply its runs.
_MULTIPLYING_KEYS = ("granularities", "modes", "seeds", "values", "start_epochs", "thresholds", "bits", "budgets",
                     "gates", "betas", "learning_rates")


def sweep_sizes(config: Mapping, results_dir: str) -> Counter:
    """The number of runs of each sweep (its key path: ``datasets.mnist.nested``, ...; the baselines under
    ``datasets.<name>.train``) of a validated ``config``, counted before any run is built (at most
    :data:`COUNT_CEILING` in all)."""
    points = (point[0] for dataset in spec.DATASETS if dataset in config["datasets"]
              for point in _points(config, dataset, results_dir))
    return Counter(itertools.islice(points, COUNT_CEILING + 1))


def _multipliers(config: Mapping, where: str) -> str:
    """The lists behind a sweep's runs and their lengths: ``datasets.d.nested.thresholds (50) x ... x seeds (3)``."""
    parts = where.split(".")
    found = {"seeds": ("seeds", len(config["seeds"]))}  # by key name: the innermost section's list wins
    node = config
    for depth, key in enumerate(parts):
        node = node.get(key) if isinstance(node, Mapping) else None
        prefix = ".".join(parts[:depth + 1])
        if isinstance(node, list):
            found[key] = (prefix, len(node))
        elif isinstance(node, Mapping) and depth >= 1:
            keys = ("seeds",) if where.endswith(".train") else _MULTIPLYING_KEYS  # the baselines: one per seed
            found.update({k: (f"{prefix}.{k}", len(v)) for k, v in node.items() if k in keys and isinstance(v, list)})
    return " x ".join(f"{path} ({n})" for path, n in found.values())


def _size_problem(config: Mapping, sizes: Counter, source: str) -> Optional[str]:
    """Why the sweep is too large to run (None if it has at most ``max_runs`` runs): its size and what multiplies."""
    total, limit = sum(sizes.values()), max_runs(config)
    if total <= limit:
        return None
    count = f"more than {COUNT_CEILING}" if total > COUNT_CEILING else str(total)
    largest = "\n  - ".join(f"{where}: {n} runs = {_multipliers(config, where)}" for where, n in sizes.most_common(3))
    return (f"Invalid {source}: the sweep expands to {count} runs; allowed: at most max_runs = {limit} (the default "
            f"is {max_runs({})}; set max_runs in the profile to run a larger sweep). The largest sweeps:\n  - "
            f"{largest}")


def expand_runs(config: Mapping, results_dir: Optional[str] = None, source: str = "workflow config") -> List[Run]:
    """Every run of ``config`` (validated here): baselines first, then the sweep points, in a fixed order.

    ``results_dir`` (default ``results/<output name>``, :func:`lqs_core.workflow.config.output_name`) is where the
    baselines live; a ``ptq`` run's ``float_weights`` points at its baseline's ``model.keras`` there. Raises
    :class:`ConfigError` for a run that :class:`lqs_core.spec.RunConfig` refuses (naming the key path of its sweep,
    e.g. ``datasets.digits.nested: granularity: 'channelwise' ...``), for run ids that collide, and for a sweep of
    more than ``max_runs`` runs (counted before any run is built; :func:`sweep_sizes`).
    """
    config = validate_config(config, source=source)
    results_dir = results_dir or os.path.join("results", output_name(config))
    too_large = _size_problem(config, sweep_sizes(config, results_dir), source)
    if too_large:
        raise ConfigError(too_large)
    baselines: List[Run] = []
    runs: List[Run] = []
    problems: List[str] = []
    for dataset in (d for d in spec.DATASETS if d in config["datasets"]):
        backend = dataset_backend(config, dataset)
        for where, kind, family, gran, mode, param, seed, cfg, base in _points(config, dataset, results_dir):
            try:
                run_config = spec.RunConfig.from_dict(dict(cfg))
            except ValueError as error:
                problem = f"{where}: {error}"
                if problem not in problems:
                    problems.append(problem)
                if kind == "baseline":  # the dataset's training settings: its other runs would repeat it
                    break
                continue
            rid = spec.run_id(run_config, training_suffixes=False)
            knobs = spec.method_knobs(run_config)[1:]
            if kind == "run" and run_config.learning_rate != train_lr(_train_fields(config, dataset), dataset):
                rid += "-" + lr_tag(run_config.learning_rate)
                knobs.append(lr_tag(run_config.learning_rate))
            variant = "-".join(knobs) or None
            run = Run(rid, kind, dataset, family, gran, mode, param, seed, cfg, base, variant, backend)
            (baselines if kind == "baseline" else runs).append(run)
    runs = baselines + runs  # every dataset's baselines first
    if problems:
        raise ConfigError(f"Invalid {source} (runs the library refuses):\n  - " + "\n  - ".join(problems))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):  # e.g. two λ values equal to 6 significant digits
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"Sweep values that differ only beyond 6 significant digits give the same run ids: {dup}")
    return runs


def runs_by_id(runs: Iterable[Run]) -> Dict[str, Run]:
    return {r.run_id: r for r in runs}


def count_runs(config: Mapping) -> Dict[str, int]:
    """Number of runs by kind and family: ``{"baseline": n, "nested": n, "maxbin": n, ..., "total": n}``."""
    counts: Dict[str, int] = {}
    for r in expand_runs(config):
        key = "baseline" if r.kind == "baseline" else r.family
        counts[key] = counts.get(key, 0) + 1
    counts["total"] = sum(counts.values())
    return counts


def needs_fetch(config: Mapping) -> List[str]:
    """Datasets of ``config`` that must be downloaded (fetched once before training)."""
    return [d for d in spec.DATASETS if d in config["datasets"] and d in spec.DOWNLOAD_DATASETS]


# ---------------------------------------------------------------------------------------------------------------
# The figures a profile gets


def _runs_of(config: Mapping, runs=None):
    return list(runs) if runs is not None else expand_runs(config)


def sweep_families(config: Mapping, runs=None) -> List[tuple]:
    """``[(dataset, family), ...]`` of the thesis' sweeps in ``config`` (one Pareto / histogram figure each; the
    comparators are drawn in the comparison figure only); ``runs``: only these (a partial results table)."""
    return sorted({(r.dataset, r.family) for r in _runs_of(config, runs)
                   if r.kind == "run" and r.family not in spec.COMPARATORS and r.variant is None},
                  key=lambda t: (spec.DATASETS.index(t[0]), names.family_order(t[1])))


def curve_modes(config: Mapping, runs=None) -> List[tuple]:
    """``[(dataset, family, mode), ...]`` that get a training-curves figure."""
    wanted = (config.get("figures") or {}).get("curves", {}).get("modes")
    found = sorted({(r.dataset, r.family, r.mode) for r in _runs_of(config, runs)
                    if r.kind == "run" and r.family not in spec.COMPARATORS and r.variant is None},
                   key=lambda t: (spec.DATASETS.index(t[0]), names.family_order(t[1]), spec.MODES.index(t[2])))
    return [t for t in found if wanted is None or t[2] in wanted]


def comparison_datasets(config: Mapping, runs=None) -> List[str]:
    """Datasets of ``config`` that get a comparison figure and Pareto table: those with at least one comparator."""
    if runs is not None:
        present = {r.dataset for r in runs if r.family in spec.COMPARATORS}
        return [d for d in spec.DATASETS if d in present]
    return [d for d in spec.DATASETS if d in config["datasets"]
            and any((config["datasets"][d].get("comparators") or {}).get(c) for c in spec.COMPARATORS)]


def gradual_datasets(config: Mapping, runs=None) -> List[str]:
    """Datasets with gradual-quantization runs (variant ``from<k>``): they get a gradual-quantization figure."""
    present = {r.dataset for r in _runs_of(config, runs)
               if r.family == "nested" and str(r.variant or "").startswith("from")}
    return [d for d in spec.DATASETS if d in present]


def figure_stems(config: Mapping, runs=None) -> Dict[str, List[str]]:
    """The figure files (without extension) each figure notebook writes into ``figures/<name>/``; ``runs``: of
    these runs only (``partial`` results, see docs/workflow.md), else of every run of ``config``."""
    runs = _runs_of(config, runs)
    fams = sweep_families(config, runs)
    return {
        "fig_pareto": [names.pareto_stem(d, f) for d, f in fams],
        "fig_curves": [names.curves_stem(d, f, m) for d, f, m in curve_modes(config, runs)]
        + [names.gradual_stem(d) for d in gradual_datasets(config, runs)],
        "fig_histograms": [names.histograms_stem(d, f) for d, f in fams],
        "table_compression": ["compression"],
        "fig_comparison": [names.comparison_stem(d) for d in comparison_datasets(config, runs)],
    }


def figure_outputs(config: Mapping, figures_dir: str, runs=None) -> Dict[str, List[str]]:
    """Every file of every figure notebook: PNG and PDF per figure, plus the tables' CSV and Markdown files."""
    runs = _runs_of(config, runs)
    out = {}
    for notebook, stems in figure_stems(config, runs).items():
        files = [os.path.join(figures_dir, f"{s}.{ext}") for s in stems for ext in ("png", "pdf")]
        if notebook == "table_compression":
            files += [os.path.join(figures_dir, name) for name in names.TABLE_FILES]
        if notebook == "fig_comparison":
            files += [os.path.join(figures_dir, f"{names.pareto_table_stem(d)}.{ext}")
                      for d in comparison_datasets(config, runs) for ext in ("csv", "md")]
        out[notebook] = files
    return out
