"""quantize_model: one call from a float Keras model to a quantized one (lqs_core.convert, QuantizedWrapper)."""

import warnings

import keras
import numpy as np
import pytest
from conftest import BACKEND, to_numpy

import lqs_core
from lqs_core import export, metrics
from lqs_core.convert import float_layers, quantize_model
from lqs_core.layers import QDense, QuantizedWrapper, quantized_params
from lqs_core.loss_terms import MaxBin
from lqs_core.procedures import ptq_quantize

X = np.random.default_rng(0).normal(size=(32, 8, 8, 3)).astype("float32")
Y = np.arange(32) % 10


def residual_cnn(seed=0):
    """The issue's CNN: Conv2D, BatchNormalization, DepthwiseConv2D, a residual add, Dense."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Add(name="residual")([x, y])
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="residual_cnn")


def predict(model, x=X):
    return to_numpy(model(x, training=False))


def convert(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return quantize_model(model, *args, **kwargs)


def nested_reference(p, s):
    """NumPy reference of the nested quantizer: floor(P / s) * s in float32."""
    return (np.floor(p / s) * s).astype(np.float32)


@pytest.mark.backends
def test_every_quantizable_layer_is_wrapped_and_float_layers_are_named():
    model = residual_cnn()
    with pytest.warns(UserWarning, match=r"1 layer\(s\) of 'residual_cnn' keep float weights: "
                                         r"BatchNormalization, a layer type lqs does not quantize: 'bn'$"):
        q = quantize_model(model, "nested", granularity="outputwise", threshold=1e-9)
    kinds = {layer.name: type(layer).__name__ for layer in q.layers}
    assert kinds["conv"] == kinds["dw"] == kinds["head"] == "QuantizedWrapper"
    assert kinds["bn"] == "BatchNormalization"
    names = [name for name, *_ in quantized_params(q)]
    assert names == ["conv/kernel", "conv/bias", "dw/kernel", "dw/bias", "head/kernel", "head/bias"]
    dw = q.get_layer("dw")
    assert dw.kernel_quantizer.axis == 2  # outputwise on a depthwise kernel: its channel axis
    assert tuple(dw.kernel_quantizer.scale.shape) == (1, 1, 16, 1)
    assert float_layers(q) == {"bn": "BatchNormalization, a layer type lqs does not quantize"}
    assert model.get_layer("conv").__class__ is keras.layers.Conv2D  # the input model is unchanged


@pytest.mark.backends
def test_wrapped_layer_computes_with_the_quantized_weights():
    model = residual_cnn()
    q = convert(model, "nested", granularity="outputwise", scale_init=0.01)
    # every P_r is floor(P / s) * s of the copied float weights
    for name, layer, param, variable, quantizer in quantized_params(q):
        p = to_numpy(model.get_layer(layer.name).get_weights()[["kernel", "bias"].index(param)])
        np.testing.assert_array_equal(to_numpy(variable), p)
        np.testing.assert_array_equal(to_numpy(layer.quantized(param)), nested_reference(p, to_numpy(quantizer.scale)))
    # the model equals the float model with P_r put in by hand
    reference = residual_cnn()
    for layer in reference.layers:
        if layer.weights and isinstance(q.get_layer(layer.name), QuantizedWrapper):
            layer.set_weights([to_numpy(q.get_layer(layer.name).quantized(p)) for p in ("kernel", "bias")])
    np.testing.assert_allclose(predict(q), predict(reference), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec, options", [
    ("nested", {"granularity": "rowwise", "threshold": 1e-10}),
    ({"method": "lsq", "bits": 4}, {}),
    ({"method": "fixed", "bits": 8, "granularity": "outputwise"}, {}),
    ("cgmq", {}),
])
def test_every_quantizer_kind(spec, options):
    q = convert(residual_cnn(), spec, **options)
    method = spec if isinstance(spec, str) else spec["method"]
    hosts = [layer for layer in q.layers if isinstance(layer, QuantizedWrapper)]
    assert len(hosts) == 3
    assert all(lqs_core.quantizers.method_of(h.kernel_quantizer) == method for h in hosts)
    assert all(h.bias_quantizer.granularity == "scalar" for h in hosts)
    assert np.all(np.isfinite(predict(q)))


def test_other_layer_types_sequential_and_nested_models():
    keras.utils.set_random_seed(1)
    inner = keras.Sequential([keras.Input((6, 4)), keras.layers.Conv1D(5, 3, name="c1"),
                              keras.layers.SeparableConv1D(4, 2, name="sep1")], name="inner")
    inputs = keras.Input((6, 4))
    x = inner(inputs)
    x = keras.layers.EinsumDense("abc,cd->abd", output_shape=(3, 3), bias_axes="d", name="einsum")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, name="out")(x)
    model = keras.Model(inputs, outputs)
    x_in = np.random.default_rng(1).normal(size=(4, 6, 4)).astype("float32")
    q = convert(model, "nested", scale_init=1e-3)
    names = [name for name, *_ in quantized_params(q)]
    assert sorted(names) == sorted(["c1/kernel", "c1/bias", "sep1/depthwise_kernel", "sep1/pointwise_kernel",
                                    "sep1/bias", "einsum/kernel", "einsum/bias", "out/kernel", "out/bias"])
    assert isinstance(q.get_layer("inner"), keras.Sequential)
    np.testing.assert_allclose(predict(q, x_in), predict(model, x_in), atol=0.05)
    # the two kernels of a separable convolution get their own quantizers
    sep = q.get_layer("inner").get_layer("sep1")
    assert sep._quantized["depthwise_kernel"][1] is not sep._quantized["pointwise_kernel"][1]
    # an embedding
    keras.utils.set_random_seed(2)
    emb = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(7, 4, name="emb")])
    qe = convert(emb, "nested", scale_init=1e-3)
    ids = np.array([[0, 3, 6]])
    np.testing.assert_allclose(predict(qe, ids), predict(emb, ids), atol=1e-3)


def test_layers_exclude_and_bad_input():
    model = residual_cnn()
    with pytest.warns(UserWarning, match=r"does not quantize: 'bn'; Dense, not quantized \(excluded\): 'head'"):
        q = quantize_model(model, exclude=["head"])
    assert type(q.get_layer("head")) is keras.layers.Dense
    q = convert(model, layers=["conv"])
    assert [type(layer).__name__ for layer in q.layers if layer.name in ("conv", "dw")] == ["QuantizedWrapper",
                                                                                             "DepthwiseConv2D"]
    q = convert(model, layers=lambda layer: isinstance(layer, keras.layers.Dense))
    assert [n for n, *_ in quantized_params(q)] == ["head/kernel", "head/bias"]
    with pytest.raises(ValueError, match=r"no layer named \['nope'\].*its layers"):
        quantize_model(model, layers=["nope"])
    with pytest.raises(ValueError, match="Unknown quantizer method 'int8'"):
        quantize_model(model, "int8")
    with pytest.raises(ValueError, match=r"bits"):
        quantize_model(model, "lsq", bits=12)
    with pytest.raises(ValueError, match=r"'channelwise'.*2-D kernel"):
        convert(model, granularity="channelwise")
    with pytest.raises(ValueError, match="subclassed model"):
        class Sub(keras.Model):
            def call(self, x):
                return x
        quantize_model(Sub())
    with pytest.raises(ValueError, match="LossTerm"):
        quantize_model(model, loss_terms=["maxbin"])


def test_loss_term_scheme():
    q = convert(residual_cnn(), "nested", granularity="outputwise", loss_terms=[MaxBin(1e-3)])
    q(X[:4])
    values = [float(to_numpy(v)) for v in q.losses]  # one term per quantized tensor (zero for the zero biases)
    assert len(values) == 6 and min(values) >= 0 and sorted(values)[3] > 0  # three kernels > 0


def test_keras_quantize_is_refused_with_a_clear_message():
    q = convert(residual_cnn())
    with pytest.raises(ValueError, match=r"model.quantize\('int8'\).*quantized by lqs already.*export_litert"):
        q.quantize("int8")
    plain = keras.Sequential([keras.Input((4,)), QDense(3)])
    with pytest.raises(ValueError, match="quantized by lqs already"):
        plain.quantize("int8")


def test_keras_applications_model():
    model = keras.applications.MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=5)
    with pytest.warns(UserWarning, match="BatchNormalization"):
        q = quantize_model(model, "nested", granularity="outputwise", scale_init=1e-4)
    kinds = {type(layer.layer).__name__ for layer in q.layers if isinstance(layer, QuantizedWrapper)}
    assert kinds == {"Conv2D", "DepthwiseConv2D"}
    x = np.random.default_rng(0).uniform(0, 1, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(predict(q, x), predict(model, x), atol=0.02)


@pytest.mark.slow
@pytest.mark.backends  # all but the LiteRT part, which traces with TensorFlow
def test_residual_cnn_one_call_train_save_export(tmp_path):
    """The issue's "must show": one call, 1 epoch, .keras identical, integer file, LiteRT within tolerance."""
    model = residual_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(X, Y, epochs=1, batch_size=16, verbose=0)  # a trained float model
    q = convert(model, "nested", granularity="outputwise", threshold=1e-9, scale_init=2e-3)
    q.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    scales_before = [to_numpy(s) for s in metrics.scales(q).values()]
    history = q.fit(X, Y, epochs=1, batch_size=16, verbose=0,
                    callbacks=[lqs_core.QuantizationLogger(file_size=True)])
    assert "unique_integers" in history.history and "entropy_bytes" in history.history
    assert any(not np.array_equal(a, b) for a, b in zip(scales_before, metrics.scales(q).values()))  # scales learned
    expected = predict(q)
    # .keras round trip: identical predictions, integers and scales
    q.save(tmp_path / "q.keras")
    loaded = keras.saving.load_model(tmp_path / "q.keras")
    np.testing.assert_array_equal(predict(loaded), expected)
    for a, b in zip(metrics.integer_tensors(loaded).values(), metrics.integer_tensors(q).values()):
        np.testing.assert_array_equal(a, b)
    # converting again changes nothing
    np.testing.assert_array_equal(predict(convert(loaded)), expected)
    # the integer file: a fresh conversion of the float model loads it and predicts the same
    info = export.save_integers(q, tmp_path / "q.lqsint")
    fresh = convert(residual_cnn(seed=5), "nested", granularity="outputwise")
    export.load_integers(fresh, tmp_path / "q.lqsint")
    np.testing.assert_array_equal(predict(fresh), expected)
    assert info["file_bytes"] < 4 * sum(int(np.prod(w.shape)) for w in q.weights)
    if BACKEND != "tensorflow":
        pytest.skip("the LiteRT export traces with TensorFlow")
    from lqs_core import litert

    report = litert.export_litert(q, tmp_path / "q.tflite", float_path=tmp_path / "f.tflite", mode="float")
    # int8, but for a bias the converter folds BatchNorm into (lqs_core.litert keeps that one float32, and says so)
    tensors = report["tensors"]
    assert all(t["storage"] == "int8" or "BatchNormalization" in t["reason"] for t in tensors), tensors
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "q.tflite", X), expected, rtol=1e-5, atol=1e-6)
    assert report["file_bytes"] < report["float_file_bytes"]


def test_ptq_quantize_names_the_layers_it_leaves_in_float():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.DepthwiseConv2D(3, name="dw"),
                              keras.layers.Flatten(), keras.layers.Dense(4, name="d")])
    with pytest.warns(UserWarning, match=r"ptq_quantize: 1 layer\(s\).*'dw' \(DepthwiseConv2D, not quantized"):
        ptq_quantize(model, 8, layers=["d"])


# ---------------------------------------------------------------------------------------------------------------
# Per-layer specs by name pattern


def method_of(model, name):
    return lqs_core.quantizers.method_of(model.get_layer(name).kernel_quantizer)


def test_per_layer_specs_by_pattern_first_match_wins():
    model = residual_cnn()
    with pytest.warns(UserWarning, match=r"Dense, not quantized \(excluded\): 'head'"):
        q = quantize_model(model, {"conv": {"method": "lsq", "bits": 4}, "d.*": "fixed", "head": None, "*": "nested"})
    assert (method_of(q, "conv"), method_of(q, "dw")) == ("lsq", "fixed")
    assert q.get_layer("conv").kernel_quantizer.bits == 4
    assert method_of(q, "conv") == lqs_core.quantizers.method_of(q.get_layer("conv").bias_quantizer)  # bias follows
    assert type(q.get_layer("head")) is keras.layers.Dense
    # the first matching pattern wins; False keeps float too; options are merged into every spec
    q = convert(model, {"head": "lsq", "head|conv": "fixed", "dw": False}, granularity="outputwise")
    assert (method_of(q, "head"), method_of(q, "conv")) == ("lsq", "fixed")
    assert type(q.get_layer("dw")) is keras.layers.DepthwiseConv2D
    assert q.get_layer("conv").kernel_quantizer.granularity == "outputwise"
    # no "*": the layers no pattern matches stay float; layers= / exclude= still apply on top
    q = convert(model, {"conv|dw": "nested"}, exclude=["dw"])
    assert [n for n, *_ in quantized_params(q)] == ["conv/kernel", "conv/bias"]
    # a pattern matches the whole name (re.fullmatch), or the path of a layer in a nested model
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")], name="inner")
    inputs = keras.Input((4,))
    nested = keras.Model(inputs, keras.layers.Dense(2, name="d2")(inner(inputs)))
    q = convert(nested, {"inner/d": "lsq", "d.": "fixed"})
    assert method_of(q.get_layer("inner"), "d") == "lsq" and method_of(q, "d2") == "fixed"


def test_bad_patterns_and_specs_are_refused_up_front():
    model = residual_cnn()
    with pytest.raises(ValueError, match=r"pattern 'conv'.*Unknown quantizer method 'int8'; allowed: 'nested'"):
        quantize_model(model, {"conv": "int8", "*": "nested"})
    with pytest.raises(ValueError, match=r"pattern 'conv'.*Unknown option"):
        quantize_model(model, {"conv": {"method": "lsq", "threshold": 1e-9}})
    with pytest.raises(ValueError, match=r"pattern 'conv' maps to True; allowed: a method name.*None / False"):
        quantize_model(model, {"conv": True})
    with pytest.raises(ValueError, match=r"pattern 'conv\[' is not a regular expression"):
        quantize_model(model, {"conv[": "nested"})
    with pytest.raises(ValueError, match=r"pattern\(s\) \['cnv.\*'\] match no layer of 'residual_cnn'.*'conv'"):
        quantize_model(model, {"cnv.*": "lsq", "*": "nested"})
    with pytest.raises(ValueError, match=r"pattern\(s\) \['conv'\] match no layer"):  # "*" took every layer before
        quantize_model(model, {"*": "nested", "conv": "lsq"})
    with pytest.raises(ValueError, match=r"pattern\(s\) \['con'\]"):  # the whole name, not a prefix
        quantize_model(model, {"con": "lsq"})
    with pytest.raises(ValueError, match=r"mixes spec keys \['method'\] with other keys \['conv'\]"):
        quantize_model(model, {"method": "lsq", "conv": "nested"})
    with pytest.raises(ValueError, match="pattern must be a string"):
        quantize_model(model, {3: "nested"})


# ---------------------------------------------------------------------------------------------------------------
# Layers inside layers: MultiHeadAttention (wrapped in place), custom layers (named in the warning)


def transformer_block(seed=0):
    """A small transformer block: MultiHeadAttention, residual, LayerNorm, a Dense feed-forward, a Dense head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 8))
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(inputs, inputs)
    x = keras.layers.LayerNormalization(name="ln")(keras.layers.Add()([inputs, x]))
    x = keras.layers.Dense(16, activation="relu", name="ff")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="transformer")


XT = np.random.default_rng(3).normal(size=(16, 6, 8)).astype("float32")
YT = np.arange(16) % 3


@pytest.mark.backends
def test_multi_head_attention_projections_are_quantized_and_train_save_load(tmp_path):
    from lqs_core.convert import QuantizedMultiHeadAttention

    model = transformer_block()
    with pytest.warns(UserWarning, match=r"1 layer\(s\) of 'transformer' keep float weights: LayerNorm.*: 'ln'$"):
        q = quantize_model(model, "nested", threshold=1e-6, scale_init=1e-3)
    mha = q.get_layer("mha")
    assert type(mha) is QuantizedMultiHeadAttention
    names = [n for n, *_ in quantized_params(q)]
    for projection in ("query", "key", "value", "attention_output"):
        assert f"mha_{projection}/kernel" in names and f"mha_{projection}/bias" in names
    assert len(names) == 12 and len(mha.weights) == 16  # 4 x (kernel, bias) + their scales, nothing twice
    np.testing.assert_allclose(predict(q, XT), predict(model, XT), atol=0.02)
    # it computes with P_r: the float model with P_r put in by hand gives the same
    reference = transformer_block()
    for attr, wrapper in mha._projections():
        values = [to_numpy(wrapper.quantized(p)) for p in ("kernel", "bias")]
        getattr(reference.get_layer("mha"), attr).set_weights(values)
    for name in ("ff", "head"):
        reference.get_layer(name).set_weights([to_numpy(q.get_layer(name).quantized(p)) for p in ("kernel", "bias")])
    np.testing.assert_allclose(predict(q, XT), predict(reference, XT), rtol=1e-5, atol=1e-5)
    # it trains (weights and scales of the projections move), saves, loads, converts again unchanged
    q.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    before = {v.path: to_numpy(v) for v in mha.weights}
    q.fit(XT, YT, epochs=2, batch_size=8, verbose=0)
    moved = {v.path for v in mha.weights if not np.array_equal(before[v.path], to_numpy(v))}
    assert "mha/query/kernel" in moved and "mha/mha_query/kernel_quantizer/scale" in moved
    expected = predict(q, XT)
    q.save(tmp_path / "t.keras")
    loaded = keras.saving.load_model(tmp_path / "t.keras")
    assert type(loaded.get_layer("mha")) is QuantizedMultiHeadAttention
    np.testing.assert_array_equal(predict(loaded, XT), expected)
    np.testing.assert_array_equal(predict(convert(loaded), XT), expected)
    # the integer file holds the projections too, and loads into a fresh conversion
    export.save_integers(q, tmp_path / "t.lqsint")
    fresh = convert(transformer_block(seed=7), "nested", threshold=1e-6)
    export.load_integers(fresh, tmp_path / "t.lqsint")
    np.testing.assert_array_equal(predict(fresh, XT), expected)


def test_attention_loss_terms_survive_save_and_exclusion(tmp_path):
    q = convert(transformer_block(), "nested", loss_terms=[MaxBin(1e-3)])
    weights = [t.weight for *_, quantizer in quantized_params(q) for t in quantizer.loss_terms]
    assert len(weights) == 12 and sum(weights) == pytest.approx(1.0)  # 4 projections, ff, head: kernel + bias
    q.save(tmp_path / "t.keras")
    loaded = keras.saving.load_model(tmp_path / "t.keras")
    assert [t.weight for *_, quantizer in quantized_params(loaded) for t in quantizer.loss_terms] == weights
    with pytest.warns(UserWarning, match=r"MultiHeadAttention, not quantized \(excluded\): 'mha'"):
        q = quantize_model(transformer_block(), exclude=["mha"])
    assert type(q.get_layer("mha")) is keras.layers.MultiHeadAttention


class DenseBlock(keras.layers.Layer):
    """A custom layer holding a Dense: quantize_model cannot replace it (named in the warning)."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.inner = keras.layers.Dense(units, name="inner")

    def build(self, input_shape):
        self.inner.build(input_shape)

    def call(self, x):
        return self.inner(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_custom_layer_with_a_dense_inside_is_named_with_the_reason():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(DenseBlock(4, name="block")(inputs)))
    with pytest.warns(UserWarning, match=r"DenseBlock, holds Dense 'inner', which quantize_model cannot replace: .* "
                                         r"would be lost; build it from lqs host layers \(QDense\) instead: 'block'"):
        q = quantize_model(model)
    assert [n for n, *_ in quantized_params(q)] == ["head/kernel", "head/bias"]
    assert "holds Dense 'inner'" in float_layers(q)["block"]
