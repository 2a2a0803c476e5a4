"""The sweep: every run of a profile (:func:`expand_runs`), and the figure files the profile gets.

Per dataset and seed one float baseline, then datasets × scheme (nested: the λ grid; loss terms: each term over its
γ grid) × granularity × mode (``qat`` | ``ptq``) × seed, then the comparators; a ``ptq`` run (and a ``ptq_eval``
comparator) starts from the baseline of its dataset and seed. Every run is described by a
:class:`lqs_core.spec.RunConfig`, built here for every run before anything is trained (so a run the library would
refuse is a config error naming its key path), and its id is :func:`lqs_core.spec.run_id` without the training
suffixes a profile shares by all its runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional

from lqs_core import spec
from lqs_core.workflow import names
from lqs_core.workflow.config import (DEFAULT_BACKEND, ConfigError, dataset_backend, dataset_seeds, granularities,
                                      modes, output_name, validate_config)

#: The folder of a run's kind under ``results/<profile>/`` (and ``logs/<profile>/``).
FOLDERS = {"baseline": "baselines", "run": "runs"}
#: The figure notebooks (``notebooks/<name>.ipynb``) and their section of the profile's ``figures`` parameters.
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
    fields = dict(config["datasets"][dataset].get("train") or {})
    if config.get("data_dir"):
        fields["data_dir"] = config["data_dir"]
    return fields


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
        run_modes = [None] if family == "ptq" else list(section.get("modes") or default_modes)
        if family in ("ptq", "fixed", "lsq"):
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


def _points(config: Mapping, dataset: str, results_dir: str):
    """``(key path, kind, family, granularity, mode, param, seed, config dict, baseline)`` of every run of
    ``dataset`` in the sweep's order: baselines first (per seed), then the thesis' schemes, then the comparators."""
    ds = config["datasets"][dataset]
    train = _train_fields(config, dataset)
    seeds = dataset_seeds(config, dataset)

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
    for where, family, scheme, params in sweeps:
        for granularity in granularities(ds, scheme):
            for mode in modes(ds, scheme):
                for param in params:
                    for seed in seeds:
                        cfg = {"dataset": dataset, "scheme": scheme, "granularity": granularity, "mode": mode,
                               "seed": seed, **train}
                        if scheme == "nested":
                            cfg["threshold"] = float(param)
                        else:
                            cfg["terms"] = {family: float(param)}
                        base = None
                        if mode == "ptq":
                            base, cfg["float_weights"] = float_weights(seed)
                        yield where, "run", family, granularity, mode, float(param), seed, cfg, base
    comp = ds.get("comparators") or {}
    comp_seeds = [s for s in seeds if s in comp.get("seeds", seeds)]
    for family, param, grans, run_modes, fields in _comparator_settings(comp):
        for granularity in grans:
            for mode in run_modes:
                for seed in comp_seeds:
                    cfg = {"dataset": dataset, "granularity": granularity, "seed": seed, **train, **fields}
                    if family == "ptq":
                        cfg["scheme"] = "ptq_eval"
                    else:
                        cfg.update(scheme="nested", method=family, mode=mode)
                    base = None
                    if family == "ptq" or mode == "ptq":
                        base, cfg["float_weights"] = float_weights(seed)
                    yield (f"datasets.{dataset}.comparators.{family}", "run", family, granularity, mode,
                           float(param), seed, cfg, base)


def expand_runs(config: Mapping, results_dir: Optional[str] = None, source: str = "workflow config") -> List[Run]:
    """Every run of ``config`` (validated here): baselines first, then the sweep points, in a fixed order.

    ``results_dir`` (default ``results/<output name>``, :func:`lqs_core.workflow.config.output_name`) is where the
    baselines live; a ``ptq`` run's ``float_weights`` points at its baseline's ``model.keras`` there. Raises
    :class:`ConfigError` for a run that :class:`lqs_core.spec.RunConfig` refuses (naming the key path of its sweep,
    e.g. ``datasets.digits.nested: granularity: 'channelwise' ...``) and for run ids that collide.
    """
    config = validate_config(config, source=source)
    results_dir = results_dir or os.path.join("results", output_name(config))
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
            variant = "-".join(spec.method_knobs(run_config)[1:]) or None
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


def sweep_families(config: Mapping) -> List[tuple]:
    """``[(dataset, family), ...]`` of the thesis' sweeps in ``config`` (one Pareto / histogram figure each; the
    comparators are drawn in the comparison figure only)."""
    return sorted({(r.dataset, r.family) for r in expand_runs(config)
                   if r.kind == "run" and r.family not in spec.COMPARATORS},
                  key=lambda t: (spec.DATASETS.index(t[0]), names.family_order(t[1])))


def curve_modes(config: Mapping) -> List[tuple]:
    """``[(dataset, family, mode), ...]`` that get a training-curves figure."""
    wanted = (config.get("figures") or {}).get("curves", {}).get("modes")
    found = sorted({(r.dataset, r.family, r.mode) for r in expand_runs(config)
                    if r.kind == "run" and r.family not in spec.COMPARATORS},
                   key=lambda t: (spec.DATASETS.index(t[0]), names.family_order(t[1]), spec.MODES.index(t[2])))
    return [t for t in found if wanted is None or t[2] in wanted]


def comparison_datasets(config: Mapping) -> List[str]:
    """Datasets of ``config`` that get a comparison figure and Pareto table: those with at least one comparator."""
    return [d for d in spec.DATASETS if d in config["datasets"]
            and any((config["datasets"][d].get("comparators") or {}).get(c) for c in spec.COMPARATORS)]


def figure_stems(config: Mapping) -> Dict[str, List[str]]:
    """The figure files (without extension) each figure notebook writes into ``figures/<name>/``."""
    fams = sweep_families(config)
    return {
        "fig_pareto": [names.pareto_stem(d, f) for d, f in fams],
        "fig_curves": [names.curves_stem(d, f, m) for d, f, m in curve_modes(config)],
        "fig_histograms": [names.histograms_stem(d, f) for d, f in fams],
        "table_compression": ["compression"],
        "fig_comparison": [names.comparison_stem(d) for d in comparison_datasets(config)],
    }


def figure_outputs(config: Mapping, figures_dir: str) -> Dict[str, List[str]]:
    """Every file of every figure notebook: PNG and PDF per figure, plus the tables' CSV and Markdown files."""
    out = {}
    for notebook, stems in figure_stems(config).items():
        files = [os.path.join(figures_dir, f"{s}.{ext}") for s in stems for ext in ("png", "pdf")]
        if notebook == "table_compression":
            files += [os.path.join(figures_dir, name) for name in names.TABLE_FILES]
        if notebook == "fig_comparison":
            files += [os.path.join(figures_dir, f"{names.pareto_table_stem(d)}.{ext}")
                      for d in comparison_datasets(config) for ext in ("csv", "md")]
        out[notebook] = files
    return out
