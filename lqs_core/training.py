"""One training run of the reproduction: a :class:`~lqs_core.spec.RunConfig` in, a
:class:`~lqs_core.results.RunResult` out (docs/method.md §4).

::

    from lqs_core.spec import RunConfig, run_id
    from lqs_core.training import train
    from lqs_core.results import load_result

    config = RunConfig(dataset="digits", scheme="nested", granularity="rowwise", threshold=1e-10, seed=42)
    result = train(config, out_dir="runs/" + run_id(config))
    print(result.report_line())
    again = load_result("runs/" + run_id(config))      # metrics.json, history.csv, model.keras, ...

Schemes:

* ``"nested"`` — the nested quantization layer with the ratio-threshold scale gradient, λ = ``threshold`` (docs/method.md §1);
* ``"loss_terms"`` — the same layers with λ = 0 (no scale gradient from the task loss) and the scales trained by
  the loss ``terms`` ``{name: γ}`` (docs/method.md §2; ``maxbin``, ``inverse``, ``difference``, ``reconstruction``;
  several terms are combined, each with its own γ). ``threshold`` is forced to 0 for this scheme;
* ``"float"`` — the float twin of the network (plain Dense/Conv2D), the baseline;
* ``"ptq_eval"`` — post-training quantization only (docs/method.md §5, survey §4.2): the float baseline in ``float_weights``
  is copied into the quantized twin with min-max ``bits``-bit fixed quantizers (per ``granularity``: ``scalar`` =
  per tensor, ``outputwise`` = per output channel) and evaluated, with no training (``epochs`` is not used).

Methods (``method``; docs/method.md §5, :mod:`lqs_core.quantizers`, :mod:`lqs_core.procedures`) — which quantizer the hosts use, trained with the task
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
(:func:`lqs_core.procedures.bop_cost`: weights-only BOPs relative to all-32-bit weights; bits per weight from
the quantizer — the nested scheme's from each tensor's fixed-width integer range).

Modes: ``"qat"`` trains from the random initialization; ``"ptq"`` (the thesis' name) starts from a trained float
baseline: ``float_weights`` (a run directory holding ``model.keras``, a ``.keras`` file or a ``.weights.h5`` file
of the float twin) is loaded and copied into the quantized twin (:func:`lqs_core.models.transfer_float_weights`),
which then keeps training with quantization on.

Training (:func:`train`) follows the thesis: Adam with Keras' default ``epsilon = 1e-7`` (kept on purpose: the
scale gradients are ~1e-10, so Adam's epsilon sets the effective scale step, docs/method.md §1.1), sparse categorical
cross-entropy, accuracy, validation on the test split after every epoch, seed 42 by default, and the backend's
determinism switched on (same config and seed -> identical numbers on the same machine; :func:`make_deterministic`).

Backends: TensorFlow is the reference (the reproduction's numbers are TensorFlow's); JAX and PyTorch run the same
code (:mod:`lqs_core.data` then feeds NumPy batches instead of ``tf.data``), with their own numbers.

Defaults per dataset (:data:`lqs_core.spec.DATASET_DEFAULTS`, used where a config field is ``None``; the thesis'
Table 4.1):

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

A run that diverges (a non-finite loss, or a training loss above :data:`DIVERGED_LOSS`) raises
:class:`RunDiverged` and is not saved as complete; an ``out_dir`` that cannot be written is refused before training.
Files of a saved run: :mod:`lqs_core.results`.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence

import keras
import numpy as np
import pandas as pd

from lqs_core import data, losses, metrics, models
from lqs_core.callbacks import QuantizationLogger
from lqs_core.checkpoint import CHECKPOINT_FILE, EpochCheckpoint, fingerprint
from lqs_core.external import hgq2 as external_hgq2
from lqs_core.external import keras_quantize as external_keras
from lqs_core.gradual import GradualQuantization
from lqs_core.layers import quantized_params
from lqs_core.procedures import CGMQConstraint, assert_budget, bop_cost, select_bits
from lqs_core.results import RunResult, load_model
from lqs_core.spec import MODEL_FILE, RunConfig, describe, run_id

#: A training loss above this (or a non-finite one) means the run diverged (cross-entropy of a 10-class softmax
#: stays below ~16; the loss terms add at most a few orders of magnitude on top in every sane setting).
DIVERGED_LOSS = 1e6


class RunDiverged(RuntimeError):
    """Training diverged (non-finite or exploding loss); nothing is saved as a complete run."""



class EpochRecorder(keras.callbacks.Callback):
    """Records one row per epoch and (``verbose > 0``) prints one line per epoch.

    Row: ``epoch`` (1-based count of finished epochs), ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
    ``lr``, ``epoch_seconds``, any other Keras log, and last the numbers ``logger`` (a
    :class:`lqs_core.callbacks.QuantizationLogger` placed before this callback) put into the logs: for quantized
    models :func:`lqs_core.metrics.epoch_stats` (``unique_integers``, ``int_range``, ``int_min``, ``int_max``,
    ``scale_mean/<tensor>``).
    """

    def __init__(self, config: RunConfig, logger: Optional[QuantizationLogger] = None, verbose: int = 1):
        super().__init__()
        self.config = config
        self.logger = logger
        self.verbose = verbose
        self.rows: List[dict] = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        row = {"epoch": epoch + 1}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            row[key] = float(logs.pop(key)) if key in logs else float("nan")
        logs.pop("learning_rate", None)
        logs.pop("lr", None)
        row["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["epoch_seconds"] = time.perf_counter() - self._start if self._start is not None else float("nan")
        stats = {key: logs.pop(key) for key in self.logger.last_keys if key in logs} if self.logger else {}
        for key, value in logs.items():
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                pass
        row.update(stats)
        self.rows.append(row)
        if self.verbose > 0:
            print(self.format_line(row), flush=True)

    def format_line(self, row: dict) -> str:
        line = (
            f"[{describe(self.config)}] epoch {row['epoch']}/{self.config.epochs}  "
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
        kwargs = {"input_shape": input_shape, "num_classes": num_classes} if input_shape is not None else {}
        model = models.build(config.dataset, None, seed=config.seed, **kwargs)
        model.load_weights(path)
        return model
    return load_model(path, compile=False)


def float_report(model) -> dict:
    """Size numbers of a float model, comparable with :func:`lqs_core.metrics.report` of its quantized twin:
    ``float_zip_bytes`` / ``float32_bytes`` / ``params`` over the layers the twin quantizes
    (:func:`lqs_core.models.twin_layer_names`), and ``float_zip_bytes_all`` over every Dense/Conv2D weight."""
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


def _check_writable(out_dir) -> None:
    """Refuse an ``out_dir`` that cannot be written, before any training (``ValueError`` naming it)."""
    out_dir = os.fspath(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".tmp-write-check-"):
            pass
    except OSError as e:
        raise ValueError(f"out_dir {out_dir!r} cannot be written ({e.strerror or e}); choose a writable folder.") from None


def check_converged(history: pd.DataFrame, config: RunConfig) -> None:
    """Raise :class:`RunDiverged` if a loss in ``history`` is non-finite or the training loss exceeds
    :data:`DIVERGED_LOSS`."""
    for column in ("loss", "val_loss"):
        if column not in history:
            continue
        values = history[column].to_numpy(dtype=float)
        bad = ~np.isfinite(values) | ((values > DIVERGED_LOSS) if column == "loss" else False)
        if bad.any():
            epoch = int(history["epoch"].iloc[int(np.argmax(bad))])
            raise RunDiverged(
                f"[{describe(config)}] training diverged: {column} = {values[bad][0]:.4g} at epoch {epoch} "
                f"(learning_rate {config.learning_rate:g}); the run is not saved. Lower the learning rate."
            )


def make_deterministic(jit_compile: bool = False) -> str:
    """Switch on what makes the current Keras backend's numbers repeatable; returns what was done (the state is
    recorded with every run by :func:`lqs_core.provenance.determinism`).

    * TensorFlow: ``tf.config.experimental.enable_op_determinism()`` — unless ``jit_compile`` (Keras turns XLA off
      while op determinism is on, so an XLA run gives determinism up, see :class:`~lqs_core.spec.RunConfig`);
    * PyTorch: ``torch.use_deterministic_algorithms(True)`` (on a GPU with ``warn_only``: an op without a
      deterministic kernel warns instead of failing; ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` is set if unset) and
      cuDNN's autotuner off;
    * JAX: nothing to switch at run time: XLA on the CPU is deterministic; on a GPU it needs
      ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` before JAX starts (a warning says so when it is missing).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        if jit_compile:
            return "tensorflow: off (jit_compile)"
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        return "tensorflow: op determinism"
    if backend == "torch":
        import torch

        gpu = torch.cuda.is_available()
        if gpu:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=gpu)
        torch.backends.cudnn.benchmark = False
        return "torch: deterministic algorithms" + (" (warn only)" if gpu else "")
    if backend == "jax":
        import jax

        if jax.default_backend() != "cpu" and "xla_gpu_deterministic_ops=true" not in os.environ.get("XLA_FLAGS", ""):
            warnings.warn("JAX on a GPU: set XLA_FLAGS=--xla_gpu_deterministic_ops=true before JAX starts for "
                          "repeatable numbers.", RuntimeWarning, stacklevel=2)
            return "jax: not deterministic on the GPU (XLA_FLAGS)"
        return f"jax: XLA on {jax.default_backend()}"
    return f"{backend}: nothing switched"


def _jit_compile(config: RunConfig) -> bool:
    """``jit_compile`` for ``model.compile``: the config's (TensorFlow: XLA; PyTorch: ``torch.compile``), and always
    on for JAX, whose train step Keras otherwise runs op by op (``jax.jit`` is deterministic on the CPU)."""
    return True if keras.backend.backend() == "jax" else config.jit_compile


def steps_per_execution(n_batches: Optional[int]) -> int:
    """Train steps Keras runs per call of the compiled function (``model.compile(steps_per_execution=...)``).

    TensorFlow: a whole epoch (``n_batches``) per call — the same steps, kernels and order as one step per call
    (the numbers are bit-identical, tests/test_training.py), without the per-step Python round trip (MNIST MLP, one
    core: 2.7 s -> 1.4 s per epoch, ``make benchmark``). JAX and PyTorch: 1 — Keras' JAX trainer unrolls
    ``steps_per_execution`` steps into one XLA program (compile time grows with it), and its per-step overhead is
    already small.
    """
    if keras.backend.backend() != "tensorflow" or not n_batches:
        return 1
    return int(n_batches)


def train(config: RunConfig, out_dir=None, verbose: int = 1, callbacks: Sequence = ()) -> RunResult:
    """Train one run as ``config`` says and return its :class:`RunResult` (saved to ``out_dir`` if given).

    Steps: ``keras.utils.set_random_seed(seed)`` and the backend's determinism (:func:`make_deterministic`; on
    TensorFlow ``tf.config.experimental.enable_op_determinism()``, not with ``jit_compile``); data via
    :func:`lqs_core.data.load`; the network via :func:`lqs_core.models.build` (its float twin for scheme
    ``float``); for mode ``ptq`` the float baseline's weights copied in; for ``loss_terms`` the terms attached
    (:func:`lqs_core.losses.attach`); compile with ``Adam(learning_rate)`` — **Keras' default epsilon 1e-7, kept
    on purpose** (docs/method.md §1.1: with ~1e-10 scale gradients, epsilon sets the scale step) —, sparse categorical
    cross-entropy and accuracy; ``fit`` with the validation split, the per-epoch recorder (fed by a
    :class:`lqs_core.callbacks.QuantizationLogger` for quantized models), a
    ``LearningRateScheduler`` when the schedule is not empty, TensorBoard when ``tensorboard_dir`` is set, and
    ``callbacks``. ``verbose``: 0 silent, 1 one line per epoch, 2 also Keras' own epoch output.
    """
    if not isinstance(config, RunConfig):
        config = RunConfig.from_dict(dict(config))
    if out_dir is not None:
        _check_writable(out_dir)
    if config.tensorboard_dir:
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError(
                "tensorboard_dir is set but the `tensorboard` package is not installed (pip install tensorboard), "
                "or leave tensorboard_dir unset."
            )
    keras.utils.set_random_seed(config.seed)
    make_deterministic(config.jit_compile)

    resume = _resumable(config, out_dir)
    start_epoch = resume.epochs_stored() if resume is not None else 0
    splits = _load_data(config, start_epoch)
    if config.method == "hgq2":
        model = external_hgq2.build(config.dataset, config.method_options["beta"], seed=config.seed,
                                    input_shape=splits.input_shape, num_classes=splits.num_classes)
    else:
        model = models.build(config.dataset, config.quantizer_spec, seed=config.seed, input_shape=splits.input_shape,
                             num_classes=splits.num_classes)
    if config.scheme == "ptq_eval":
        return _ptq_eval(config, model, splits, out_dir)

    if config.mode == "ptq":
        float_model = load_float_model(config.float_weights, config, splits.input_shape, splits.num_classes)
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
        jit_compile=_jit_compile(config),
        steps_per_execution=steps_per_execution(-(-splits.n_train // config.batch_size)),
    )

    logger = None
    if config.quantized:
        logger = QuantizationLogger(scales=True, sizes=False,
                                    stats=external_hgq2.epoch_stats if config.method == "hgq2" else None)
    recorder = EpochRecorder(config, logger, verbose=verbose)
    constraint = None
    all_callbacks = [logger, recorder] if logger else [recorder]
    if config.method == "cgmq":
        constraint = CGMQConstraint(config.budget)
        all_callbacks.insert(0, constraint)  # before the recorder: it adds relative_bops to the epoch logs
    if config.scale_from_epoch:
        all_callbacks.insert(0, GradualQuantization(config.scale_from_epoch, config.threshold))
    if config.lr_schedule:
        all_callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch, lr: config.lr_at(epoch)))
    if config.tensorboard_dir:
        all_callbacks.append(keras.callbacks.TensorBoard(log_dir=os.path.join(config.tensorboard_dir, run_id(config))))
    all_callbacks.extend(callbacks)

    start = time.perf_counter()
    initial_epoch = 0
    if resume is not None:
        resume.attach(recorder, stateful=[constraint] if constraint is not None else [],
                      seconds=lambda: time.perf_counter() - start)
        initial_epoch = resume.restore(model) if start_epoch else 0
        if initial_epoch != start_epoch:  # the stored state did not fit the model: discarded, start over
            splits = _load_data(config, 0)
        if initial_epoch and verbose > 0:
            print(f"[{describe(config)}] resuming after epoch {initial_epoch}/{config.epochs} ({resume.path})",
                  flush=True)
        all_callbacks.append(resume)  # last: after the recorder and the callbacks whose state it keeps
    if initial_epoch < config.epochs:
        model.fit(
            splits.train,
            validation_data=splits.val,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            callbacks=all_callbacks,
            shuffle=False,  # the training pipeline is already shuffled (seeded) by lqs_core.data
            verbose=2 if verbose >= 2 else 0,
        )
    extra: Dict[str, Any] = {}
    final_eval = None
    if config.method == "layer_importance":
        final_eval = _select_layer_bits(config, model, splits, all_callbacks, extra, verbose)
    if constraint is not None:
        cost = assert_budget(model, config.budget)  # the callback enforced it at the end of training
        extra.update(budget=config.budget, bops=cost["bops"], enforced_rounds=int(constraint.enforced_rounds))
        if constraint.enforced_rounds:  # the gates moved after the last epoch: evaluate the final model
            final_eval = model.evaluate(splits.val, verbose=0)
    seconds = time.perf_counter() - start + (resume.seconds_before if resume is not None else 0.0)

    history = recorder.history()
    try:
        check_converged(history, config)
    except RunDiverged:
        if resume is not None:  # resuming a diverged run would diverge again
            resume.remove()
        raise
    last = history.iloc[-1] if len(history) else {}
    report: Dict[str, Any] = {}
    summary = None
    if config.method == "hgq2":
        report.update(external_hgq2.report(model))
    elif config.quantized:
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
        if resume is not None:
            resume.remove()
    return result


def _load_data(config: RunConfig, start_epoch: int):
    """The run's data (:func:`lqs_core.data.load`), the training pipeline at (0-based) epoch ``start_epoch``."""
    return data.load(
        config.dataset,
        batch_size=config.batch_size,
        seed=config.seed,
        data_dir=config.data_dir,
        max_train=config.max_train,
        max_val=config.max_val,
        image_size=config.image_size,
        start_epoch=start_epoch,
    )


def _resumable(config: RunConfig, out_dir) -> Optional[EpochCheckpoint]:
    """The epoch checkpoint of a run saved to ``out_dir`` (:mod:`lqs_core.checkpoint`), or None — such a run
    starts over when interrupted: without an ``out_dir``; scheme ``ptq_eval`` (no training); ``layer_importance``
    (its bit selection and fine-tuning after ``fit`` are not checkpointed); Imagenette on TensorFlow (its
    ``tf.data`` pipeline cannot start at a later epoch without decoding every skipped image)."""
    if out_dir is None or config.scheme == "ptq_eval" or config.method == "layer_importance":
        return None
    if config.dataset == "imagenette" and keras.backend.backend() == "tensorflow":
        return None
    return EpochCheckpoint(os.path.join(os.fspath(out_dir), CHECKPOINT_FILE), fingerprint(config.to_dict()))


def _bop_report(model) -> dict:
    """``relative_bops`` and ``mean_weight_bits`` of a quantized model (:func:`lqs_core.procedures.bop_cost`)."""
    cost = bop_cost(model)
    return {"relative_bops": cost["relative_bops"], "mean_weight_bits": cost["mean_bits"]}


def _collect(dataset, n: int):
    """Up to ``n`` examples ``(x, y)`` (numpy) from a batched pipeline (``tf.data`` or :mod:`lqs_core.data`'s
    NumPy batches)."""
    xs, ys, have = [], [], 0
    for x, y in dataset:
        xs.append(np.asarray(keras.ops.convert_to_numpy(x)))
        ys.append(np.asarray(keras.ops.convert_to_numpy(y)))
        have += len(ys[-1])
        if have >= n:
            break
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def _select_layer_bits(config: RunConfig, model, splits, callbacks, extra: dict, verbose: int):
    """Method ``layer_importance`` after the fixed-bit QAT epochs: Algorithm 2 on ``imprint_samples`` training
    examples (target mean bits = ``budget``), then ``finetune_epochs`` more epochs at the chosen bits; returns
    Keras' ``[val_loss, val_accuracy]`` of the final model and fills ``extra``."""
    o = config.method_options
    qat_eval = model.evaluate(splits.val, verbose=0)
    x, y = _collect(splits.train, o["imprint_samples"])
    selection = select_bits(model, x, y, min_bits=o["min_bits"], target_mean_bits=config.budget,
                            num_classes=splits.num_classes)
    if verbose > 0:
        print(f"[{describe(config)}] layer bits {selection.bits} (mean {selection.mean_bits:g}, imprinting "
              f"accuracy {100 * selection.accuracy:.2f}%)", flush=True)
    if o["finetune_epochs"]:
        model.fit(splits.train, validation_data=splits.val, initial_epoch=config.epochs,
                  epochs=config.epochs + o["finetune_epochs"], callbacks=callbacks, shuffle=False,
                  verbose=2 if verbose >= 2 else 0)
    extra.update(layer_bits=dict(selection.bits), mean_layer_bits=float(selection.mean_bits),
                 imprint_accuracy=float(selection.accuracy), qat_val_accuracy=float(qat_eval[1]))
    return model.evaluate(splits.val, verbose=0)


def _ptq_eval(config: RunConfig, model, splits, out_dir) -> RunResult:
    """Scheme ``ptq_eval``: copy the float baseline into the fixed-bit twin ``model`` (min-max scales, the same as
    :func:`lqs_core.procedures.ptq_quantize` on the network's quantized layers), evaluate, no training."""
    float_model = load_float_model(config.float_weights, config, splits.input_shape, splits.num_classes)
    if quantized_params(float_model):
        raise ValueError(f"float_weights: {config.float_weights} holds a quantized model; ptq_eval needs the float "
                         "baseline (a run with scheme 'float').")
    if config.method == "keras_quantize":  # Keras' own model.quantize of the float baseline (lqs_core.external)
        return _keras_quantize_eval(config, model, float_model, splits, out_dir)
    models.transfer_float_weights(float_model, model)
    del float_model
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=_jit_compile(config))
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


def _keras_quantize_eval(config: RunConfig, float_twin, float_model, splits, out_dir) -> RunResult:
    """Method ``keras_quantize``: the float baseline's weights in its twin, ``model.quantize("int<bits>")``,
    evaluated (no training); sizes by :func:`lqs_core.external.keras_quantize.report`."""
    float_twin.set_weights(float_model.get_weights())
    external_keras.quantize(float_twin, config.bits)
    float_twin.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=_jit_compile(config))
    start = time.perf_counter()
    val_loss, val_accuracy = float_twin.evaluate(splits.val, verbose=0)
    seconds = time.perf_counter() - start
    report: Dict[str, Any] = dict(external_keras.report(float_twin, float_model, config.bits))
    nan = float("nan")
    history = pd.DataFrame([{"epoch": 0, "loss": nan, "accuracy": nan, "val_loss": float(val_loss),
                             "val_accuracy": float(val_accuracy), "lr": nan, "epoch_seconds": seconds,
                             "unique_integers": report["unique_integers"], "int_range": report["int_range"],
                             "int_min": report["int_min"], "int_max": report["int_max"]}])
    report.update(val_accuracy=float(val_accuracy), val_loss=float(val_loss), accuracy=nan, loss=nan, epochs=0,
                  train_seconds=0.0, n_train=int(splits.n_train), n_val=int(splits.n_val))
    result = RunResult(config=config, model=float_twin, history=history, report=report, summary=None)
    if out_dir is not None:
        result.save(out_dir)
    return result


__all__ = [
    "DIVERGED_LOSS",
    "EpochRecorder",
    "RunDiverged",
    "check_converged",
    "float_report",
    "load_float_model",
    "make_deterministic",
    "train",
]
