"""A corpus of bad inputs to the library: each is refused with an error that names the bad value and what is
allowed, before any training, and nothing stored before is lost or changed.

(The workflow configuration's corpus is in tests/test_workflow_bad_configs.py.)
"""

import hashlib
import os

import keras
import numpy as np
import pytest

from lqs_core import data, losses, models, quantizers
from lqs_core.layers import QConv2D, QDense
from lqs_core.procedures import enforce_budget, ptq_quantize
from lqs_core.results import load_result
from lqs_core.spec import RunConfig
from lqs_core.training import RunDiverged, train

NAN, INF = float("nan"), float("inf")


def _digits(**fields):
    return lambda: RunConfig(dataset="digits", **fields)


CASES = [
    # (id, call, substrings the message must contain)
    ("seed<0", _digits(seed=-1), ["seed", ">= 0", "-1"]),
    ("seed-str", _digits(seed="abc"), ["seed", "integer", "'abc'"]),
    ("dataset", lambda: RunConfig(dataset="svhn"), ["'svhn'", "allowed", "'digits'"]),
    ("lr-nan", _digits(learning_rate=NAN), ["learning_rate", "finite", "nan"]),
    ("lr-zero", _digits(learning_rate=0), ["learning_rate", "> 0", "0"]),
    ("lambda-inf", _digits(threshold=INF), ["threshold", "finite", "inf"]),
    ("lambda<0", _digits(threshold=-1e-10), ["threshold", ">= 0", "-1e-10"]),
    ("gamma-nan", _digits(scheme="loss_terms", terms={"maxbin": NAN}), ["maxbin", "finite", "nan"]),
    ("term", _digits(scheme="loss_terms", terms={"entropy": 1e-8}), ["'entropy'", "allowed", "'maxbin'"]),
    ("sched-dup", _digits(lr_schedule=[[5, 0.5], [5, 0.2]]), ["lr_schedule", "twice"]),
    ("sched-nan", _digits(lr_schedule=[[5, NAN]]), ["lr_schedule factor", "finite", "nan"]),
    ("channelwise-dense", _digits(granularity="channelwise"), ["'channelwise'", "Conv2D", "'rowwise'"]),
    ("granularity", _digits(granularity="diagonal"), ["'diagonal'", "allowed", "'rowwise'"]),
    ("budget>1", _digits(method="cgmq", budget=1.5), ["1.5", "above 1", "[0.0625, 1]"]),
    ("budget-nan", _digits(method="cgmq", budget=NAN), ["budget", "finite", "nan"]),
    ("bits", _digits(method="lsq", bits=9), ["bits", "2..8", "9"]),
    ("bits-missing", _digits(method="fixed"), ["bits", "'fixed'", "2..8"]),
    ("gate-init", _digits(method="cgmq", budget=0.5, method_options={"gate_init": NAN}), ["gate_init", "nan"]),
    ("ptq-no-weights", _digits(mode="ptq"), ["float_weights", "ptq"]),
    ("qdense-threshold-bool", lambda: QDense(4, threshold=True), ["threshold", "True", ">= 0"]),
    ("qdense-channelwise", lambda: QDense(4, granularity="channelwise"), ["'channelwise'", "2-D"]),
    ("qdense-units", lambda: QDense(0), ["units", "positive integer", "0"]),
    ("qconv-padding", lambda: QConv2D(4, 3, padding="full"), ["'full'", "'valid'", "'same'"]),
    ("quantizer-method", lambda: quantizers.get("ternary"), ["'ternary'", "allowed", "'nested'"]),
    ("quantizer-option", lambda: quantizers.get({"method": "lsq", "bitz": 4}), ["bitz", "allowed", "bits"]),
    ("scale-init", lambda: quantizers.NestedQuantizer(scale_init=0), ["scale_init", "> 0", "0"]),
    ("rounding", lambda: quantizers.NestedQuantizer(rounding="ceil"), ["'ceil'", "allowed", "floor", "round"]),
    ("gamma<0", lambda: losses.MaxBin(-1), ["gamma", ">= 0", "-1"]),
    ("make-term", lambda: losses.make_term("bogus", 1e-8), ["'bogus'", "allowed", "maxbin"]),
    ("model-dataset", lambda: models.build("svhn"), ["'svhn'", "allowed", "digits"]),
    ("model-granularity", lambda: models.build("digits", granularity="diagonal"), ["'diagonal'", "rowwise"]),
    ("data-seed", lambda: data.load("digits", seed="abc"), ["seed", "'abc'", "integer"]),
    ("data-batch", lambda: data.load("digits", batch_size=0), ["batch_size", "0"]),
    ("data-name", lambda: data.load("svhn"), ["'svhn'", "digits"]),
    ("ptq-bits", lambda: ptq_quantize(models.build("digits", None, seed=0), 9), ["bits", "2..8", "9"]),
    ("budget<min", lambda: enforce_budget(models.build("digits", "cgmq", seed=0), -0.5), ["budget", "-0.5"]),
]


def _snapshot(folder):
    digest = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                digest[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return digest


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A complete run stored before the bad inputs are tried."""
    folder = tmp_path_factory.mktemp("store") / "digits-float-s42"
    train(RunConfig(dataset="digits", scheme="float", epochs=1, max_train=64, max_val=32), out_dir=folder, verbose=0)
    return folder


@pytest.mark.parametrize("call, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(call, expected, stored):
    before = _snapshot(stored)
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert _snapshot(stored) == before


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


def test_unwritable_out_dir_is_refused_before_training(tmp_path, stored, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data loaded before out_dir was checked"))
    with pytest.raises(ValueError, match="cannot be written"):
        train(RunConfig(dataset="digits", epochs=1), out_dir=blocker / "run", verbose=0)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="on JAX/PyTorch Keras clips the cross-entropy of a "
                    "blown-up softmax at about 16, so the loss does not show the divergence")
def test_diverged_run_is_not_saved_and_keeps_the_stored_one(stored):
    before = _snapshot(stored)
    config = RunConfig(dataset="digits", scheme="float", learning_rate=1e9, epochs=2, max_train=256, max_val=32)
    with pytest.raises(RunDiverged, match="diverged"):
        train(config, out_dir=stored, verbose=0)
    assert _snapshot(stored) == before
    assert load_result(stored, load_model=False).report["epochs"] == 1


def test_incomplete_run_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_result(tmp_path)
