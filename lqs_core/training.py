"""One training run of the reproduction: a :class:`RunConfig` in, a :class:`RunResult` out (SPEC §4).

::

    from lqs_core.training import RunConfig, train, load_result

    config = RunConfig(dataset="digits", scheme="nested", granularity="rowwise", threshold=1e-10, seed=42)
    result = train(config, out_dir="runs/" + run_id(config))
    print(result.report_line())
    again = load_result("runs/" + run_id(config))      # metrics.json, history.csv, model.keras, ...

Schemes:

* ``"nested"`` — the nested quantization layer with the ratio-threshold scale gradient, λ = ``threshold`` (SPEC §1);
* ``"loss_terms"`` — the same layers with λ = 0 (no scale gradient from the task loss) and the scales trained by
  the loss ``terms`` ``{name: γ}`` (SPEC §2; ``maxbin``, ``inverse``, ``difference``, ``reconstruction``;
  several terms are combined, each with its own γ). ``threshold`` is forced to 0 for this scheme;
* ``"float"`` — the float twin of the network (plain Dense/Conv2D), the baseline;
* ``"ptq_eval"`` — post-training quantization only (SPEC §5, survey §4.2): the float baseline in ``float_weights``
  is copied into the quantized twin with min-max ``bits``-bit fixed quantizers (per ``granularity``: ``scalar`` =
  per tensor, ``outputwise`` = per output channel) and evaluated, with no training (``epochs`` is not used).

Methods (``method``; SPEC §5, :mod:`lqs_core.comparators`) — which quantizer the hosts use, trained with the task
loss (scheme ``"nested"``, the default; ``threshold`` must stay 0 for a comparator):

* ``"nested"`` (default) — the thesis' nested quantizer (the schemes above);
* ``"fixed"`` — fixed-bit QAT: uniform symmetric ``bits``-bit quantizer, min-max scale, STE;
* ``"lsq"`` — learned step size quantization with ``bits`` bits;
* ``"cgmq"`` — gate variables -> bit widths in {2, 4, 8, 16, 32} under the relative weights-only BOP ``budget``
  (``[1/16, 1]``); ``method_options``: ``gates`` (``"layer"`` / ``"weight"``), ``direction`` (1, 2, 3),
  ``gate_lr``, ``gate_init``. The constraint is checked at every epoch end and enforced at the end of training;
  the report adds ``relative_bops``, ``bops``, ``budget``, ``enforced_rounds``;
* ``"layer_importance"`` — fixed-bit QAT at ``bits`` for ``epochs``, then Algorithm 2's imprinting-based bit
  selection (per-layer bits down to ``method_options["min_bits"]``, default 2; ``budget``: optional target mean
  bits per layer), then ``method_options["finetune_epochs"]`` (default 0) epochs at the chosen bits; the report
  adds ``layer_bits``, ``mean_layer_bits`` and ``qat_val_accuracy`` (before the selection), and its
  ``val_accuracy`` / ``val_loss`` are of the final model.

Every quantized run's report also has ``relative_bops`` and ``mean_weight_bits``
(:func:`lqs_core.comparators.cgmq.bop_cost`: weights-only BOPs relative to all-32-bit weights; bits per weight from
the quantizer — the nested scheme's from each tensor's fixed-width integer range).

Modes: ``"qat"`` trains from the random initialization; ``"ptq"`` (the thesis' name) starts from a trained float
baseline: ``float_weights`` (a run directory holding ``model.keras``, a ``.keras`` file or a ``.weights.h5`` file
of the float twin) is loaded and copied into the quantized twin (:func:`lqs_core.models.transfer_float_weights`),
which then keeps training with quantization on.

Training (:func:`train`) follows the thesis: Adam with Keras' default ``epsilon = 1e-7`` (kept on purpose: the
scale gradients are ~1e-10, so Adam's epsilon sets the effective scale step, SPEC §1.1), sparse categorical
cross-entropy, accuracy, validation on the test split after every epoch, seed 42 by default, and TensorFlow's op
determinism switched on (same config and seed -> identical numbers on the same machine).

Defaults per dataset (:data:`DATASET_DEFAULTS`, used where a config field is ``None``; SPEC Table 4.1):

==============  =============  ==========  ======  =========================================
dataset         learning rate  batch size  epochs  learning-rate schedule (epoch, factor)
==============  =============  ==========  ======  =========================================
``digits``      1e-3           32          10      none
``mnist``       1e-4           32          20      none
``cifar10``     1e-4           128         100     none
``imagenette``  1e-4           64          100     ×0.5 at epoch 40, ×0.2 at epoch 60
==============  =============  ==========  ======  =========================================

``digits`` is not in the thesis; its defaults are chosen so a run takes a few seconds on a 2-core CPU
(10 epochs × 45 steps of the 1 437 training images) while the method shows: the digits MLP reaches ≈ 97 %
validation accuracy, and λ = 1e-10 cuts the unique integers from ≈ 4 200 (λ = 0) to ≈ 110 at the same accuracy.
The larger learning rate (1e-3) stands in for the thesis' many more steps (MNIST: 20 × 1 875).

Schedule factors are cumulative and use Keras' 0-based epoch index, as the thesis' scheduler: with
``[[40, 0.5], [60, 0.2]]`` epochs 0–39 run at ``lr``, 40–59 at ``0.5·lr``, 60+ at ``0.1·lr``.

Files of a saved run (:meth:`RunResult.save`; each written atomically, ``metrics.json`` last so that its presence
marks a complete run): ``history.csv`` (one row per epoch), ``summary.csv`` (per-tensor table, quantized runs),
``integers.lqsint`` (bit-packed integers + scales, :func:`lqs_core.export.save_integers`; ``integers.npz`` of
:func:`lqs_core.metrics.integer_tensors` where that module is missing), ``model.keras`` and ``metrics.json``
(``{"run_id", "config", "report", "files", "versions"}``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import keras
import numpy as np
import pandas as pd

from lqs_core.atomic import atomic_path, write_text
from lqs_core.granularity import GRANULARITIES
from lqs_core.quantizers import DEFAULT_SCALE

DATASETS = ("digits", "mnist", "cifar10", "imagenette")
SCHEMES = ("nested", "loss_terms", "float", "ptq_eval")
MODES = ("qat", "ptq")
#: Quantization methods (SPEC §5): the nested layer and the comparators of :mod:`lqs_core.comparators`.
METHODS = ("nested", "fixed", "lsq", "cgmq", "layer_importance")
#: Methods that take ``bits`` (2..8): fixed-bit QAT, LSQ, the start of the layer-importance search (and ptq_eval).
BITS_METHODS = ("fixed", "lsq", "layer_importance")
#: ``method_options`` of the layer-importance method and their defaults.
LAYER_IMPORTANCE_OPTIONS = {"min_bits": 2, "finetune_epochs": 0, "imprint_samples": 1024}
TERM_NAMES = ("maxbin", "inverse", "difference", "reconstruction")
#: Datasets whose network quantizes Dense layers (``channelwise`` is not defined there).
DENSE_DATASETS = ("digits", "mnist")

#: Defaults per dataset, used where a :class:`RunConfig` field is ``None`` (SPEC Table 4.1; digits: see above).
DATASET_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "digits": {"learning_rate": 1e-3, "batch_size": 32, "epochs": 10, "lr_schedule": []},
    "mnist": {"learning_rate": 1e-4, "batch_size": 32, "epochs": 20, "lr_schedule": []},
    "cifar10": {"learning_rate": 1e-4, "batch_size": 128, "epochs": 100, "lr_schedule": []},
    "imagenette": {"learning_rate": 1e-4, "batch_size": 64, "epochs": 100, "lr_schedule": [[40, 0.5], [60, 0.2]]},
}

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
SUMMARY_FILE = "summary.csv"
MODEL_FILE = "model.keras"
INTEGERS_FILE = "integers.lqsint"
INTEGERS_NPZ_FILE = "integers.npz"

#: History columns that are wall-clock times (differ between otherwise identical runs).
TIME_COLUMNS = ("epoch_seconds",)


# ---------------------------------------------------------------------------------------------------------------
# Configuration


def _allowed(values) -> str:
    return ", ".join(repr(v) for v in values)


def _number(name: str, value, *, positive: bool = False, allow_zero: bool = True) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}.")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        bound = "> 0" if not allow_zero else ">= 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}.")
    return value


def _integer(name: str, value, minimum: Optional[int] = None, optional: bool = False) -> Optional[int]:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer, got {value!r}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}.")
    return value


@dataclass
class RunConfig:
    """Everything that defines one training run (validated on construction; ``ValueError`` names the field).

    Fields:
        dataset: ``digits`` | ``mnist`` | ``cifar10`` | ``imagenette``.
        scheme: ``nested`` (λ-threshold scale gradient) | ``loss_terms`` (scales trained by ``terms``) | ``float``.
        granularity: scale granularity of the weights (``scalar``, ``rowwise``, ``columnwise``, ``channelwise`` —
            Conv2D only —, ``outputwise``); biases always use one scale.
        threshold: λ >= 0 of the nested scheme (0 freezes the scales); forced to 0 for ``loss_terms``.
        terms: ``{term: γ}`` with γ >= 0 for ``loss_terms`` (required there, not allowed for the other schemes);
            e.g. ``{"maxbin": 1e-8}`` or ``{"maxbin": 1e-8, "inverse": 1e-9}``.
        mode: ``qat`` (from scratch) | ``ptq`` (from the float baseline in ``float_weights``; not for ``float``).
        float_weights: path of the float baseline (run directory, ``.keras`` or ``.weights.h5``); required for ptq.
        seed: the seed of initialization, shuffling and dropout (42 in the thesis).
        epochs, batch_size, learning_rate, lr_schedule: ``None`` -> :data:`DATASET_DEFAULTS`; the schedule is a list
            of ``[epoch, factor]`` (0-based epoch, cumulative factors).
        max_train, max_val: keep only this many training / validation examples (quick profiles); ``None``: all.
        image_size: Imagenette image side (default 224); only for ``imagenette``.
        scale_init, scale_min: initial value and lower bound of the scales (default ``100 * float32 eps``).
        data_dir: where the dataset files are (see :mod:`lqs_core.data`); ``None``: env var / Keras cache.
        jit_compile: compile the train step with XLA (GPU runs). Keras refuses XLA while TensorFlow's op
            determinism is on, so such a run does not switch determinism on and is not bit-reproducible; and in a
            process where an earlier run switched it on, Keras warns and runs without XLA.
        tensorboard_dir: write TensorBoard logs to ``<tensorboard_dir>/<run_id>``; ``None``: no TensorBoard.
        method: ``nested`` (default) | ``fixed`` | ``lsq`` | ``cgmq`` | ``layer_importance`` (module docstring);
            a comparator needs scheme ``nested`` (set to ``fixed`` automatically for scheme ``ptq_eval``).
        bits: 2..8, required by ``fixed``, ``lsq``, ``layer_importance`` (start bits) and scheme ``ptq_eval``;
            not allowed otherwise.
        budget: ``cgmq``: the relative weights-only BOP bound, required, ``>= 1/16``; ``layer_importance``:
            optional target mean bits per layer (``min_bits <= budget <= bits``); not allowed otherwise.
        method_options: ``cgmq``: ``gates``, ``direction``, ``gate_lr``, ``gate_init``; ``layer_importance``:
            ``min_bits``, ``finetune_epochs``, ``imprint_samples``; defaults filled in; none for other methods.
    """

    dataset: str
    scheme: str = "nested"
    granularity: str = "rowwise"
    threshold: float = 0.0
    terms: Dict[str, float] = field(default_factory=dict)
    mode: str = "qat"
    float_weights: Optional[str] = None
    seed: int = 42
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    learning_rate: Optional[float] = None
    lr_schedule: Optional[List[List[float]]] = None
    max_train: Optional[int] = None
    max_val: Optional[int] = None
    image_size: Optional[int] = None
    scale_init: float = DEFAULT_SCALE
    scale_min: float = DEFAULT_SCALE
    data_dir: Optional[str] = None
    jit_compile: bool = False
    tensorboard_dir: Optional[str] = None
    method: str = "nested"
    bits: Optional[int] = None
    budget: Optional[float] = None
    method_options: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: unknown value {self.dataset!r}; allowed: {_allowed(DATASETS)}.")
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme: unknown value {self.scheme!r}; allowed: {_allowed(SCHEMES)}.")
        if self.mode not in MODES:
            raise ValueError(f"mode: unknown value {self.mode!r}; allowed: {_allowed(MODES)}.")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity: unknown value {self.granularity!r}; allowed: {_allowed(GRANULARITIES)}.")
        if self.scheme != "float" and self.granularity == "channelwise" and self.dataset in DENSE_DATASETS:
            raise ValueError(
                f"granularity: 'channelwise' is defined only for Conv2D kernels, but the {self.dataset} network "
                "quantizes Dense layers; allowed there: 'scalar', 'rowwise', 'columnwise', 'outputwise'."
            )
        self.threshold = _number("threshold (lambda)", self.threshold, positive=True)

        terms = self.terms if self.terms is not None else {}
        if not isinstance(terms, dict):
            raise ValueError(f"terms must be a dict {{term: gamma}}, got {terms!r}.")
        clean = {}
        for name, gamma in terms.items():
            key = str(name).lower()
            if key not in TERM_NAMES:
                raise ValueError(f"terms: unknown loss term {name!r}; allowed: {_allowed(TERM_NAMES)}.")
            clean[key] = _number(f"terms[{key!r}] (gamma)", gamma, positive=True)
        self.terms = clean
        if self.scheme == "loss_terms":
            if not self.terms:
                raise ValueError(
                    f"terms: scheme 'loss_terms' needs at least one term {{name: gamma}}; allowed names: "
                    f"{_allowed(TERM_NAMES)}."
                )
            self.threshold = 0.0  # the loss-term scheme trains the scales only through the terms (SPEC §2)
        elif self.terms:
            raise ValueError(f"terms: only scheme 'loss_terms' uses loss terms, got terms={self.terms} with "
                             f"scheme {self.scheme!r}.")

        self._check_method()

        if self.mode == "ptq":
            if self.scheme == "float":
                raise ValueError("mode: 'ptq' starts a quantized model from float weights; scheme 'float' needs 'qat'.")
            if not self.float_weights:
                raise ValueError("float_weights: mode 'ptq' needs the path of the float baseline (run directory, "
                                 ".keras or .weights.h5 file).")
        if self.float_weights is not None:
            self.float_weights = os.fspath(self.float_weights)

        self.seed = _integer("seed", self.seed)
        defaults = DATASET_DEFAULTS[self.dataset]
        self.epochs = _integer("epochs", defaults["epochs"] if self.epochs is None else self.epochs, minimum=1)
        self.batch_size = _integer("batch_size", defaults["batch_size"] if self.batch_size is None else self.batch_size,
                                   minimum=1)
        lr = defaults["learning_rate"] if self.learning_rate is None else self.learning_rate
        self.learning_rate = _number("learning_rate", lr, positive=True, allow_zero=False)
        self.lr_schedule = self._check_schedule(
            defaults["lr_schedule"] if self.lr_schedule is None else self.lr_schedule
        )
        self.max_train = _integer("max_train", self.max_train, minimum=1, optional=True)
        self.max_val = _integer("max_val", self.max_val, minimum=1, optional=True)
        self.image_size = _integer("image_size", self.image_size, minimum=1, optional=True)
        if self.image_size is not None and self.dataset != "imagenette":
            raise ValueError(f"image_size: applies to 'imagenette' only, not to {self.dataset!r}.")
        self.scale_init = _number("scale_init", self.scale_init, positive=True, allow_zero=False)
        self.scale_min = _number("scale_min", self.scale_min, positive=True, allow_zero=False)
        if self.scale_init < self.scale_min:
            raise ValueError(f"scale_init: {self.scale_init!r} is below scale_min={self.scale_min!r}.")
        if not isinstance(self.jit_compile, bool):
            raise ValueError(f"jit_compile must be True or False, got {self.jit_compile!r}.")
        for name in ("data_dir", "tensorboard_dir"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, os.fspath(value))

    def _check_method(self):
        """``method``, ``bits``, ``budget``, ``method_options`` (see the class docstring)."""
        from lqs_core.comparators import check_bits
        from lqs_core.comparators.cgmq import CGMQQuantizer, check_budget

        if self.method not in METHODS:
            raise ValueError(f"method: unknown value {self.method!r}; allowed: {_allowed(METHODS)}.")
        if self.scheme == "ptq_eval":
            if self.method == "nested":
                self.method = "fixed"
            if self.method != "fixed":
                raise ValueError(f"method: scheme 'ptq_eval' uses min-max fixed-bit quantizers (method 'fixed'), got "
                                 f"{self.method!r}.")
            if not self.float_weights:
                raise ValueError("float_weights: scheme 'ptq_eval' needs the path of the float baseline.")
            self.mode = "ptq"
        elif self.method != "nested" and self.scheme != "nested":
            raise ValueError(f"method: {self.method!r} is trained with the task loss (scheme 'nested', the default), "
                             f"not with scheme {self.scheme!r}.")
        if self.method != "nested" and self.threshold != 0:
            raise ValueError(f"threshold: λ applies to method 'nested' only, got threshold={self.threshold!r} with "
                             f"method {self.method!r}.")

        if self.method in BITS_METHODS:
            if self.bits is None:
                raise ValueError(f"bits: method {self.method!r} needs bits (an integer in 2..8).")
            self.bits = check_bits(self.bits, "bits")
        elif self.bits is not None:
            raise ValueError(f"bits: only methods {_allowed(BITS_METHODS)} (and scheme 'ptq_eval') use bits, not "
                             f"{self.method!r}.")

        options = self.method_options if self.method_options is not None else {}
        if not isinstance(options, dict):
            raise ValueError(f"method_options must be a dict, got {options!r}.")
        if self.method == "cgmq":
            try:
                options = CGMQQuantizer.validate_options(dict(options))
            except ValueError as e:
                raise ValueError(f"method_options: {e}") from None
        elif self.method == "layer_importance":
            unknown = sorted(set(options) - set(LAYER_IMPORTANCE_OPTIONS))
            if unknown:
                raise ValueError(f"method_options: unknown option(s) {unknown} for 'layer_importance'; allowed: "
                                 f"{', '.join(LAYER_IMPORTANCE_OPTIONS)}.")
            options = {**LAYER_IMPORTANCE_OPTIONS, **options}
            options["min_bits"] = check_bits(options["min_bits"], "method_options['min_bits']", high=self.bits)
            options["finetune_epochs"] = _integer("method_options['finetune_epochs']", options["finetune_epochs"],
                                                  minimum=0)
            options["imprint_samples"] = _integer("method_options['imprint_samples']", options["imprint_samples"],
                                                  minimum=1)
        elif options:
            raise ValueError(f"method_options: method {self.method!r} takes no options, got {options!r}.")
        self.method_options = options

        if self.method == "cgmq":
            if self.budget is None:
                raise ValueError("budget: method 'cgmq' needs a relative BOP budget (>= 1/16 = every weight at 2 bits).")
            self.budget = check_budget(self.budget)
        elif self.method == "layer_importance" and self.budget is not None:
            self.budget = _number("budget (target mean bits)", self.budget, positive=True)
            if not options["min_bits"] <= self.budget <= self.bits:
                raise ValueError(f"budget (target mean bits) must be in {options['min_bits']}..{self.bits}, got "
                                 f"{self.budget!r}.")
        elif self.budget is not None:
            raise ValueError(f"budget: only methods 'cgmq' and 'layer_importance' use a budget, not {self.method!r}.")

    @property
    def quantizer_spec(self):
        """The host layers' ``quantizer`` argument for this run: ``"nested"`` or a comparator spec."""
        if self.method == "nested":
            return "nested"
        if self.method == "cgmq":
            return {"method": "cgmq", **self.method_options}
        return {"method": "lsq" if self.method == "lsq" else "fixed", "bits": self.bits}

    @staticmethod
    def _check_schedule(schedule) -> List[List[float]]:
        if not isinstance(schedule, (list, tuple)):
            raise ValueError(f"lr_schedule must be a list of [epoch, factor] pairs, got {schedule!r}.")
        out = []
        for item in schedule:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ValueError(f"lr_schedule: each entry must be an [epoch, factor] pair, got {item!r}.")
            epoch = _integer("lr_schedule epoch", item[0], minimum=0)
            factor = _number("lr_schedule factor", item[1], positive=True, allow_zero=False)
            out.append([epoch, factor])
        epochs = [e for e, _ in out]
        if len(set(epochs)) != len(epochs):
            raise ValueError(f"lr_schedule: an epoch appears twice in {schedule!r}.")
        return sorted(out)

    @classmethod
    def field_names(cls) -> tuple:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """A config from a dict (e.g. ``to_dict`` output or a workflow's YAML); unknown keys raise ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"RunConfig.from_dict needs a dict, got {type(data).__name__}.")
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown RunConfig field(s) {unknown}; allowed: {', '.join(cls.field_names())}.")
        if "dataset" not in data:
            raise ValueError("dataset: missing (required).")
        return cls(**data)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of every field (defaults resolved)."""
        d = dataclasses.asdict(self)
        d["terms"] = dict(self.terms)
        d["lr_schedule"] = [list(p) for p in self.lr_schedule]
        d["method_options"] = dict(self.method_options)
        return d

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes`` applied (validated again)."""
        d = self.to_dict()
        d.update(changes)
        return RunConfig.from_dict(d)

    @property
    def quantized(self) -> bool:
        return self.scheme != "float"

    def lr_at(self, epoch: int) -> float:
        """The learning rate of (0-based) ``epoch``: ``learning_rate`` times every factor whose epoch has come."""
        lr = self.learning_rate
        for start, factor in self.lr_schedule:
            if epoch >= start:
                lr *= factor
        return lr


def _fmt(value) -> str:
    return f"{float(value):g}"


def run_id(config: RunConfig) -> str:
    """A stable, readable, filesystem-safe id of a run, e.g. ``digits-nested-rowwise-lam1e-10-qat-s42``.

    Parts: dataset, scheme (the method instead for a comparator, e.g. ``digits-lsq-outputwise-b4-qat-s42``;
    ``ptq_eval`` runs: ``digits-ptq_eval-scalar-b4-s42``), then for quantized schemes the granularity and
    ``lam<λ>`` (nested) or ``<term><γ>`` per term (loss terms, sorted by name, joined by ``+``) or the method's knobs
    (:func:`_method_knobs`), the mode (not for ``ptq_eval``), ``s<seed>``; then only where
    they differ from the dataset defaults: ``e<epochs>``, ``bs<batch>``, ``lr<lr>``, ``sched<e>x<f>...``,
    ``n<max_train>``, ``v<max_val>``, ``px<image_size>``, ``si<scale_init>``, ``sm<scale_min>``. Paths
    (data, float weights, TensorBoard) and ``jit_compile`` are not part of it.
    """
    c = config
    parts = [c.dataset, c.scheme if c.method == "nested" or c.scheme == "ptq_eval" else c.method]
    if c.quantized:
        parts.append(c.granularity)
        parts.extend(_method_knobs(c))
        if c.scheme != "ptq_eval":
            parts.append(c.mode)
    parts.append(f"s{c.seed}")
    d = DATASET_DEFAULTS[c.dataset]
    if c.epochs != d["epochs"]:
        parts.append(f"e{c.epochs}")
    if c.batch_size != d["batch_size"]:
        parts.append(f"bs{c.batch_size}")
    if c.learning_rate != d["learning_rate"]:
        parts.append(f"lr{_fmt(c.learning_rate)}")
    if [list(p) for p in c.lr_schedule] != [[e, float(f)] for e, f in d["lr_schedule"]]:
        parts.append("sched" + ("+".join(f"{e}x{_fmt(f)}" for e, f in c.lr_schedule) or "none"))
    if c.max_train is not None:
        parts.append(f"n{c.max_train}")
    if c.max_val is not None:
        parts.append(f"v{c.max_val}")
    if c.image_size is not None:
        parts.append(f"px{c.image_size}")
    if c.quantized and c.scale_init != DEFAULT_SCALE:
        parts.append(f"si{_fmt(c.scale_init)}")
    if c.quantized and c.scale_min != DEFAULT_SCALE:
        parts.append(f"sm{_fmt(c.scale_min)}")
    return re.sub(r"[^A-Za-z0-9._+-]", "_", "-".join(parts))


def _method_knobs(c: RunConfig) -> List[str]:
    """The run-id parts of the swept knob: ``lam<λ>`` / ``<term><γ>`` (nested method), ``b<bits>`` (fixed, lsq,
    ptq_eval, layer_importance; ``avg<budget>`` for a target mean), ``bud<budget>`` (cgmq), then the non-default
    method options (cgmq: ``gweight``, ``dir<k>``, ``glr<lr>``, ``gi<init>``; layer_importance: ``min<b>``,
    ``ft<epochs>``, ``imp<n>``)."""
    from lqs_core.comparators.cgmq import DEFAULT_GATE_LR, GATE_INIT

    if c.scheme == "ptq_eval":
        return [f"b{c.bits}"]
    if c.method == "nested":
        if c.scheme == "nested":
            return [f"lam{_fmt(c.threshold)}"]
        return ["+".join(f"{name}{_fmt(g)}" for name, g in sorted(c.terms.items()))]
    o = c.method_options
    if c.method == "cgmq":
        parts = [f"bud{_fmt(c.budget)}"]
        if o["gates"] != "layer":
            parts.append(f"g{o['gates']}")
        if o["direction"] != 1:
            parts.append(f"dir{o['direction']}")
        if o["gate_lr"] != DEFAULT_GATE_LR[o["direction"]]:
            parts.append(f"glr{_fmt(o['gate_lr'])}")
        if o["gate_init"] != GATE_INIT:
            parts.append(f"gi{_fmt(o['gate_init'])}")
        return parts
    parts = [f"b{c.bits}"]
    if c.method == "layer_importance":
        if c.budget is not None:
            parts.append(f"avg{_fmt(c.budget)}")
        for key, tag in (("min_bits", "min"), ("finetune_epochs", "ft"), ("imprint_samples", "imp")):
            if o[key] != LAYER_IMPORTANCE_OPTIONS[key]:
                parts.append(f"{tag}{o[key]}")
    return parts


def _describe(config: RunConfig) -> str:
    c = config
    if not c.quantized:
        return f"{c.dataset} float seed={c.seed}"
    if c.scheme == "ptq_eval":
        return f"{c.dataset} ptq_eval {c.granularity} bits={c.bits} seed={c.seed}"
    if c.method != "nested":
        knob = " ".join(_method_knobs(c))
        return f"{c.dataset} {c.method} {c.granularity} {knob} {c.mode} seed={c.seed}"
    if c.scheme == "nested":
        knob = f"λ={_fmt(c.threshold)}"
    else:
        knob = " ".join(f"{name} γ={_fmt(g)}" for name, g in sorted(c.terms.items()))
    return f"{c.dataset} {c.scheme} {c.granularity} {knob} {c.mode} seed={c.seed}"


# ---------------------------------------------------------------------------------------------------------------
# Training


class EpochRecorder(keras.callbacks.Callback):
    """Records one row per epoch and (``verbose > 0``) prints one line per epoch.

    Row: ``epoch`` (1-based count of finished epochs), ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
    ``lr``, ``epoch_seconds``, any other Keras log, and for quantized models :func:`lqs_core.metrics.epoch_stats`
    (``unique_integers``, ``int_range``, ``int_min``, ``int_max``, ``scale_mean/<tensor>``).
    """

    def __init__(self, config: RunConfig, quantized: bool, verbose: int = 1):
        super().__init__()
        self.config = config
        self.quantized = quantized
        self.verbose = verbose
        self.rows: List[dict] = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        from lqs_core import metrics

        logs = dict(logs or {})
        row = {"epoch": epoch + 1}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            row[key] = float(logs.pop(key)) if key in logs else float("nan")
        logs.pop("learning_rate", None)
        logs.pop("lr", None)
        row["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["epoch_seconds"] = time.perf_counter() - self._start if self._start is not None else float("nan")
        for key, value in logs.items():
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                pass
        if self.quantized:
            row.update(metrics.epoch_stats(self.model))
        self.rows.append(row)
        if self.verbose > 0:
            print(self.format_line(row), flush=True)

    def format_line(self, row: dict) -> str:
        line = (
            f"[{_describe(self.config)}] epoch {row['epoch']}/{self.config.epochs}  "
            f"loss {row['loss']:.4f}  acc {100 * row['accuracy']:.2f}%  "
            f"val_loss {row['val_loss']:.4f}  val_acc {100 * row['val_accuracy']:.2f}%  lr {row['lr']:.3g}"
        )
        if "unique_integers" in row:
            line += f"  unique {row['unique_integers']}  ints {row['int_min']}..{row['int_max']}"
        return line + f"  ({row['epoch_seconds']:.1f} s)"

    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def load_float_model(path, config: Optional[RunConfig] = None, input_shape=None, num_classes: int = 10):
    """The float baseline stored at ``path``: a run directory (its ``model.keras``), a ``.keras`` file, or a
    ``.weights.h5`` file (loaded into the float twin of ``config.dataset``'s network)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, MODEL_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"float_weights: {path} does not exist (train the float baseline first).")
    if path.endswith(".h5"):
        if config is None:
            raise ValueError("Loading a .weights.h5 file needs the config (which network to build).")
        from lqs_core import models

        kwargs = {"input_shape": input_shape, "num_classes": num_classes} if input_shape is not None else {}
        model = models.build(config.dataset, quantized=False, seed=config.seed, **kwargs)
        model.load_weights(path)
        return model
    import lqs_core.layers  # noqa: F401  (registers the lqs layers for deserialization)

    return keras.saving.load_model(path, compile=False)


def float_report(model) -> dict:
    """Size numbers of a float model, comparable with :func:`lqs_core.metrics.report` of its quantized twin:
    ``float_zip_bytes`` / ``float32_bytes`` / ``params`` over the layers the twin quantizes
    (:func:`lqs_core.models.twin_layer_names`), and ``float_zip_bytes_all`` over every Dense/Conv2D weight."""
    from lqs_core import metrics, models

    twins = set(models.twin_layer_names(model))
    twin_arrays, all_arrays = {}, {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            continue
        for variable in layer.weights:
            name = f"{layer.name}/{variable.name}"
            value = np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)
            all_arrays[name] = value
            if layer.name in twins:
                twin_arrays[name] = value
    params = int(sum(a.size for a in twin_arrays.values()))
    return {
        "params": params,
        "float32_bytes": 4 * params,
        "float_zip_bytes": int(metrics.zipped_float_size_bytes(twin_arrays)) if twin_arrays else 0,
        "float_zip_bytes_all": int(metrics.zipped_float_size_bytes(all_arrays)) if all_arrays else 0,
    }


def train(config: RunConfig, out_dir=None, verbose: int = 1, callbacks: Sequence = ()) -> "RunResult":
    """Train one run as ``config`` says and return its :class:`RunResult` (saved to ``out_dir`` if given).

    Steps: ``keras.utils.set_random_seed(seed)`` and ``tf.config.experimental.enable_op_determinism()`` (not with
    ``jit_compile``, see :class:`RunConfig`); data via
    :func:`lqs_core.data.load`; the network via :func:`lqs_core.models.build` (its float twin for scheme
    ``float``); for mode ``ptq`` the float baseline's weights copied in; for ``loss_terms`` the terms attached
    (:func:`lqs_core.losses.attach`); compile with ``Adam(learning_rate)`` — **Keras' default epsilon 1e-7, kept
    on purpose** (SPEC §1.1: with ~1e-10 scale gradients, epsilon sets the scale step) —, sparse categorical
    cross-entropy and accuracy; ``fit`` with the validation split, the per-epoch recorder, a
    ``LearningRateScheduler`` when the schedule is not empty, TensorBoard when ``tensorboard_dir`` is set, and
    ``callbacks``. ``verbose``: 0 silent, 1 one line per epoch, 2 also Keras' own epoch output.
    """
    import tensorflow as tf

    from lqs_core import data, losses, metrics, models

    if not isinstance(config, RunConfig):
        config = RunConfig.from_dict(dict(config))
    if config.tensorboard_dir:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ImportError(
                "tensorboard_dir is set but the `tensorboard` package is not installed (pip install tensorboard), "
                "or leave tensorboard_dir unset."
            ) from None
    keras.utils.set_random_seed(config.seed)
    if not config.jit_compile:
        # Keras turns XLA off while op determinism is on, so an XLA run gives determinism up (see RunConfig).
        tf.config.experimental.enable_op_determinism()

    splits = data.load(
        config.dataset,
        batch_size=config.batch_size,
        seed=config.seed,
        data_dir=config.data_dir,
        max_train=config.max_train,
        max_val=config.max_val,
        image_size=config.image_size,
    )
    build_kwargs = dict(seed=config.seed, input_shape=splits.input_shape, num_classes=splits.num_classes)
    if config.quantized:
        build_kwargs.update(
            granularity=config.granularity,
            threshold=config.threshold,
            scale_init=config.scale_init,
            scale_min=config.scale_min,
            quantizer=config.quantizer_spec,
        )
    model = models.build(config.dataset, quantized=config.quantized, **build_kwargs)
    if config.scheme == "ptq_eval":
        return _ptq_eval(config, model, splits, out_dir)

    if config.mode == "ptq":
        float_model = load_float_model(config.float_weights, config, splits.input_shape, splits.num_classes)
        from lqs_core.layers import quantized_params

        if quantized_params(float_model):
            raise ValueError(f"float_weights: {config.float_weights} holds a quantized model; ptq needs the float "
                             "baseline (a run with scheme 'float').")
        models.transfer_float_weights(float_model, model)
        del float_model
    if config.scheme == "loss_terms":
        losses.attach(model, *(losses.make_term(name, gamma) for name, gamma in config.terms.items()))

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),  # epsilon: Keras default 1e-7
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )

    recorder = EpochRecorder(config, config.quantized, verbose=verbose)
    constraint = None
    all_callbacks = [recorder]
    if config.method == "cgmq":
        from lqs_core.comparators import CGMQConstraint

        constraint = CGMQConstraint(config.budget)
        all_callbacks.insert(0, constraint)  # before the recorder: it adds relative_bops to the epoch logs
    if config.lr_schedule:
        all_callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch, lr: config.lr_at(epoch)))
    if config.tensorboard_dir:
        all_callbacks.append(keras.callbacks.TensorBoard(log_dir=os.path.join(config.tensorboard_dir, run_id(config))))
    all_callbacks.extend(callbacks)

    start = time.perf_counter()
    model.fit(
        splits.train,
        validation_data=splits.val,
        epochs=config.epochs,
        callbacks=all_callbacks,
        shuffle=False,  # the training pipeline is already shuffled (seeded) by lqs_core.data
        verbose=2 if verbose >= 2 else 0,
    )
    extra: Dict[str, Any] = {}
    final_eval = None
    if config.method == "layer_importance":
        final_eval = _select_layer_bits(config, model, splits, all_callbacks, extra, verbose)
    if constraint is not None:
        from lqs_core.comparators import assert_budget

        cost = assert_budget(model, config.budget)  # the callback enforced it at the end of training
        extra.update(budget=config.budget, bops=cost["bops"], enforced_rounds=int(constraint.enforced_rounds))
        if constraint.enforced_rounds:  # the gates moved after the last epoch: evaluate the final model
            final_eval = model.evaluate(splits.val, verbose=0)
    seconds = time.perf_counter() - start

    history = recorder.history()
    last = history.iloc[-1] if len(history) else {}
    report: Dict[str, Any] = {}
    summary = None
    if config.quantized:
        report.update(metrics.report(model))
        report.update(_bop_report(model))
        summary = metrics.summary(model)
    else:
        report.update(float_report(model))
    report.update(
        {
            "val_accuracy": float(last.get("val_accuracy", float("nan"))),
            "val_loss": float(last.get("val_loss", float("nan"))),
            "accuracy": float(last.get("accuracy", float("nan"))),
            "loss": float(last.get("loss", float("nan"))),
            "epochs": int(len(history)),
            "train_seconds": float(seconds),
            "n_train": int(splits.n_train),
            "n_val": int(splits.n_val),
        }
    )
    if final_eval is not None:
        report["val_loss"], report["val_accuracy"] = float(final_eval[0]), float(final_eval[1])
    report.update(extra)
    result = RunResult(config=config, model=model, history=history, report=report, summary=summary)
    if out_dir is not None:
        result.save(out_dir)
    return result


def _bop_report(model) -> dict:
    """``relative_bops`` and ``mean_weight_bits`` of a quantized model (:func:`lqs_core.comparators.cgmq.bop_cost`)."""
    from lqs_core.comparators import cgmq_cost

    cost = cgmq_cost(model)
    return {"relative_bops": cost["relative_bops"], "mean_weight_bits": cost["mean_bits"]}


def _collect(dataset, n: int):
    """Up to ``n`` examples ``(x, y)`` (numpy) from a batched ``tf.data`` pipeline."""
    xs, ys, have = [], [], 0
    for x, y in dataset:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
        have += len(ys[-1])
        if have >= n:
            break
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def _select_layer_bits(config: RunConfig, model, splits, callbacks, extra: dict, verbose: int):
    """Method ``layer_importance`` after the fixed-bit QAT epochs: Algorithm 2 on ``imprint_samples`` training
    examples (target mean bits = ``budget``), then ``finetune_epochs`` more epochs at the chosen bits; returns
    Keras' ``[val_loss, val_accuracy]`` of the final model and fills ``extra``."""
    from lqs_core.comparators import select_bits

    o = config.method_options
    qat_eval = model.evaluate(splits.val, verbose=0)
    x, y = _collect(splits.train, o["imprint_samples"])
    selection = select_bits(model, x, y, min_bits=o["min_bits"], target_mean_bits=config.budget,
                            num_classes=splits.num_classes)
    if verbose > 0:
        print(f"[{_describe(config)}] layer bits {selection.bits} (mean {selection.mean_bits:g}, imprinting "
              f"accuracy {100 * selection.accuracy:.2f}%)", flush=True)
    if o["finetune_epochs"]:
        model.fit(splits.train, validation_data=splits.val, initial_epoch=config.epochs,
                  epochs=config.epochs + o["finetune_epochs"], callbacks=callbacks, shuffle=False,
                  verbose=2 if verbose >= 2 else 0)
    extra.update(layer_bits=dict(selection.bits), mean_layer_bits=float(selection.mean_bits),
                 imprint_accuracy=float(selection.accuracy), qat_val_accuracy=float(qat_eval[1]))
    return model.evaluate(splits.val, verbose=0)


def _ptq_eval(config: RunConfig, model, splits, out_dir) -> "RunResult":
    """Scheme ``ptq_eval``: copy the float baseline into the fixed-bit twin ``model`` (min-max scales, the same as
    :func:`lqs_core.comparators.ptq_quantize` on the network's quantized layers), evaluate, no training."""
    from lqs_core import metrics, models
    from lqs_core.layers import quantized_params

    float_model = load_float_model(config.float_weights, config, splits.input_shape, splits.num_classes)
    if quantized_params(float_model):
        raise ValueError(f"float_weights: {config.float_weights} holds a quantized model; ptq_eval needs the float "
                         "baseline (a run with scheme 'float').")
    models.transfer_float_weights(float_model, model)
    del float_model
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=config.jit_compile)
    start = time.perf_counter()
    val_loss, val_accuracy = model.evaluate(splits.val, verbose=0)
    seconds = time.perf_counter() - start
    nan = float("nan")
    history = pd.DataFrame([{"epoch": 0, "loss": nan, "accuracy": nan, "val_loss": float(val_loss),
                             "val_accuracy": float(val_accuracy), "lr": nan, "epoch_seconds": seconds,
                             **metrics.epoch_stats(model)}])
    report: Dict[str, Any] = dict(metrics.report(model))
    report.update(_bop_report(model))
    report.update(val_accuracy=float(val_accuracy), val_loss=float(val_loss), accuracy=nan, loss=nan, epochs=0,
                  train_seconds=0.0, n_train=int(splits.n_train), n_val=int(splits.n_val))
    result = RunResult(config=config, model=model, history=history, report=report, summary=metrics.summary(model))
    if out_dir is not None:
        result.save(out_dir)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Results


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


def _versions() -> dict:
    import platform

    import tensorflow as tf

    try:
        from importlib.metadata import version

        lqs = version("lqs")
    except Exception:  # pragma: no cover - not installed
        lqs = None
    return {"lqs": lqs, "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


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
        metrics_path = os.path.join(out_dir, METRICS_FILE)
        if os.path.exists(metrics_path):
            os.unlink(metrics_path)
        files = {}

        write_text(os.path.join(out_dir, HISTORY_FILE), self.history.to_csv(index=False), fsync=True)
        files["history"] = HISTORY_FILE
        if self.summary is not None:
            write_text(os.path.join(out_dir, SUMMARY_FILE), self.summary.to_csv(index=False), fsync=True)
            files["summary"] = SUMMARY_FILE
        if self.model is not None and self.config.quantized:
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
        }
        write_text(metrics_path, json.dumps(_json_ready(payload), indent=2, sort_keys=False) + "\n", fsync=True)
        return out_dir

    def _save_integers(self, out_dir: str) -> str:
        try:
            from lqs_core import export
        except ImportError:
            export = None
        if export is not None and hasattr(export, "save_integers"):
            with atomic_path(os.path.join(out_dir, INTEGERS_FILE)) as tmp:
                export.save_integers(self.model, tmp)
            return INTEGERS_FILE
        from lqs_core import metrics

        buffer = io.BytesIO()
        np.savez_compressed(buffer, **metrics.integer_tensors(self.model))
        with atomic_path(os.path.join(out_dir, INTEGERS_NPZ_FILE)) as tmp:
            with open(tmp, "wb") as f:
                f.write(buffer.getvalue())
        return INTEGERS_NPZ_FILE

    def report_line(self) -> str:
        """One readable line: dataset, scheme, granularity, λ/γ, mode, seed, val accuracy, unique integers,
        integer range, bits, zipped size."""
        r = self.report
        parts = [_describe(self.config)]
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
        import lqs_core.layers  # noqa: F401  (registers the lqs layers for deserialization)

        model = keras.saving.load_model(model_path)
    return RunResult(config=config, model=model, history=history, report=report, summary=summary)


__all__ = [
    "BITS_METHODS",
    "DATASETS",
    "DATASET_DEFAULTS",
    "EpochRecorder",
    "LAYER_IMPORTANCE_OPTIONS",
    "METHODS",
    "MODES",
    "RunConfig",
    "RunResult",
    "SCHEMES",
    "TERM_NAMES",
    "float_report",
    "is_complete",
    "load_float_model",
    "load_result",
    "run_id",
    "train",
]
