"""The reproduction workflow's logic: configuration, sweep expansion, results table, figures.

The ``Snakefile`` and the notebooks in ``notebooks/`` stay thin; what they do is here and unit-tested
(``tests/test_workflow_config.py``, ``tests/test_workflow.py``):

* :func:`validate_config` checks a workflow configuration (``config/*.yaml``) against ``config/schema.yaml``
  (JSON Schema, every object closed) plus the rules a schema cannot say, and raises :class:`ConfigError` naming
  every bad key and value;
* :func:`expand_runs` turns a configuration into the list of training runs (:class:`Run`): per dataset and seed
  one float baseline, then datasets × scheme (nested: λ grid; loss terms: each term over its γ grid) ×
  granularity × mode (``qat`` | ``ptq``) × seed; a ``ptq`` run starts from the baseline of its dataset and seed;
* :func:`collect_results` builds the tidy results table (one row per finished run: the run's configuration and
  its final metrics), the single source the figure notebooks read; :func:`load_histories` the per-epoch curves;
* figure helpers: :func:`set_style` (fixed rcParams) and :func:`savefig` (PNG and PDF written byte-identically
  on every re-run: no timestamps or software versions in the files, fixed SVG hash salt), and the plots of the
  four figure notebooks (:func:`pareto_figure`, :func:`curves_figure`, :func:`histogram_figure`,
  :func:`compression_table` / :func:`table_figure`).

This module imports no TensorFlow (the Snakefile loads it at every invocation); numpy, pandas and matplotlib
are imported where they are used.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from lqs_core import atomic

#: Repository root (this file is ``<root>/lqs_core/workflow.py``).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: JSON Schema of the workflow configuration.
SCHEMA_PATH = REPO_ROOT / "config" / "schema.yaml"

#: Datasets, in the order sweeps and tables list them (same names as :data:`lqs_core.data.DATASETS`).
DATASETS = ("digits", "mnist", "cifar10", "imagenette")
#: Datasets whose networks quantize Dense layers only (``channelwise`` is not defined for them).
DENSE_DATASETS = ("digits", "mnist")
#: Datasets that must be downloaded (fetched once by the workflow before training).
DOWNLOAD_DATASETS = ("mnist", "cifar10", "imagenette")
#: Granularity names (SPEC §1.2), in plotting order.
GRANULARITIES = ("rowwise", "columnwise", "channelwise", "outputwise", "scalar")
#: Loss terms (SPEC §2; keys of :data:`lqs_core.losses.TERMS`), in plotting order.
TERMS = ("maxbin", "inverse", "difference", "reconstruction")
MODES = ("qat", "ptq")
SCHEMES = ("nested", "loss_terms", "float", "ptq_eval")
#: Comparators (SPEC §5, :mod:`lqs_core.comparators`) as families / methods of the workflow, in plotting order:
#: ``ptq`` = min-max post-training quantization of the float baseline (scheme ``ptq_eval``, no training).
COMPARATORS = ("ptq", "fixed", "lsq", "cgmq", "layer_importance")
#: Granularities of the comparator quantizers' scales (per tensor, per output channel).
COMPARATOR_GRANULARITIES = ("scalar", "outputwise")
#: Defaults of the CGMQ / layer-importance options (lqs_core.comparators.cgmq, lqs_core.training), for run ids.
CGMQ_DEFAULT_GATE_LR = {1: 0.01, 2: 0.01, 3: 0.001}
CGMQ_GATE_INIT = 5.5
LAYER_IMPORTANCE_DEFAULTS = {"min_bits": 2, "finetune_epochs": 0, "imprint_samples": 1024}
#: The ``method`` column of the results table: every family, in plotting order.
METHODS = ("float", "nested", "maxbin", "inverse", "difference", "reconstruction") + COMPARATORS
METHOD_NAMES = {"float": "float baseline", "nested": "nested (λ)", "maxbin": "MaxBin (γ)", "inverse": "Inverse (γ)",
                "difference": "Difference (γ)", "reconstruction": "Reconstruction (γ)", "ptq": "PTQ min-max",
                "fixed": "fixed-bit QAT", "lsq": "LSQ", "cgmq": "CGMQ", "layer_importance": "layer importance"}
#: Display names.
TERM_NAMES = {"maxbin": "MaxBin", "inverse": "Inverse", "difference": "Difference",
              "reconstruction": "Reconstruction error"}
MODE_NAMES = {"qat": "QAT (from scratch)", "ptq": "PTQ (from float baseline)"}

#: Files a finished run directory holds (written by ``RunResult.save``); ``metrics.json`` is written last.
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
INTEGERS_FILE = "integers.lqsint"
MODEL_FILE = "model.keras"


class ConfigError(ValueError):
    """An invalid workflow configuration; the message names every bad key and value."""


# ---------------------------------------------------------------------------------------------------------------
# Configuration

_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def load_schema(path=SCHEMA_PATH) -> dict:
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_config(path) -> dict:
    """Read a YAML/JSON configuration file and validate it (see :func:`validate_config`)."""
    import yaml

    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    return validate_config(config, source=str(path))


def _normalize(value):
    """Plain dicts/lists; numeric strings (YAML reads ``1e-10`` as a string) to numbers; mapping keys to str."""
    if isinstance(value, Mapping):
        return {str(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        number = float(value)
        return int(number) if number.is_integer() and re.match(r"^[-+]?\d+$", value.strip()) else number
    return value


def _path(error) -> str:
    parts = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else (f".{p}" if parts else str(p)))
    return "".join(parts) or "<top level>"


def _message(error) -> str:
    where = _path(error)
    if error.validator == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        extra = sorted(set(error.instance) - set(allowed))
        if error.schema.get("patternProperties"):
            pats = list(error.schema["patternProperties"])
            extra = [k for k in extra if not any(re.search(p, k) for p in pats)]
        keys = ", ".join(repr(k) for k in extra)
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{where}: unknown key {keys}{hint}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "minimum":
        return f"{where}: {error.instance!r} must be >= {error.validator_value}"
    if error.validator == "maximum":
        return f"{where}: {error.instance!r} must be <= {error.validator_value}"
    if error.validator == "exclusiveMinimum":
        return f"{where}: {error.instance!r} must be > {error.validator_value}"
    if error.validator == "oneOf" and error.context:
        # Name the most specific reason (e.g. a negative λ rather than "not valid under any of the given schemas").
        best = sorted(error.context, key=lambda e: (e.validator == "type", -len(e.absolute_path)))[0]
        return _message(best) if best.validator != "type" else f"{where}: {error.message}"
    return f"{where}: {error.message}"


def validate_config(config, schema: Optional[dict] = None, source: str = "workflow config") -> dict:
    """Check ``config`` and return a normalized deep copy; raise :class:`ConfigError` naming every problem.

    Checks the JSON Schema ``config/schema.yaml`` (closed objects, so an unknown key is named; enums for dataset,
    granularity, loss term and mode; λ and γ numbers >= 0), then the rules across keys: ``channelwise`` only for
    Conv2D networks (cifar10, imagenette), and at least one scheme (``nested`` or ``loss_terms``) per dataset.
    """
    import jsonschema

    if config is None or not isinstance(config, Mapping):
        raise ConfigError(f"Invalid {source}: expected a mapping of keys, got {type(config).__name__}.")
    config = _normalize(copy.deepcopy(dict(config)))
    schema = load_schema() if schema is None else schema
    validator = jsonschema.Draft202012Validator(schema)
    problems = sorted({_message(e) for e in validator.iter_errors(config)})
    if not problems:
        for name, spec in config.get("datasets", {}).items():
            if not (spec.get("nested") or spec.get("loss_terms")):
                problems.append(f"datasets.{name}: needs a 'nested' and/or a 'loss_terms' sweep")
            for scheme in ("nested", "loss_terms"):
                if scheme not in spec:
                    continue
                if name in DENSE_DATASETS and "channelwise" in _granularities(spec, scheme):
                    problems.append(
                        f"datasets.{name}.{scheme}: granularity 'channelwise' is defined only for Conv2D kernels; "
                        f"the {name} network quantizes Dense layers (use rowwise, columnwise, scalar or outputwise)"
                    )
            comp = spec.get("comparators") or {}
            li = comp.get("layer_importance") or {}
            min_bits = li.get("min_bits", LAYER_IMPORTANCE_DEFAULTS["min_bits"])
            for bits in li.get("bits", []):
                if min_bits > bits:
                    problems.append(f"datasets.{name}.comparators.layer_importance.min_bits: {min_bits} is more "
                                    f"than the start bits {bits}")
                for budget in li.get("budgets") or []:
                    if budget is not None and not min_bits <= budget <= bits:
                        problems.append(f"datasets.{name}.comparators.layer_importance.budgets: target mean bits "
                                        f"{budget} must be in min_bits..bits = {min_bits}..{bits}")
            dseeds = spec.get("seeds", config["seeds"])
            cseeds = comp.get("seeds")
            if cseeds is not None and not set(cseeds) <= set(dseeds):
                problems.append(f"datasets.{name}.comparators.seeds: {sorted(set(cseeds) - set(dseeds))} "
                                f"not among the seeds {dseeds}")
        fig = (config.get("figures") or {}).get("histograms") or {}
        all_seeds = sorted({s for spec in config.get("datasets", {}).values() for s in spec.get("seeds", config["seeds"])})
        if fig.get("seed") is not None and fig["seed"] not in all_seeds:
            problems.append(f"figures.histograms.seed: {fig['seed']} is not one of the seeds {all_seeds}")
    if problems:
        raise ConfigError(f"Invalid {source}:\n  - " + "\n  - ".join(problems))
    config.setdefault("threads", 1)
    config.setdefault("data_dir", None)
    config.setdefault("figures", {})
    return config


def _granularities(spec: Mapping, scheme: str) -> list:
    return list(spec[scheme].get("granularities") or spec["granularities"])


def _modes(spec: Mapping, scheme: str) -> list:
    return list(spec[scheme].get("modes") or spec.get("modes") or ["qat"])


# ---------------------------------------------------------------------------------------------------------------
# Sweep expansion


def format_value(value: float) -> str:
    """Compact, unique text of a λ/γ value for ids and labels: ``0``, ``1e-10``, ``0.5``."""
    value = float(value)
    if value == 0:
        return "0"
    text = f"{value:.6g}"
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


@dataclass(frozen=True)
class Run:
    """One training run of the workflow.

    ``config`` is the ``lqs_core.training.RunConfig`` dict (unset fields take the dataset's defaults);
    ``baseline`` the id of the float run a ``ptq`` run starts from. ``family`` is ``nested``, the loss term's
    name, ``float``, or a comparator (:data:`COMPARATORS`); ``param`` the swept λ or γ, a comparator's bits
    (``cgmq``: its BOP budget; None for the float baseline); ``variant`` the comparator's other knobs as in
    the run id (``gweight``, ``avg3``; None where there are none). ``mode`` is None for the baseline and ``ptq``.
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

    @property
    def scheme(self) -> str:
        return self.config["scheme"]

    def directory(self, results_dir) -> str:
        sub = "baselines" if self.kind == "baseline" else "runs"
        return os.path.join(str(results_dir), sub, self.run_id)


def baseline_id(dataset: str, seed: int) -> str:
    return f"{dataset}-float-s{seed}"


def _g(value) -> str:
    return f"{float(value):g}"


def run_id(dataset, family, granularity, mode, param, seed) -> str:
    """The run's id, in the format of :func:`lqs_core.training.run_id` (without its suffixes for non-default
    training settings, which a profile shares by all its runs): ``digits-nested-rowwise-lam1e-10-qat-s42``,
    ``digits-loss_terms-rowwise-maxbin1e-08-qat-s42``; the float baseline is ``digits-float-s42``."""
    if family == "nested":
        return f"{dataset}-nested-{granularity}-lam{_g(param)}-{mode}-s{seed}"
    return f"{dataset}-loss_terms-{granularity}-{family}{_g(param)}-{mode}-s{seed}"


def comparator_knobs(family: str, param, options: Optional[Mapping] = None) -> List[str]:
    """The run-id parts of a comparator setting (as :func:`lqs_core.training._method_knobs`): ``b<bits>`` (ptq,
    fixed, lsq, layer_importance; then ``avg<budget>``, ``min<b>``, ``ft<n>``, ``imp<n>`` where not default),
    ``bud<budget>`` (cgmq; then ``g<gates>``, ``dir<k>``, ``glr<lr>``, ``gi<init>`` where not default)."""
    o = dict(options or {})
    if family == "cgmq":
        parts = [f"bud{_g(param)}"]
        direction = int(o.get("direction", 1))
        if o.get("gates", "layer") != "layer":
            parts.append(f"g{o['gates']}")
        if direction != 1:
            parts.append(f"dir{direction}")
        if float(o.get("gate_lr", CGMQ_DEFAULT_GATE_LR[direction])) != CGMQ_DEFAULT_GATE_LR[direction]:
            parts.append(f"glr{_g(o['gate_lr'])}")
        if float(o.get("gate_init", CGMQ_GATE_INIT)) != CGMQ_GATE_INIT:
            parts.append(f"gi{_g(o['gate_init'])}")
        return parts
    parts = [f"b{int(param)}"]
    if family == "layer_importance":
        if o.get("budget") is not None:
            parts.append(f"avg{_g(o['budget'])}")
        for key, tag in (("min_bits", "min"), ("finetune_epochs", "ft"), ("imprint_samples", "imp")):
            if key in o and o[key] != LAYER_IMPORTANCE_DEFAULTS[key]:
                parts.append(f"{tag}{o[key]}")
    return parts


def comparator_run_id(dataset, family, granularity, mode, param, seed, options=None) -> str:
    """Id of a comparator run, as :func:`lqs_core.training.run_id`: ``digits-lsq-outputwise-b4-qat-s42``,
    ``digits-cgmq-scalar-bud0.1-gweight-qat-s42``, ``digits-ptq_eval-outputwise-b8-s42`` (no mode: no training)."""
    knobs = "-".join(comparator_knobs(family, param, options))
    if family == "ptq":
        return f"{dataset}-ptq_eval-{granularity}-{knobs}-s{seed}"
    return f"{dataset}-{family}-{granularity}-{knobs}-{mode}-s{seed}"


def _comparator_settings(comp: Mapping) -> List[tuple]:
    """``[(family, param, granularities, modes, {RunConfig fields}, options for the id, variant), ...]`` of a
    dataset's ``comparators`` section, in the order of :data:`COMPARATORS`."""
    default_grans = list(comp.get("granularities") or ["scalar"])
    default_modes = list(comp.get("modes") or ["qat"])
    out = []
    for family in COMPARATORS:
        spec = comp.get(family)
        if not spec:
            continue
        grans = list(spec.get("granularities") or default_grans)
        modes = [None] if family == "ptq" else list(spec.get("modes") or default_modes)
        if family in ("ptq", "fixed", "lsq"):
            for bits in spec["bits"]:
                out.append((family, int(bits), grans, modes, {"bits": int(bits)}, {}, None))
        elif family == "cgmq":
            extra = {k: spec[k] for k in ("direction", "gate_lr", "gate_init") if k in spec}
            for gates in spec.get("gates") or ["layer"]:
                options = {"gates": gates, **extra}
                variant = "-".join(comparator_knobs("cgmq", 1, options)[1:]) or None
                for budget in spec["budgets"]:
                    out.append((family, float(budget), grans, modes,
                                {"budget": float(budget), "method_options": dict(options)}, options, variant))
        else:  # layer_importance
            options = {k: spec[k] for k in ("min_bits", "finetune_epochs", "imprint_samples") if k in spec}
            for bits in spec["bits"]:
                for budget in spec.get("budgets") or [None]:
                    fields = {"bits": int(bits), "method_options": dict(options)}
                    if budget is not None:
                        fields["budget"] = float(budget)
                    id_options = {**options, "budget": budget}
                    variant = "-".join(comparator_knobs(family, bits, id_options)[1:]) or None
                    out.append((family, int(bits), grans, modes, fields, id_options, variant))
    return out


def _train_fields(config: Mapping, dataset: str) -> dict:
    fields = dict(config["datasets"][dataset].get("train") or {})
    if config.get("data_dir"):
        fields["data_dir"] = config["data_dir"]
    return fields


def dataset_seeds(config: Mapping, dataset: str) -> List[int]:
    """Seeds of ``dataset``'s runs: its own ``seeds`` key, else the profile's ``seeds``."""
    return list(config["datasets"][dataset].get("seeds", config["seeds"]))


def expand_runs(config: Mapping, results_dir: Optional[str] = None) -> List[Run]:
    """Every run of the (validated) ``config``: baselines first, then the sweep points, in a fixed order.

    ``results_dir`` (default ``results/<name>``) is where the baselines live; a ``ptq`` run's ``float_weights``
    points at its baseline's ``model.keras`` there.
    """
    config = validate_config(config)
    results_dir = results_dir or os.path.join("results", config["name"])
    runs: List[Run] = []
    for dataset in (d for d in DATASETS if d in config["datasets"]):
        train = _train_fields(config, dataset)
        for seed in dataset_seeds(config, dataset):
            cfg = {"dataset": dataset, "scheme": "float", "seed": seed, **train}
            runs.append(Run(baseline_id(dataset, seed), "baseline", dataset, "float", None, None, None, seed, cfg))
    for dataset in (d for d in DATASETS if d in config["datasets"]):
        spec = config["datasets"][dataset]
        train = _train_fields(config, dataset)
        seeds = dataset_seeds(config, dataset)
        sweeps = []  # (family, scheme, [param], {config fields for param})
        if spec.get("nested"):
            sweeps.append(("nested", "nested", spec["nested"]["thresholds"]))
        if spec.get("loss_terms"):
            for term in TERMS:
                if term in spec["loss_terms"]["terms"]:
                    sweeps.append((term, "loss_terms", spec["loss_terms"]["terms"][term]))
        for family, scheme, params in sweeps:
            for granularity in _granularities(spec, scheme):
                for mode in _modes(spec, scheme):
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
                                base = baseline_id(dataset, seed)
                                cfg["float_weights"] = os.path.join(results_dir, "baselines", base, MODEL_FILE)
                            rid = run_id(dataset, family, granularity, mode, param, seed)
                            runs.append(Run(rid, "run", dataset, family, granularity, mode, float(param), seed,
                                            cfg, base))
        comp = spec.get("comparators") or {}
        comp_seeds = [s for s in seeds if s in comp.get("seeds", seeds)]
        for family, param, grans, modes, fields, id_options, variant in _comparator_settings(comp):
            for granularity in grans:
                for mode in modes:
                    for seed in comp_seeds:
                        cfg = {"dataset": dataset, "granularity": granularity, "seed": seed, **train, **fields}
                        if family == "ptq":
                            cfg["scheme"] = "ptq_eval"
                        else:
                            cfg.update(scheme="nested", method=family, mode=mode)
                        base = None
                        if family == "ptq" or mode == "ptq":
                            base = baseline_id(dataset, seed)
                            cfg["float_weights"] = os.path.join(results_dir, "baselines", base, MODEL_FILE)
                        rid = comparator_run_id(dataset, family, granularity, mode, param, seed, id_options)
                        runs.append(Run(rid, "run", dataset, family, granularity, mode, float(param), seed, cfg,
                                        base, variant))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):  # e.g. two λ values equal to 6 significant digits
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"Sweep values that differ only beyond 6 significant digits give the same run ids: {dup}")
    return runs


def runs_by_id(runs: Iterable[Run]) -> Dict[str, Run]:
    return {r.run_id: r for r in runs}


def sweep_families(config: Mapping) -> List[tuple]:
    """``[(dataset, family), ...]`` of the thesis' sweeps in ``config`` (one Pareto / histogram figure each; the
    comparators are drawn in the comparison figure only)."""
    return sorted({(r.dataset, r.family) for r in expand_runs(config)
                   if r.kind == "run" and r.family not in COMPARATORS},
                  key=lambda t: (DATASETS.index(t[0]), _family_order(t[1])))


def _family_order(family: str) -> int:
    return 0 if family == "nested" else 1 + TERMS.index(family) if family in TERMS else 99


def curve_modes(config: Mapping) -> List[tuple]:
    """``[(dataset, family, mode), ...]`` that get a training-curves figure."""
    wanted = (config.get("figures") or {}).get("curves", {}).get("modes")
    found = sorted({(r.dataset, r.family, r.mode) for r in expand_runs(config)
                    if r.kind == "run" and r.family not in COMPARATORS},
                   key=lambda t: (DATASETS.index(t[0]), _family_order(t[1]), MODES.index(t[2])))
    return [t for t in found if wanted is None or t[2] in wanted]


def pareto_stem(dataset: str, family: str) -> str:
    return f"pareto_{dataset}_{family}"


def curves_stem(dataset: str, family: str, mode: str) -> str:
    return f"curves_{dataset}_{family}_{mode}"


def histograms_stem(dataset: str, family: str) -> str:
    return f"histograms_{dataset}_{family}"


#: Files of the compression table besides its PNG/PDF figure.
TABLE_FILES = ("compression.csv", "compression.md", "compression_settings.csv")


def figure_stems(config: Mapping) -> Dict[str, List[str]]:
    """The figure files (without extension) each figure notebook writes into ``figures/<name>/``."""
    fams = sweep_families(config)
    return {
        "fig_pareto": [pareto_stem(d, f) for d, f in fams],
        "fig_curves": [curves_stem(d, f, m) for d, f, m in curve_modes(config)],
        "fig_histograms": [histograms_stem(d, f) for d, f in fams],
        "table_compression": ["compression"],
        "fig_comparison": [comparison_stem(d) for d in comparison_datasets(config)],
    }


def figure_outputs(config: Mapping, figures_dir: str) -> Dict[str, List[str]]:
    """Every file of every figure notebook: PNG and PDF per figure, plus the table's CSV and Markdown files."""
    out = {}
    for notebook, stems in figure_stems(config).items():
        files = [os.path.join(figures_dir, f"{s}.{ext}") for s in stems for ext in ("png", "pdf")]
        if notebook == "table_compression":
            files += [os.path.join(figures_dir, name) for name in TABLE_FILES]
        if notebook == "fig_comparison":
            files += [os.path.join(figures_dir, f"{pareto_table_stem(d)}.{ext}")
                      for d in comparison_datasets(config) for ext in ("csv", "md")]
        out[notebook] = files
    return out


def comparison_datasets(config: Mapping) -> List[str]:
    """Datasets of ``config`` that get a comparison figure and Pareto table: those with at least one comparator."""
    return [d for d in DATASETS if d in config["datasets"]
            and any((config["datasets"][d].get("comparators") or {}).get(c) for c in COMPARATORS)]


def comparison_stem(dataset: str) -> str:
    return f"comparison_{dataset}"


def pareto_table_stem(dataset: str) -> str:
    return f"pareto_points_{dataset}"


def _thesis_runs(results):
    """The quantized runs of the thesis' schemes (nested, loss terms): no comparators."""
    return results[(results["kind"] == "run") & ~results["family"].isin(COMPARATORS)]


def result_families(results) -> List[tuple]:
    """``[(dataset, family), ...]`` of the sweeps present in a results table, in the order of :func:`sweep_families`."""
    runs = _thesis_runs(results)
    found = {(d, f) for d, f in zip(runs["dataset"], runs["family"])}
    return sorted(found, key=lambda t: (DATASETS.index(t[0]), _family_order(t[1])))


def curve_keys(results, modes: Optional[Sequence[str]] = None) -> List[tuple]:
    """``[(dataset, family, mode), ...]`` of a results table that get a curves figure (as :func:`curve_modes`)."""
    runs = _thesis_runs(results)
    found = {(d, f, m) for d, f, m in zip(runs["dataset"], runs["family"], runs["mode"])}
    keys = sorted(found, key=lambda t: (DATASETS.index(t[0]), _family_order(t[1]), MODES.index(t[2])))
    return [k for k in keys if modes is None or k[2] in modes]


def needs_fetch(config: Mapping) -> List[str]:
    """Datasets of ``config`` that must be downloaded (fetched once before training)."""
    return [d for d in DATASETS if d in config["datasets"] and d in DOWNLOAD_DATASETS]


def count_runs(config: Mapping) -> Dict[str, int]:
    """Number of runs by kind and family: ``{"baseline": n, "nested": n, "maxbin": n, ..., "total": n}``."""
    counts: Dict[str, int] = {}
    for r in expand_runs(config):
        key = "baseline" if r.kind == "baseline" else r.family
        counts[key] = counts.get(key, 0) + 1
    counts["total"] = sum(counts.values())
    return counts


# ---------------------------------------------------------------------------------------------------------------
# Results table

#: Columns of the results table that describe the run (the final metrics follow).
ID_COLUMNS = ["run_id", "kind", "dataset", "scheme", "method", "family", "granularity", "mode", "seed", "param",
              "variant", "threshold", "term", "gamma"]
#: Metrics every figure needs, in the order they come after the configuration columns.
METRIC_COLUMNS = ["val_accuracy", "val_loss", "accuracy", "loss", "unique_integers", "int_range", "int_min",
                  "int_max", "bits_unique", "bits_fixed", "zip_bytes", "float_zip_bytes", "packed_bytes",
                  "huffman_bytes", "float32_bytes", "zip_ratio", "packed_ratio"]
PATH_COLUMNS = ["history", "integers"]


def _cell(v):
    """A table cell: scalars as they are, lists/dicts as compact JSON text."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def result_row(run: Run, run_dir: str, results_dir: str) -> dict:
    """One row of the results table for a finished run.

    The run's identity (:data:`ID_COLUMNS`; ``granularity``/``mode``/``param`` empty for the float baseline),
    every field of its resolved ``RunConfig`` (``metrics.json["config"]``; ``terms`` as ``term``/``gamma``,
    ``lr_schedule`` as JSON text; ``float_weights``, ``data_dir`` and ``tensorboard_dir`` left out since they
    are machine paths), every number of its final report (``metrics.json["report"]``), and the paths of its
    history and integer files relative to the results folder.
    """
    with open(os.path.join(run_dir, METRICS_FILE), encoding="utf-8") as f:
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
    }
    for key, value in (metrics.get("report") or {}).items():
        row.setdefault(key, _cell(value))
    for key, value in (metrics.get("config") or {}).items():
        if key in ("terms", "float_weights", "data_dir", "tensorboard_dir") or key in row:
            continue
        row[key] = _cell(value)
    rel = os.path.relpath(run_dir, results_dir)
    files = metrics.get("files") or {}
    for col, default in (("history", HISTORY_FILE), ("integers", INTEGERS_FILE)):
        name = files.get(col, default)
        row[col] = Path(rel, name).as_posix() if os.path.exists(os.path.join(run_dir, name)) else None
    return row


def collect_results(runs: Sequence[Run], results_dir: str, missing_ok: bool = False):
    """The tidy results table (a DataFrame): one row per finished run, sorted by kind and run id.

    Columns: :data:`ID_COLUMNS`, then :data:`METRIC_COLUMNS` (where present), then the other configuration
    fields and report numbers in alphabetical order, then the relative paths of the run's history and integer
    files (see :func:`result_row`). A run without ``metrics.json`` raises unless ``missing_ok``.
    """
    import pandas as pd

    rows = []
    for run in runs:
        run_dir = run.directory(results_dir)
        if not os.path.exists(os.path.join(run_dir, METRICS_FILE)):
            if missing_ok:
                continue
            raise FileNotFoundError(f"Run {run.run_id} has no {METRICS_FILE} in {run_dir}.")
        rows.append(result_row(run, run_dir, results_dir))
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=ID_COLUMNS + METRIC_COLUMNS + PATH_COLUMNS)
    rest = sorted(c for c in df.columns if c not in ID_COLUMNS + METRIC_COLUMNS + PATH_COLUMNS)
    cols = ID_COLUMNS + [c for c in METRIC_COLUMNS if c in df.columns] + rest + PATH_COLUMNS
    df = df.reindex(columns=cols)
    df["_k"] = (df["kind"] != "baseline").astype(int)
    return df.sort_values(["_k", "run_id"], kind="mergesort").drop(columns="_k").reset_index(drop=True)


def write_table(df, path) -> str:
    """Write ``df`` as CSV atomically (temporary file + rename); byte-identical for the same table."""
    text = df.to_csv(index=False, lineterminator="\n")
    return write_text_atomic(path, text)


def write_text_atomic(path, text: str) -> str:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    return atomic.write_text(path, text)


def read_results(results_dir):
    """The results table ``<results_dir>/results.csv`` (``kind`` ``baseline`` rows are the float runs)."""
    import pandas as pd

    path = os.path.join(str(results_dir), "results.csv")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No results table at {path}. Run the workflow first (snakemake --cores N), or point results_dir at "
            "a profile's results folder (results/<name>/)."
        )
    return pd.read_csv(path)


def load_histories(results, results_dir):
    """Per-epoch history of every run of ``results`` with a history file, joined with the run's columns.

    Returns a long DataFrame with the run columns (``run_id``, ``kind``, ``dataset``, ``family``,
    ``granularity``, ``mode``, ``seed``, ``param``) and the history's columns (``epoch``, ``val_accuracy``, ...).
    The ``ptq`` comparator runs (quantized, evaluated, never trained: one row at epoch 0) are left out.
    """
    import pandas as pd

    keep = ["run_id", "kind", "dataset", "family", "granularity", "mode", "seed", "param"]
    frames = []
    for row in results.sort_values("run_id").itertuples(index=False):
        if getattr(row, "family") == "ptq":
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


# ---------------------------------------------------------------------------------------------------------------
# Aggregation over seeds, operating points


def param_symbol(family: str) -> str:
    return "λ" if family == "nested" else "γ"


def family_title(family: str) -> str:
    if family == "nested":
        return "nested scheme (threshold λ)"
    if family == "float":
        return "float baseline"
    return f"loss term {TERM_NAMES.get(family, family)} (penalty rate γ)"


def aggregate_seeds(df, by: Sequence[str], columns: Sequence[str]):
    """Mean, standard deviation (ddof 1; 0 for one seed) and count over seeds of ``columns`` per ``by`` group."""
    import pandas as pd

    out = []
    for key, group in df.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["n_seeds"] = int(len(group))
        for col in columns:
            values = pd.to_numeric(group[col], errors="coerce").astype(float)
            row[f"{col}_mean"] = float(values.mean())
            row[f"{col}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(row)
    return pd.DataFrame(out)


def baseline_accuracy(results, dataset: str) -> Optional[float]:
    """Mean final validation accuracy over seeds of the float baseline of ``dataset`` (None without one)."""
    base = results[(results["kind"] == "baseline") & (results["dataset"] == dataset)]
    return float(base["val_accuracy"].mean()) if len(base) else None


def select_operating_point(agg, reference_accuracy: Optional[float], tolerance: float, size: str = "zip_bytes"):
    """The row of ``agg`` (per-setting means, see :func:`aggregate_seeds`) with the smallest mean ``size`` whose
    mean validation accuracy is at least ``reference_accuracy - tolerance`` (ties: higher accuracy, then larger
    param); without a reference or a qualifying row, the most accurate row. Returns ``(row, within_tolerance)``.
    """
    if agg.empty:
        raise ValueError("No runs to choose an operating point from.")
    ordered = agg.sort_values([f"{size}_mean", "val_accuracy_mean", "param"], ascending=[True, False, False],
                              kind="mergesort")
    if reference_accuracy is not None and not math.isnan(reference_accuracy):
        ok = ordered[ordered["val_accuracy_mean"] >= reference_accuracy - tolerance - 1e-12]
        if len(ok):
            return ok.iloc[0], True
    best = agg.sort_values(["val_accuracy_mean", f"{size}_mean"], ascending=[False, True], kind="mergesort")
    return best.iloc[0], False


# ---------------------------------------------------------------------------------------------------------------
# Figures: fixed style, deterministic files

#: rcParams every figure uses (on top of matplotlib's defaults and seaborn's "whitegrid" theme), so a figure does
#: not depend on the user's matplotlibrc.
RC_PARAMS = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "pdf.fonttype": 42,
    "pdf.compression": 6,
    "svg.hashsalt": "lqs",
    "svg.fonttype": "path",
    "path.simplify": True,
    "axes.unicode_minus": True,
}
#: ``metadata`` for :func:`matplotlib.figure.Figure.savefig` per format: no software version, no timestamps.
SAVE_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
    "svg": {"Creator": None, "Date": None},
}


def set_style() -> None:
    """Reset matplotlib to its defaults, apply seaborn's ``whitegrid`` theme and :data:`RC_PARAMS`.

    The backend is left alone (inline in a notebook, Agg in a script without display).
    """
    import matplotlib
    import matplotlib.pyplot as plt
    import seaborn as sns

    matplotlib.rcdefaults()
    sns.set_theme(context="paper", style="whitegrid", palette="deep", font="DejaVu Sans", rc=RC_PARAMS)
    plt.rcParams.update(RC_PARAMS)


def savefig(fig, stem, formats: Sequence[str] = ("png", "pdf")) -> List[str]:
    """Save ``fig`` as ``<stem>.<ext>`` for every format, byte-identically on every re-run.

    PNG without the ``Software`` entry, PDF without creator/producer/dates, SVG with a fixed hash salt and no
    date; rcParams of :data:`RC_PARAMS` apply while saving. Each file is written to a temporary name and renamed,
    so an interrupted save leaves no truncated figure. Returns the paths written.
    """
    import matplotlib

    stem = str(stem)
    directory = os.path.dirname(os.path.abspath(stem))
    os.makedirs(directory, exist_ok=True)
    written = []
    with matplotlib.rc_context({k: v for k, v in RC_PARAMS.items() if k.startswith(("savefig.", "pdf.", "svg."))}):
        for ext in formats:
            if ext not in SAVE_METADATA:
                raise ValueError(f"Unsupported figure format {ext!r}; allowed: {', '.join(SAVE_METADATA)}.")
            path = f"{stem}.{ext}"
            with atomic.atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext, metadata=SAVE_METADATA[ext])
            written.append(path)
    return written


def _grans(df) -> List[str]:
    present = set(df["granularity"].dropna())
    return [g for g in GRANULARITIES if g in present]


def _modes_of(df) -> List[str]:
    present = set(df["mode"].dropna())
    return [m for m in MODES if m in present]


def pareto_figure(results, dataset: str, family: str, label_points: bool = True):
    """Pareto fronts of one sweep (thesis figure type 1).

    x = final validation accuracy, y (log) = unique integers (top row) and integer range ``max|P_q|`` (bottom
    row); one column per granularity; one line per mode (QAT, PTQ) through the λ/γ points in order, each point
    the mean over seeds with error bars of one standard deviation in x and y, labelled by its λ/γ; the float
    baseline's accuracy as a dashed vertical line.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = results[(results["dataset"] == dataset) & (results["family"] == family) & (results["kind"] == "run")]
    if df.empty:
        raise ValueError(f"No runs of {dataset}/{family} in the results table.")
    grans, modes = _grans(df), _modes_of(df)
    agg = aggregate_seeds(df, ["granularity", "mode", "param"], ["val_accuracy", "unique_integers", "int_range"])
    base = baseline_accuracy(results, dataset)
    colors = dict(zip(MODES, sns.color_palette("deep", 2)))
    markers = {"qat": "o", "ptq": "s"}
    fig, axes = plt.subplots(2, len(grans), figsize=(3.4 * len(grans) + 0.6, 5.6), sharex=True, sharey="row",
                             squeeze=False)
    rows = [("unique_integers", "unique integers (log)"), ("int_range", "integer range max|$P_q$| (log)")]
    sym = param_symbol(family)
    for j, gran in enumerate(grans):
        for i, (metric, ylabel) in enumerate(rows):
            ax = axes[i, j]
            for mode in modes:
                a = agg[(agg["granularity"] == gran) & (agg["mode"] == mode)].sort_values("param")
                if a.empty:
                    continue
                y = a[f"{metric}_mean"].where(a[f"{metric}_mean"] > 0)
                ax.errorbar(a["val_accuracy_mean"], y, xerr=a["val_accuracy_std"], yerr=a[f"{metric}_std"],
                            color=colors[mode], marker=markers[mode], markersize=4, linewidth=1.2, capsize=2,
                            elinewidth=0.8, label=MODE_NAMES[mode])
                if label_points:
                    for x, yy, p in zip(a["val_accuracy_mean"], y, a["param"]):
                        if isinstance(yy, float) and math.isnan(yy):
                            continue
                        ax.annotate(format_value(p), (x, yy), textcoords="offset points",
                                    xytext=(4, 3 if mode == "qat" else -9), fontsize=6, color=colors[mode])
            if base is not None:
                ax.axvline(base, color="0.3", linestyle="--", linewidth=0.9, label="float baseline")
            ax.set_yscale("log", nonpositive="mask")
            if i == 0:
                ax.set_title(gran)
            if i == 1:
                ax.set_xlabel("final validation accuracy")
            if j == 0:
                ax.set_ylabel(ylabel)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    by_label = dict(zip(labels, handles))
    order = [MODE_NAMES[m] for m in MODES if MODE_NAMES[m] in by_label] + [k for k in by_label if k not in
                                                                            MODE_NAMES.values()]
    fig.legend([by_label[k] for k in order], order, loc="upper center", ncol=len(order),
               bbox_to_anchor=(0.5, 1.0), frameon=False)
    n_seeds = int(df.groupby(["granularity", "mode", "param"]).size().max())
    fig.suptitle(f"{dataset}: {family_title(family)} — points labelled by {sym}, mean ± sd over {n_seeds} seed(s)",
                 y=1.04)
    fig.tight_layout()
    return fig


def _palette(n: int):
    import seaborn as sns

    return sns.color_palette("viridis", n)


def _plain_log_labels(ax) -> None:
    """Tick labels of a log y-axis as plain numbers (0.4, 0.5, 200) instead of mantissa x 10^k."""
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    lo, hi = ax.get_ylim()
    if hi / max(lo, 1e-300) < 100:  # few decades: label the 2s and 5s too
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    else:
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def curves_figure(histories, dataset: str, family: str, mode: str):
    """Validation accuracy (top) and validation loss (bottom, log) per epoch (thesis figure type 2).

    One column per granularity, one line per λ/γ (mean over seeds, band = ± one standard deviation) plus the
    float baseline (dashed black).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    h = histories[(histories["dataset"] == dataset)]
    runs = h[(h["family"] == family) & (h["mode"] == mode) & (h["kind"] == "run")]
    base = h[h["kind"] == "baseline"]
    if runs.empty:
        raise ValueError(f"No histories of {dataset}/{family}/{mode}.")
    grans = _grans(runs)
    params = sorted(runs["param"].unique())
    colors = dict(zip(params, _palette(len(params))))
    sym = param_symbol(family)
    fig, axes = plt.subplots(2, len(grans), figsize=(3.4 * len(grans) + 1.6, 5.2), sharex=True, sharey="row",
                             squeeze=False)
    metrics = [("val_accuracy", "validation accuracy"), ("val_loss", "validation loss (log)")]

    def band(ax, data, metric, color, label, style="-"):
        g = data.groupby("epoch")[metric]
        mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
        ax.plot(mean.index, mean.values, style, color=color, linewidth=1.2, label=label)
        if len(data["seed"].unique()) > 1:
            ax.fill_between(mean.index, (mean - std).values, (mean + std).values, color=color, alpha=0.15,
                            linewidth=0)

    for j, gran in enumerate(grans):
        for i, (metric, ylabel) in enumerate(metrics):
            ax = axes[i, j]
            for p in params:
                band(ax, runs[(runs["granularity"] == gran) & (runs["param"] == p)], metric, colors[p],
                     f"{sym} = {format_value(p)}")
            if len(base):
                band(ax, base, metric, "black", "float baseline", "--")
            if metric == "val_loss":
                ax.set_yscale("log")
                _plain_log_labels(ax)
            if i == 0:
                ax.set_title(gran)
            else:
                ax.set_xlabel("epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if j == 0:
                ax.set_ylabel(ylabel)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    n_seeds = len(runs["seed"].unique())
    fig.suptitle(f"{dataset}: {family_title(family)}, {MODE_NAMES[mode]} — mean ± sd over {n_seeds} seed(s)")
    fig.tight_layout()
    return fig


def histogram_figure(integers: Mapping[str, Any], title: str, max_bins: int = 120):
    """Histograms of the integer values of every quantized tensor (thesis figure type 3), log y-axis.

    One panel per tensor in the given order; one bin per integer while the range has at most ``max_bins``
    values, else ``max_bins`` equal bins. The panel title gives the tensor's shape, unique count and range.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    names = list(integers)
    n = len(names)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.5 * rows + 0.5), squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // cols, k % cols]
        q = np.asarray(integers[name]).astype(np.int64).ravel()
        lo, hi = int(q.min()), int(q.max())
        if hi - lo + 1 <= max_bins:
            bins = np.arange(lo, hi + 2) - 0.5
        else:
            bins = np.linspace(lo - 0.5, hi + 0.5, max_bins + 1)
        ax.hist(q, bins=bins, color="C0", edgecolor="none", log=True)
        ax.set_ylim(bottom=0.7)
        _plain_log_labels(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        shape = "×".join(str(int(d)) for d in np.shape(integers[name]))
        ax.set_title(f"{name} ({shape})\n{len(np.unique(q))} unique, range {lo}…{hi}")
        ax.set_xlabel("integer value $P_q$")
        if k % cols == 0:
            ax.set_ylabel("count (log)")
    for k in range(n, rows * cols):
        axes[k // cols, k % cols].set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def nearest_value(available: Sequence[float], value: float) -> float:
    """The value of ``available`` nearest to ``value`` on a log scale (0 only matches 0, or when nothing else)."""
    available = [float(a) for a in available]
    if not available:
        raise ValueError("No values to choose from.")
    value = float(value)
    positive = [a for a in available if a > 0]
    if value <= 0 or not positive:
        return min(available, key=lambda a: (abs(a - value), a))
    return min(positive, key=lambda a: (abs(math.log10(a) - math.log10(value)), a))


def pick_histogram_run(results, dataset: str, family: str, granularity: Optional[str] = None,
                       mode: Optional[str] = "qat", seed: Optional[int] = None, param: Optional[float] = None,
                       tolerance: float = 0.01):
    """The run whose integer histograms are shown for one sweep: at ``param`` (λ/γ; None = the most compressed
    setting within ``tolerance`` of the float baseline's accuracy), ``granularity`` (None = the first present),
    ``mode`` (falls back to the first present), ``seed`` (None = the smallest). Returns the results row.
    """
    df = results[(results["dataset"] == dataset) & (results["family"] == family) & (results["kind"] == "run")]
    df = df[df["integers"].notna()]
    if df.empty:
        raise ValueError(f"No runs of {dataset}/{family} with an integer file.")
    grans, modes = _grans(df), _modes_of(df)
    granularity = granularity if granularity in grans else grans[0]
    mode = mode if mode in modes else modes[0]
    df = df[(df["granularity"] == granularity) & (df["mode"] == mode)]
    if param is None:
        agg = aggregate_seeds(df, ["param"], ["val_accuracy", "zip_bytes"])
        row, _ = select_operating_point(agg, baseline_accuracy(results, dataset), tolerance)
        param = float(row["param"])
    else:
        param = nearest_value(sorted(df["param"].unique()), param)
    df = df[df["param"] == param]
    seeds = sorted(df["seed"].unique())
    seed = seed if seed in seeds else seeds[0]
    return df[df["seed"] == seed].iloc[0]


def compression_table(results, tolerance: float = 0.01):
    """Compression per dataset and scheme (thesis figure type 4); returns ``(table, all_settings)``.

    ``all_settings``: every (dataset, family, granularity, mode, λ/γ) with means over seeds of accuracy and
    sizes. ``table``: per dataset and family the most compressed setting (smallest mean ``zip_bytes``, the
    thesis measure) whose mean validation accuracy is within ``tolerance`` of the float baseline's (else the most
    accurate, flagged ``within_tolerance = False``), with the float baseline's size and accuracy beside it.
    Sizes in bytes: ``zip`` (int ``.npy`` files zipped, the thesis measure; float: float32 ``.npy`` zipped),
    ``packed`` (fixed-width bit-packed + float32 scales), ``huffman`` (Huffman-coded, with code tables);
    ``float32_bytes`` is 4 bytes per parameter.
    """
    import pandas as pd

    runs = _thesis_runs(results)
    sizes = ["val_accuracy", "zip_bytes", "float_zip_bytes", "packed_bytes", "huffman_bytes", "float32_bytes",
             "unique_integers", "int_range", "bits_fixed"]
    all_settings = aggregate_seeds(runs, ["dataset", "family", "granularity", "mode", "param"], sizes)
    order = {"dataset": lambda s: s.map(DATASETS.index), "family": lambda s: s.map(_family_order)}
    all_settings = all_settings.sort_values(
        ["dataset", "family", "granularity", "mode", "param"],
        key=lambda s: order[s.name](s) if s.name in order else s, kind="mergesort").reset_index(drop=True)
    rows = []
    for (dataset, family), group in all_settings.groupby(["dataset", "family"], sort=False):
        base = baseline_accuracy(results, dataset)
        row, ok = select_operating_point(group, base, tolerance)
        rows.append({
            "dataset": dataset,
            "scheme": "nested" if family == "nested" else "loss_terms",
            "family": family,
            "granularity": row["granularity"],
            "mode": row["mode"],
            "param_symbol": param_symbol(family),
            "param": float(row["param"]),
            "n_seeds": int(row["n_seeds"]),
            "val_accuracy": row["val_accuracy_mean"],
            "val_accuracy_std": row["val_accuracy_std"],
            "float_val_accuracy": base,
            "within_tolerance": bool(ok),
            "float_zip_bytes": row["float_zip_bytes_mean"],
            "zip_bytes": row["zip_bytes_mean"],
            "zip_ratio": row["float_zip_bytes_mean"] / row["zip_bytes_mean"] if row["zip_bytes_mean"] else None,
            "float32_bytes": row["float32_bytes_mean"],
            "packed_bytes": row["packed_bytes_mean"],
            "packed_ratio": row["float32_bytes_mean"] / row["packed_bytes_mean"] if row["packed_bytes_mean"] else None,
            "huffman_bytes": row["huffman_bytes_mean"],
            "huffman_ratio": (row["float32_bytes_mean"] / row["huffman_bytes_mean"]
                              if row["huffman_bytes_mean"] else None),
            "unique_integers": row["unique_integers_mean"],
            "int_range": row["int_range_mean"],
            "bits_fixed": row["bits_fixed_mean"],
        })
    return pd.DataFrame(rows), all_settings


def _kb(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x / 1000:.2f}"


def table_display(table):
    """The compression table formatted for reading (kB = 1000 bytes, accuracies in %)."""
    import pandas as pd

    out = []
    for r in table.itertuples(index=False):
        out.append({
            "dataset": r.dataset,
            "scheme": "nested" if r.family == "nested" else TERM_NAMES.get(r.family, r.family),
            "granularity / mode": f"{r.granularity} / {r.mode}",
            "λ/γ": f"{r.param_symbol}={format_value(r.param)}" + ("" if r.within_tolerance else " *"),
            "val acc %": f"{100 * r.val_accuracy:.1f} ± {100 * r.val_accuracy_std:.1f}",
            "float acc %": "–" if r.float_val_accuracy is None or math.isnan(r.float_val_accuracy)
            else f"{100 * r.float_val_accuracy:.1f}",
            "zip kB float → quant": f"{_kb(r.float_zip_bytes)} → {_kb(r.zip_bytes)}",
            "zip ×": f"{r.zip_ratio:.1f}" if r.zip_ratio else "–",
            "packed kB (×)": f"{_kb(r.packed_bytes)} ({r.packed_ratio:.1f})" if r.packed_ratio else "–",
            "Huffman kB (×)": f"{_kb(r.huffman_bytes)} ({r.huffman_ratio:.1f})" if r.huffman_ratio else "–",
            "unique ints": f"{r.unique_integers:.0f}",
        })
    return pd.DataFrame(out)


def to_markdown(df) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (no extra dependency)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


def table_figure(display, title: str = ""):
    """Render a (formatted) table as a figure for PNG/PDF."""
    import matplotlib.pyplot as plt

    n_rows, n_cols = display.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 0.95 * n_cols), 0.32 * (n_rows + 1) + 0.7))
    ax.axis("off")
    table = ax.table(cellText=display.values, colLabels=list(display.columns), loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(n_cols)))
    table.scale(1.0, 1.3)
    for (r, _), cell in table.get_celld().items():
        cell.set_linewidth(0.4)
        if r == 0:
            cell.set_facecolor("#e6e6e6")
            cell.set_text_props(weight="bold")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Comparison of every method (thesis schemes and comparators) on the same data, network and seeds

#: Metrics of the comparison: x axes of the figure (column, axis label, log scale) and the table's columns.
COMPARISON_AXES = (("packed_bytes", "packed size of the quantized weights [kB] (log)", 10),
                   ("mean_bits_fixed", "bits per weight, fixed width (mean over weights; log)", 2),
                   ("entropy_bits_per_weight", "bits per weight, entropy of the integers (log)", 2))
COMPARISON_METRICS = ("val_accuracy", "packed_bytes", "mean_bits_fixed", "entropy_bits_per_weight",
                      "huffman_bytes", "zip_bytes", "unique_integers")
_SETTING_KEYS = ["method", "granularity", "mode", "param", "variant"]


def method_order(method: str) -> int:
    return METHODS.index(method) if method in METHODS else len(METHODS)


def setting_label(method: str, param, variant=None) -> str:
    """Readable swept value of a setting: ``λ=1e-10``, ``γ=1e-13``, ``4 bits``, ``budget 0.1``, ``start 8 bits``."""
    if method == "float" or param is None or (isinstance(param, float) and math.isnan(param)):
        text = "float32"
    elif method == "nested":
        text = f"λ={format_value(param)}"
    elif method in TERMS:
        text = f"γ={format_value(param)}"
    elif method == "cgmq":
        text = f"budget {format_value(param)}"
    elif method == "layer_importance":
        text = f"start {int(param)} bits"
    else:
        text = f"{int(param)} bits"
    if isinstance(variant, str) and variant:
        text += f" ({variant})"
    return text


def comparison_settings(results, dataset: str):
    """Every setting of ``dataset`` (method × granularity × mode × param × variant, plus the float baseline as
    method ``float`` with its float32 size and 32 bits per weight), with mean / sd / count over seeds of
    :data:`COMPARISON_METRICS`, sorted by method, granularity, mode, param."""
    import pandas as pd

    df = results[results["dataset"] == dataset].copy()
    if "method" not in df.columns:
        df["method"] = df["family"]
    if "variant" not in df.columns:
        df["variant"] = None
    base = df["kind"] == "baseline"
    df.loc[base, "method"] = "float"
    df.loc[base, "packed_bytes"] = df.loc[base, "float32_bytes"]
    for col in ("mean_bits_fixed", "entropy_bits_per_weight"):
        if col not in df.columns:
            df[col] = float("nan")
        df.loc[base, col] = 32.0
    for col in COMPARISON_METRICS:
        if col not in df.columns:
            df[col] = float("nan")
    for col in ("granularity", "mode", "variant"):
        df[col] = df[col].where(df[col].notna(), "")
    df["param"] = pd.to_numeric(df["param"], errors="coerce").fillna(-1.0)
    if df.empty:
        raise ValueError(f"No runs of {dataset} in the results table.")
    agg = aggregate_seeds(df, _SETTING_KEYS, COMPARISON_METRICS)
    agg["_m"] = agg["method"].map(method_order)
    agg = agg.sort_values(["_m", "granularity", "mode", "param", "variant"], kind="mergesort").drop(columns="_m")
    agg["param"] = agg["param"].where(agg["param"] >= 0)
    agg["setting"] = [setting_label(m, p, v) for m, p, v in zip(agg["method"], agg["param"], agg["variant"])]
    agg.insert(0, "dataset", dataset)
    return agg.reset_index(drop=True)


def pareto_mask(accuracy: Sequence[float], size: Sequence[float]) -> List[bool]:
    """Which points are Pareto-optimal for maximal ``accuracy`` and minimal ``size``: no other point is at least
    as accurate and at most as large, and better in one of the two (NaN points are never optimal)."""
    pts = [(float(a), float(s)) for a, s in zip(accuracy, size)]
    out = []
    for i, (a, s) in enumerate(pts):
        if math.isnan(a) or math.isnan(s):
            out.append(False)
            continue
        dominated = any(not (math.isnan(a2) or math.isnan(s2)) and a2 >= a and s2 <= s and (a2 > a or s2 < s)
                        for j, (a2, s2) in enumerate(pts) if j != i)
        out.append(not dominated)
    return out


def pareto_points(results, dataset: str, size: str = "packed_bytes"):
    """The Pareto-optimal settings of ``dataset`` over every method (maximal mean validation accuracy, minimal
    mean ``size``), from the smallest to the largest, as a DataFrame (see :func:`comparison_settings`)."""
    agg = comparison_settings(results, dataset)
    front = agg[pareto_mask(agg["val_accuracy_mean"], agg[f"{size}_mean"])]
    return front.sort_values([f"{size}_mean", "val_accuracy_mean"], ascending=[True, False],
                             kind="mergesort").reset_index(drop=True)


def _pm(mean, std, scale=1.0, digits=1) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def pareto_points_display(points):
    """The Pareto table formatted for reading (accuracy in %, sizes in bytes, bits per weight)."""
    import pandas as pd

    rows = []
    for r in points.itertuples(index=False):
        rows.append({
            "method": METHOD_NAMES.get(r.method, r.method),
            "setting": r.setting,
            "granularity / mode": " / ".join(x for x in (r.granularity, r.mode) if x) or "–",
            "seeds": int(r.n_seeds),
            "val acc %": _pm(r.val_accuracy_mean, r.val_accuracy_std, 100),
            "packed bytes": f"{r.packed_bytes_mean:.0f}",
            "bits/weight (fixed)": _pm(r.mean_bits_fixed_mean, r.mean_bits_fixed_std, digits=2),
            "bits/weight (entropy)": _pm(r.entropy_bits_per_weight_mean, r.entropy_bits_per_weight_std, digits=2),
        })
    return pd.DataFrame(rows)


def _method_styles(methods: Sequence[str]) -> Dict[str, dict]:
    import seaborn as sns

    palette = sns.color_palette("tab10", 10)
    markers = {"float": "*", "nested": "o", "maxbin": "v", "inverse": "^", "difference": "<",
               "reconstruction": ">", "ptq": "s", "fixed": "D", "lsq": "P", "cgmq": "X", "layer_importance": "h"}
    styles = {}
    for m in methods:
        k = method_order(m)
        styles[m] = {"color": "black" if m == "float" else palette[(k - 1) % 10], "marker": markers.get(m, "o")}
    return styles


def _short_label(method: str, param) -> str:
    """The point label of a comparator setting in the comparison figure: ``4b`` (bits), ``0.1`` (CGMQ budget)."""
    if param is None or (isinstance(param, float) and math.isnan(param)):
        return ""
    return format_value(param) if method == "cgmq" else f"{int(param)}b"


def _plain_log_x(ax, base: int = 10) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if base == 2:  # bits: 0.5, 1, 2, 4, 8, 16, 32
        ax.xaxis.set_major_locator(LogLocator(base=2))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        return
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))


def comparison_figure(results, dataset: str):
    """Accuracy vs. size for every method of ``dataset`` on the same axes (one figure per dataset).

    Panels: final validation accuracy against the packed size of the quantized weights (log x), the fixed-width
    bits per weight and the entropy of the integers in bits per weight. Every setting of every method is one
    point (mean over seeds, error bars ± one standard deviation in x and y); each method's own Pareto front in the
    panel's plane (most accurate for its size) is drawn as a line; the float baseline as a star at its float32 size
    / 32 bits and as a dashed accuracy line. Comparator points are labelled by their bits (``4b``) or CGMQ budget.
    """
    import matplotlib.pyplot as plt

    agg = comparison_settings(results, dataset)
    methods = sorted(agg["method"].unique(), key=method_order)
    styles = _method_styles(methods)
    fig, axes = plt.subplots(1, len(COMPARISON_AXES), figsize=(4.0 * len(COMPARISON_AXES), 4.2), sharey=True,
                             squeeze=False)
    axes = axes[0]
    base = baseline_accuracy(results, dataset)
    for ax, (metric, xlabel, log) in zip(axes, COMPARISON_AXES):  # log: base of the log x-axis
        scale = 1e-3 if metric == "packed_bytes" else 1.0  # bytes -> kB
        for m in methods:
            a = agg[(agg["method"] == m) & agg[f"{metric}_mean"].notna()].copy()
            if a.empty:
                continue
            a[f"{metric}_mean"] *= scale
            a[f"{metric}_std"] *= scale
            st = styles[m]
            ax.errorbar(a[f"{metric}_mean"], a["val_accuracy_mean"], xerr=a[f"{metric}_std"],
                        yerr=a["val_accuracy_std"], linestyle="none", marker=st["marker"], color=st["color"],
                        markersize=7 if m == "float" else 4, alpha=0.55 if m != "float" else 1.0, elinewidth=0.6,
                        capsize=1.5, label=METHOD_NAMES.get(m, m))
            if m != "float" and len(a) > 1:
                front = a[pareto_mask(a["val_accuracy_mean"], a[f"{metric}_mean"])].sort_values(f"{metric}_mean")
                ax.plot(front[f"{metric}_mean"], front["val_accuracy_mean"], color=st["color"], linewidth=1.3,
                        drawstyle="steps-post", marker=st["marker"], markersize=4)
            if m in COMPARATORS:
                for x, y, p in zip(a[f"{metric}_mean"], a["val_accuracy_mean"], a["param"]):
                    ax.annotate(_short_label(m, p), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6,
                                color=st["color"])
        if base is not None:
            ax.axhline(base, color="0.3", linestyle="--", linewidth=0.9)
        if log:
            ax.set_xscale("log", base=log, nonpositive="mask")
            _plain_log_x(ax, log)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("final validation accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout()
    ncol = min(len(labels), 6)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, 1.0), frameon=False,
               markerscale=1.3)
    runs = results[(results["dataset"] == dataset) & (results["kind"] == "run")]
    n_seeds = sorted(set(runs.groupby(["family", "granularity", "mode", "param"], dropna=False).size()))
    seeds = "–".join(str(n) for n in (n_seeds[:1] + n_seeds[-1:] if len(n_seeds) > 1 else n_seeds))
    fig.suptitle(f"{dataset}: all methods, same data, network and seeds — mean ± sd over {seeds} seed(s); "
                 "lines: each method's Pareto front; star / dashed: float baseline",
                 y=1.02 + 0.065 * -(-len(labels) // ncol), va="bottom")
    return fig


_GPU_LOCKS: list = []  # open lock files of claimed GPUs, held until the process exits


def claim_gpu(devices: Optional[str] = None, lock_dir: Optional[str] = None, poll_seconds: float = 1.0,
              timeout: Optional[float] = None) -> Optional[str]:
    """Pin this process to one GPU that no other workflow job holds; return its id (None: nothing to do).

    ``devices``: comma-separated GPU ids (default ``$LQS_GPUS``; unset or empty: no pinning, TensorFlow sees what
    ``CUDA_VISIBLE_DEVICES`` says). Takes an exclusive ``flock`` on ``<lock_dir>/lqs-gpu-<id>.lock`` (default
    ``$LQS_GPU_LOCK_DIR`` or the temp folder) of the first free id, keeps it until the process ends, and sets
    ``CUDA_VISIBLE_DEVICES`` to that id — call it before TensorFlow touches a GPU. Snakemake's ``gpu`` resource
    (profiles/gpu) already caps the concurrent jobs at the number of GPUs, so a free id exists; this only decides
    which one. Waits (polling) while all are taken, up to ``timeout`` seconds (None: forever).
    """
    import fcntl
    import time

    devices = os.environ.get("LQS_GPUS", "") if devices is None else devices
    ids = [d.strip() for d in str(devices).split(",") if d.strip()]
    if not ids:
        return None
    lock_dir = lock_dir or os.environ.get("LQS_GPU_LOCK_DIR") or tempfile.gettempdir()
    os.makedirs(lock_dir, exist_ok=True)
    start = time.monotonic()
    while True:
        for dev in ids:
            handle = open(os.path.join(lock_dir, f"lqs-gpu-{dev}.lock"), "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            _GPU_LOCKS.append(handle)
            os.environ["CUDA_VISIBLE_DEVICES"] = dev
            return dev
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"No free GPU among {ids} after {timeout} s (locks in {lock_dir}).")
        time.sleep(poll_seconds)


__all__ = [
    "ConfigError",
    "DATASETS",
    "GRANULARITIES",
    "MODES",
    "REPO_ROOT",
    "Run",
    "SCHEMA_PATH",
    "TABLE_FILES",
    "TERMS",
    "COMPARATORS",
    "METHODS",
    "aggregate_seeds",
    "baseline_accuracy",
    "baseline_id",
    "claim_gpu",
    "collect_results",
    "comparison_datasets",
    "comparison_figure",
    "comparison_settings",
    "comparison_stem",
    "comparator_run_id",
    "compression_table",
    "count_runs",
    "curve_keys",
    "curve_modes",
    "curves_figure",
    "curves_stem",
    "expand_runs",
    "family_title",
    "figure_outputs",
    "figure_stems",
    "format_value",
    "histogram_figure",
    "histograms_stem",
    "load_config",
    "load_histories",
    "load_schema",
    "nearest_value",
    "needs_fetch",
    "param_symbol",
    "pareto_mask",
    "pareto_points",
    "pareto_points_display",
    "pareto_table_stem",
    "pareto_figure",
    "pareto_stem",
    "pick_histogram_run",
    "read_results",
    "result_families",
    "result_row",
    "run_id",
    "runs_by_id",
    "savefig",
    "select_operating_point",
    "set_style",
    "sweep_families",
    "table_display",
    "table_figure",
    "to_markdown",
    "validate_config",
    "write_table",
    "write_text_atomic",
]
