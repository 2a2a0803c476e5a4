"""``.keras`` files written by lqs 0.1 (before hosts took quantizer objects) load with equal predictions.

The files in ``tests/data/lqs-0.1`` were saved by lqs 0.1 (commit 146d1ce) from a tiny digits MLP per quantizer
kind, trained one step, with the predictions on ``inputs.npy`` stored beside them.
"""

import glob
import os

import keras
import numpy as np
import pytest

import lqs_core  # noqa: F401  (registers the lqs classes)
from lqs_core import layers, loss_terms
from lqs_core.quantizers import CGMQQuantizer, FixedBitQuantizer, LSQQuantizer, NestedQuantizer

HERE = os.path.join(os.path.dirname(__file__), "data", "lqs-0.1")
FILES = sorted(glob.glob(os.path.join(HERE, "*.keras")))
KINDS = {"nested_rowwise": NestedQuantizer, "nested_maxbin": NestedQuantizer, "lsq_outputwise": LSQQuantizer,
         "cgmq_scalar": CGMQQuantizer, "fixed_scalar": FixedBitQuantizer}


def test_every_kind_is_there():
    assert sorted(os.path.basename(f)[:-6] for f in FILES) == sorted(KINDS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: os.path.basename(p))
def test_legacy_file_loads_with_equal_predictions(path):
    name = os.path.basename(path)[:-6]
    model = keras.saving.load_model(path, compile=False)
    x = np.load(os.path.join(HERE, "inputs.npy"))
    expected = np.load(os.path.join(HERE, f"{name}.predictions.npy"))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-7)
    hosts = [layer for layer in model.layers if isinstance(layer, layers.QuantizedLayer)]
    assert len(hosts) == 2
    for host in hosts:
        assert isinstance(host.kernel_quantizer, KINDS[name]) and isinstance(host.bias_quantizer, KINDS[name])
        assert host.bias_quantizer.granularity == "scalar"
    # the new config round-trips
    again = keras.Model.from_config(model.get_config())
    again.set_weights(model.get_weights())
    np.testing.assert_allclose(again.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-7)


def test_legacy_loss_terms_become_objects():
    model = keras.saving.load_model(os.path.join(HERE, "nested_maxbin.keras"), compile=False)
    q = model.get_layer("dense_1").kernel_quantizer
    assert [type(t) for t in q.loss_terms] == [loss_terms.MaxBin, loss_terms.Inverse]
    assert q.loss_terms[0].gamma == 1e-3 and 0 < q.loss_terms[0].weight < 1
    assert model.get_layer("dense_1").kernel_quantizer.granularity == "columnwise"
