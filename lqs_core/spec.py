"""The run vocabulary: names, defaults, :class:`RunConfig` and its validation, and **the** run id.

This module is the one place where a run is described; the sweep expansion of the workflow
(:mod:`lqs_core.workflow.sweep`) and training (:mod:`lqs_core.training`) both use it, and it imports neither Keras
nor TensorFlow (the Snakefile imports it at parse time).

A run id is ``<dataset>-<scheme or method>[-<granularity>-<knobs>[-<mode>]]-s<seed>[-<training suffixes>]``::

    digits-float-s42                                  float baseline
    digits-nested-rowwise-lam1e-10-qat-s42            nested scheme, λ = 1e-10
    digits-loss_terms-rowwise-maxbin1e-08-qat-s42     loss-term scheme, MaxBin with γ = 1e-8
    digits-lsq-outputwise-b4-qat-s42                  a comparator: LSQ at 4 bits
    digits-ptq_eval-outputwise-b8-s42                 min-max PTQ of the float baseline (no mode: no training)
    cifar10-float-s42-e6-n10000                       non-default training settings as suffixes

The training suffixes (``e<epochs>``, ``bs<batch>``, ``lr<lr>``, ``sched…``, ``n<max_train>``, ``v<max_val>``,
``px<image_size>``, ``si<scale_init>``, ``sm<scale_min>``) are left out of the ids of a workflow's runs
(``run_id(config, training_suffixes=False)``): a profile shares them by all its runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from lqs_core.granularity import GRANULARITIES

#: float32 machine epsilon.
EPSILON = float(np.finfo(np.float32).eps)
#: Default scale initial value and lower bound: ``100 * float32 eps ≈ 1.19e-5`` (docs/method.md §1.3).
DEFAULT_SCALE = 100 * EPSILON

DATASETS = ("digits", "mnist", "cifar10", "imagenette")
SCHEMES = ("nested", "loss_terms", "float", "ptq_eval")
MODES = ("qat", "ptq")
#: Quantization methods (docs/method.md §5): the nested layer and the comparators (:mod:`lqs_core.quantizers`, :mod:`lqs_core.procedures`).
METHODS = ("nested", "fixed", "lsq", "cgmq", "layer_importance", "hgq2", "keras_quantize")
#: Methods of other libraries (:mod:`lqs_core.external`): HGQ2's learned per-weight bit widths (trained, knob
#: ``method_options["beta"]``) and Keras' ``model.quantize`` of the float baseline (scheme ``ptq_eval``, bits 4 or 8).
EXTERNAL_METHODS = ("hgq2", "keras_quantize")
#: ``method_options`` of ``hgq2`` and their defaults: the strength of HGQ2's bit-width regularizer ``MonoL1``.
HGQ2_OPTIONS = {"beta": 1e-6}
#: Bits of ``keras_quantize`` (Keras' int4 / int8 modes).
KERAS_QUANTIZE_BITS = (4, 8)
#: Methods that take ``bits`` (2..8): fixed-bit QAT, LSQ, the start of the layer-importance search (and ptq_eval).
BITS_METHODS = ("fixed", "lsq", "layer_importance")
#: ``method_options`` of the layer-importance method and their defaults.
LAYER_IMPORTANCE_OPTIONS = {"min_bits": 2, "finetune_epochs": 0, "imprint_samples": 1024}
#: Loss terms of the loss-term scheme (docs/method.md §2).
TERMS = ("maxbin", "inverse", "difference", "reconstruction")
#: Datasets whose network quantizes Dense layers (``channelwise`` is not defined there).
DENSE_DATASETS = ("digits", "mnist")
#: Datasets that are not bundled with a package (fetched once into the data directory / Keras cache).
DOWNLOAD_DATASETS = ("mnist", "cifar10", "imagenette")
#: Comparator families of a workflow profile (``ptq`` = scheme ``ptq_eval``; the others are methods).
COMPARATORS = ("ptq", "fixed", "lsq", "cgmq", "layer_importance", "hgq2", "keras_quantize")

#: Bit widths of the fixed-bit, LSQ and PTQ quantizers (and the start of the layer-importance search).
BITS_MIN, BITS_MAX = 2, 8
#: CGMQ: bit widths a gate can select (smallest first), the initial gate (32 bits), its lower bound (2 bits),
#: the paper's gate learning rate per direction, and the smallest relative BOP cost (every weight at 2 bits).
BIT_WIDTHS = (2, 4, 8, 16, 32)
GATE_INIT = 5.5
GATE_MIN = 0.5
DEFAULT_GATE_LR = {1: 0.01, 2: 0.01, 3: 0.001}
MIN_RELATIVE_BUDGET = BIT_WIDTHS[0] / 32
#: ``method_options`` of CGMQ and their defaults (``gate_lr`` None: :data:`DEFAULT_GATE_LR` of the direction).
CGMQ_OPTIONS = {"gates": "layer", "direction": 1, "gate_lr": None, "gate_init": GATE_INIT}

#: Defaults per dataset, used where a :class:`RunConfig` field is ``None`` (the thesis' Table 4.1; digits: see :mod:`lqs_core.training`).
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


def check_number(name: str, value, positive: bool = False) -> float:
    """``value`` as a finite float ``>= 0`` (``> 0`` with ``positive``), else ``ValueError`` naming ``name``, the value
    and what is allowed (booleans are refused)."""
    bound = "> 0" if positive else ">= 0"
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}.")
    return number


def check_bits(bits, name: str = "bits", low: int = BITS_MIN, high: int = BITS_MAX) -> int:
    """``bits`` as an int in ``[low, high]`` (default 2..8), else ``ValueError`` naming ``name``."""
    if isinstance(bits, bool):
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {bits!r}.")
    if isinstance(bits, (float, np.floating)) and float(bits).is_integer():
        bits = int(bits)
    if isinstance(bits, np.integer):
        bits = int(bits)
    if not isinstance(bits, int):
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {bits!r}.")
    if not low <= bits <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {bits}.")
    return bits


def qrange(bits: int) -> Tuple[int, int]:
    """``(Q_N, Q_P) = (2^(b-1), 2^(b-1) - 1)``: the signed b-bit integer range is ``[-Q_N, Q_P]``."""
    bits = int(bits)
    return 2 ** (bits - 1), 2 ** (bits - 1) - 1


def check_budget(budget) -> float:
    """A relative BOP budget as a float in ``[1/16, 1]``; ``ValueError`` otherwise (NaN, unreachable, above 1 —
    1 is every weight at 32 bits, the most any model costs)."""
    if isinstance(budget, bool):
        raise ValueError(f"budget must be a number in [{MIN_RELATIVE_BUDGET}, 1], got {budget!r}.")
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise ValueError(f"budget must be a number in [{MIN_RELATIVE_BUDGET}, 1], got {budget!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"budget must be a finite number in [{MIN_RELATIVE_BUDGET}, 1], got {budget!r}.")
    if value < MIN_RELATIVE_BUDGET:
        raise ValueError(
            f"budget {value!r} is below {MIN_RELATIVE_BUDGET} (= 2/32, every weight at 2 bits), the smallest relative "
            "BOP cost any model reaches; no model meets it."
        )
    if value > 1:
        raise ValueError(f"budget {value!r} is above 1 (every weight at 32 bits, the cost of the float model); "
                         f"allowed: [{MIN_RELATIVE_BUDGET}, 1].")
    return value


def check_cgmq_options(options: Mapping) -> dict:
    """CGMQ's ``method_options`` with defaults filled in (:data:`CGMQ_OPTIONS`) and every value checked."""
    unknown = sorted(set(options) - set(CGMQ_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for quantizer CGMQQuantizer; allowed: "
                         f"{', '.join(CGMQ_OPTIONS)}.")
    options = {**CGMQ_OPTIONS, **options}
    gates = options["gates"]
    if gates not in ("layer", "weight"):
        raise ValueError(f"gates must be 'layer' or 'weight', got {gates!r}.")
    kind = options["direction"]
    if isinstance(kind, bool) or kind not in (1, 2, 3):
        raise ValueError(f"direction must be 1, 2 or 3 (dir_1..dir_3), got {kind!r}.")
    kind = int(kind)
    lr = options["gate_lr"]
    lr = DEFAULT_GATE_LR[kind] if lr is None else lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"gate_lr must be a finite number > 0, got {lr!r}.")
    init = options["gate_init"]
    if isinstance(init, bool) or not isinstance(init, (int, float)) or not np.isfinite(init) or init < GATE_MIN:
        raise ValueError(f"gate_init must be a finite number >= {GATE_MIN}, got {init!r}.")
    return {"gates": gates, "direction": kind, "gate_lr": float(lr), "gate_init": float(init)}


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
        scale_from_epoch: gradual quantization (the nested scheme with λ > 0 only): the scales stay at their
            initial value (λ = 0) for the first ``k`` epochs and learn with λ from (0-based) epoch ``k`` on;
            ``0`` (default): from the start. Must be below ``epochs`` (:mod:`lqs_core.gradual`).
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
    scale_from_epoch: int = 0

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
            if key not in TERMS:
                raise ValueError(f"terms: unknown loss term {name!r}; allowed: {_allowed(TERMS)}.")
            clean[key] = _number(f"terms[{key!r}] (gamma)", gamma, positive=True)
        self.terms = clean
        if self.scheme == "loss_terms":
            if not self.terms:
                raise ValueError(
                    f"terms: scheme 'loss_terms' needs at least one term {{name: gamma}}; allowed names: "
                    f"{_allowed(TERMS)}."
                )
            self.threshold = 0.0  # the loss-term scheme trains the scales only through the terms (docs/method.md §2)
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

        self.seed = _integer("seed", self.seed, minimum=0)
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
        self.scale_from_epoch = _integer("scale_from_epoch", self.scale_from_epoch, minimum=0)
        if self.scale_from_epoch:
            if self.scheme != "nested" or self.method != "nested" or self.threshold == 0:
                raise ValueError(f"scale_from_epoch: gradual quantization applies to the nested scheme with λ > 0 only, "
                                 f"got scale_from_epoch={self.scale_from_epoch} with scheme {self.scheme!r}, method "
                                 f"{self.method!r}, threshold {self.threshold!r}.")
            if self.scale_from_epoch >= self.epochs:
                raise ValueError(f"scale_from_epoch: must be below epochs ({self.epochs}) so that the scales learn at "
                                 f"all, got {self.scale_from_epoch}.")
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
        if self.method not in METHODS:
            raise ValueError(f"method: unknown value {self.method!r}; allowed: {_allowed(METHODS)}.")
        if self.scheme == "ptq_eval":
            if self.method == "nested":
                self.method = "fixed"
            if self.method not in ("fixed", "keras_quantize"):
                raise ValueError(f"method: scheme 'ptq_eval' uses min-max fixed-bit quantizers (method 'fixed') or "
                                 f"Keras' model.quantize ('keras_quantize'), got {self.method!r}.")
            if self.method == "keras_quantize" and self.bits not in KERAS_QUANTIZE_BITS:
                raise ValueError(f"bits: method 'keras_quantize' takes bits in {list(KERAS_QUANTIZE_BITS)} (Keras' "
                                 f"int4 / int8), got {self.bits!r}.")
            if not self.float_weights:
                raise ValueError("float_weights: scheme 'ptq_eval' needs the path of the float baseline.")
            self.mode = "ptq"
        elif self.method != "nested" and self.scheme != "nested":
            raise ValueError(f"method: {self.method!r} is trained with the task loss (scheme 'nested', the default), "
                             f"not with scheme {self.scheme!r}.")
        if self.method == "keras_quantize" and self.scheme != "ptq_eval":
            raise ValueError("method: 'keras_quantize' quantizes the trained float baseline without training: it needs "
                             "scheme 'ptq_eval'.")
        if self.method == "hgq2" and self.mode != "qat":
            raise ValueError(f"mode: method 'hgq2' trains from scratch (qat), got {self.mode!r}.")
        if self.method != "nested" and self.threshold != 0:
            raise ValueError(f"threshold: λ applies to method 'nested' only, got threshold={self.threshold!r} with "
                             f"method {self.method!r}.")

        if self.method in BITS_METHODS or self.method == "keras_quantize":
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
                options = check_cgmq_options(dict(options))
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
        elif self.method == "hgq2":
            unknown = sorted(set(options) - set(HGQ2_OPTIONS))
            if unknown:
                raise ValueError(f"method_options: unknown option(s) {unknown} for 'hgq2'; allowed: "
                                 f"{', '.join(HGQ2_OPTIONS)}.")
            options = {**HGQ2_OPTIONS, **options}
            options["beta"] = _number("method_options['beta']", options["beta"], positive=True)
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
    def quantizer_spec(self) -> Optional[dict]:
        """The kernel quantizer spec of this run's network (:func:`lqs_core.quantizers.get`); ``None`` for the
        float baseline and for the other libraries' methods (:data:`EXTERNAL_METHODS`, which bring their own layers).
        Biases take the same method and options at ``scalar`` granularity."""
        if not self.quantized or self.method in EXTERNAL_METHODS:
            return None
        if self.method == "nested":
            return {"method": "nested", "granularity": self.granularity, "threshold": self.threshold,
                    "scale_init": self.scale_init, "scale_min": self.scale_min}
        if self.method == "cgmq":
            return {"method": "cgmq", "granularity": self.granularity, **self.method_options}
        return {"method": "lsq" if self.method == "lsq" else "fixed", "bits": self.bits,
                "granularity": self.granularity}

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


def baseline_id(dataset: str, seed: int) -> str:
    """Id of a workflow's float baseline: ``digits-float-s42`` (= ``run_id`` of its config without suffixes)."""
    return f"{dataset}-float-s{seed}"


def run_id(config: RunConfig, training_suffixes: bool = True) -> str:
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
    parts = [c.dataset, c.method if c.method in EXTERNAL_METHODS
             else c.scheme if c.method == "nested" or c.scheme == "ptq_eval" else c.method]
    if c.quantized:
        if c.method not in EXTERNAL_METHODS:  # their granularity is their library's (per weight / per channel)
            parts.append(c.granularity)
        parts.extend(method_knobs(c))
        if c.scheme != "ptq_eval":
            parts.append(c.mode)
    parts.append(f"s{c.seed}")
    if training_suffixes:
        parts.extend(_training_suffixes(c))
    return re.sub(r"[^A-Za-z0-9._+-]", "_", "-".join(parts))


def _training_suffixes(c: RunConfig) -> List[str]:
    parts = []
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
    return parts


def method_knobs(c: RunConfig) -> List[str]:
    """The run-id parts of the swept knob: ``lam<λ>`` / ``<term><γ>`` (nested method), ``b<bits>`` (fixed, lsq,
    ptq_eval, layer_importance; ``avg<budget>`` for a target mean), ``bud<budget>`` (cgmq), then the non-default
    method options (cgmq: ``gweight``, ``dir<k>``, ``glr<lr>``, ``gi<init>``; layer_importance: ``min<b>``,
    ``ft<epochs>``, ``imp<n>``)."""
    if c.scheme == "ptq_eval":
        return [f"b{c.bits}"]
    if c.method == "hgq2":
        return [f"beta{_fmt(c.method_options['beta'])}"]
    if c.method == "nested":
        if c.scheme == "nested":
            return [f"lam{_fmt(c.threshold)}"] + ([f"from{c.scale_from_epoch}"] if c.scale_from_epoch else [])
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


def describe(config: RunConfig) -> str:
    c = config
    if not c.quantized:
        return f"{c.dataset} float seed={c.seed}"
    if c.scheme == "ptq_eval":
        if c.method == "keras_quantize":
            return f"{c.dataset} keras_quantize int{c.bits} seed={c.seed}"
        return f"{c.dataset} ptq_eval {c.granularity} bits={c.bits} seed={c.seed}"
    if c.method != "nested":
        knob = " ".join(method_knobs(c))
        where = "" if c.method in EXTERNAL_METHODS else f" {c.granularity}"
        return f"{c.dataset} {c.method}{where} {knob} {c.mode} seed={c.seed}"
    if c.scheme == "nested":
        knob = f"λ={_fmt(c.threshold)}" + (f" from epoch {c.scale_from_epoch}" if c.scale_from_epoch else "")
    else:
        knob = " ".join(f"{name} γ={_fmt(g)}" for name, g in sorted(c.terms.items()))
    return f"{c.dataset} {c.scheme} {c.granularity} {knob} {c.mode} seed={c.seed}"
