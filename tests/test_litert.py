"""LiteRT export that keeps the learned integers (lqs_core.litert): storage per tensor, predictions vs Keras with
the ai-edge-litert interpreter. TensorFlow's by nature: skipped on other backends."""

import warnings

import keras
import numpy as np
import pytest
from conftest import BACKEND, requires_tensorflow

from lqs_core import metrics
from lqs_core.convert import quantize_model

pytestmark = requires_tensorflow
litert = pytest.importorskip("lqs_core.litert") if BACKEND == "tensorflow" else None
pytest.importorskip("ai_edge_litert")

X = np.random.default_rng(0).normal(size=(8, 10, 10, 3)).astype("float32")


def cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.SeparableConv2D(8, 3, name="sep")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, name="head")(x)
    return keras.Model(inputs, outputs)


def convert(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return quantize_model(cnn(), *args, **kwargs)


def keras_predict(model):
    return keras.ops.convert_to_numpy(model(X, training=False))


@pytest.mark.parametrize("spec, options, storage", [
    ("nested", {"granularity": "outputwise", "scale_init": 5e-3}, {"int8"}),
    ("nested", {"granularity": "rowwise", "scale_init": 5e-3}, {"int8"}),
    ("nested", {"granularity": "scalar", "scale_init": 2e-4}, {"int16"}),
    ({"method": "lsq", "bits": 4, "granularity": "outputwise"}, {}, {"int8"}),
    ({"method": "fixed", "bits": 8}, {}, {"int8"}),
])
def test_integers_stored_and_predictions_equal(tmp_path, spec, options, storage):
    q = convert(spec, **options)
    report = litert.export_litert(q, tmp_path / "q.tflite", float_path=tmp_path / "f.tflite")
    kernels = [t for t in report["tensors"] if not t["name"].endswith("/bias")]
    assert {t["storage"] for t in kernels} == storage, report["tensors"]
    for t in report["tensors"]:  # per-axis exactly where the scale varies along one axis
        s = metrics.scales(q)[t["name"]]
        varying = [i for i, d in enumerate(s.shape) if d > 1]
        assert t["quantized_dimension"] == (varying[0] if varying and t["storage"] != "float32" else None)
    expected = keras_predict(q)
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "q.tflite", X), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "f.tflite", X), expected, rtol=1e-5, atol=1e-5)
    assert report["file_bytes"] < report["float_file_bytes"]
    assert report["float_file_bytes"] == (tmp_path / "f.tflite").stat().st_size


def test_what_does_not_fit_stays_float(tmp_path):
    q = convert("nested", granularity="outputwise")  # default scale 1.19e-5: integers ~1e4 with per-axis scales
    report = litert.export_litert(q, tmp_path / "q.tflite")
    conv = next(t for t in report["tensors"] if t["name"] == "conv/kernel")
    assert conv["storage"] == "float32" and "no per-axis scales for int16" in conv["reason"]
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "q.tflite", X), keras_predict(q), rtol=1e-5,
                               atol=1e-5)
    q = convert("cgmq", gates="weight")  # one step per bit width and weight: no TFLite form
    report = litert.export_litert(q, tmp_path / "c.tflite", int16=False)
    assert {t["storage"] for t in report["tensors"]} == {"float32"}
    assert "no per-tensor or per-axis scale" in report["tensors"][0]["reason"]
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "c.tflite", X), keras_predict(q), rtol=1e-5,
                               atol=1e-5)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no quantized parameters"):
        litert.export_litert(cnn(), tmp_path / "x.tflite")
    with pytest.raises(ValueError, match="int16 must be True or False"):
        litert.export_litert(convert(), tmp_path / "x.tflite", int16="yes")
    assert not (tmp_path / "x.tflite").exists()
