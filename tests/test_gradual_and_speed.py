"""Gradual quantization (:mod:`lqs_core.gradual`, ``RunConfig.scale_from_epoch``) and the train loop's
``steps_per_execution`` (same numbers as one step per call) on the embedded digits data."""

import numpy as np
import pytest
from conftest import BACKEND

from lqs_core import gradual, spec, training
from lqs_core.spec import RunConfig, run_id


def _history_bits(result):
    h = result.history
    return [float(v).hex() for v in h["loss"]] + [float(v).hex() for v in h["val_loss"]] + list(h["unique_integers"])


@pytest.mark.backends
def test_scales_start_learning_at_the_given_epoch():
    qat = training.train(RunConfig(dataset="digits", threshold=1e-10, epochs=5), verbose=0)
    late = training.train(RunConfig(dataset="digits", threshold=1e-10, epochs=5, scale_from_epoch=3), verbose=0)
    h = late.history
    assert list(h["threshold"]) == [0.0, 0.0, 0.0, 1e-10, 1e-10]
    # before epoch 3 the scales stay at their initial value: thousands of integers, as with λ = 0
    assert h["unique_integers"].iloc[2] > 10 * qat.history["unique_integers"].iloc[2]
    assert np.allclose(h["scale_mean/dense_1/kernel"].iloc[:3], spec.DEFAULT_SCALE)
    # from epoch 3 on they grow and the integers collapse
    assert h["scale_mean/dense_1/kernel"].iloc[3] > 10 * spec.DEFAULT_SCALE
    assert h["unique_integers"].iloc[-1] < h["unique_integers"].iloc[2] / 10
    # the saved model keeps its configured λ
    assert {q.threshold for q in gradual.nested_quantizers(late.model)} == {1e-10}


@pytest.mark.backends
def test_start_epoch_zero_is_the_qat_run():
    a = training.train(RunConfig(dataset="digits", threshold=1e-10, epochs=3), verbose=0)
    b = training.train(RunConfig(dataset="digits", threshold=1e-10, epochs=3), verbose=0,
                       callbacks=[gradual.GradualQuantization(0, 1e-10)])
    assert _history_bits(a) == _history_bits(b)


def test_scale_from_epoch_validation_and_run_id():
    c = RunConfig(dataset="mnist", threshold=1e-10, scale_from_epoch=5)
    assert run_id(c) == "mnist-nested-rowwise-lam1e-10-from5-qat-s42"
    assert "from epoch 5" in spec.describe(c)
    assert run_id(RunConfig(dataset="mnist", threshold=1e-10)) == "mnist-nested-rowwise-lam1e-10-qat-s42"
    bad = [dict(threshold=0.0, scale_from_epoch=5), dict(scheme="loss_terms", terms={"maxbin": 1e-8}, scale_from_epoch=2),
           dict(threshold=1e-10, scale_from_epoch=20), dict(threshold=1e-10, scale_from_epoch=-1),
           dict(threshold=1e-10, scale_from_epoch=1.5), dict(method="lsq", bits=4, scale_from_epoch=2)]
    for changes in bad:
        with pytest.raises(ValueError, match="scale_from_epoch"):
            RunConfig(dataset="mnist", **changes)


def test_gradual_callback_refuses_bad_input():
    with pytest.raises(ValueError, match="start_epoch"):
        gradual.GradualQuantization(-1, 1e-10)
    with pytest.raises(ValueError, match="threshold"):
        gradual.GradualQuantization(2, -1.0)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="steps_per_execution > 1 only on TensorFlow")
def test_whole_epoch_per_execution_gives_the_same_numbers(monkeypatch):
    """TensorFlow runs an epoch per call of the compiled step; the numbers equal one step per call bit for bit
    (digits: 1 437 images, batch 32: 45 steps with a partial last batch)."""
    config = RunConfig(dataset="digits", threshold=1e-10, epochs=3)
    assert training.steps_per_execution(45) == 45
    fast = training.train(config, verbose=0)
    monkeypatch.setattr(training, "steps_per_execution", lambda n: 1)
    slow = training.train(config, verbose=0)
    assert _history_bits(fast) == _history_bits(slow)
    assert fast.report["zip_bytes"] == slow.report["zip_bytes"]


@pytest.mark.backends
def test_steps_per_execution_is_one_off_tensorflow():
    expected = 45 if BACKEND == "tensorflow" else 1
    assert training.steps_per_execution(45) == expected
    assert training.steps_per_execution(0) == 1
