"""LiteRT export that keeps the learned integers (lqs_core.litert): int8 storage where the integers fit (exactly the
learned integers and scales, BatchNorm factors folded per channel), predictions vs Keras with the ai-edge-litert
interpreter, TFLite's dynamic-range op graph in ``mode="dynamic"``, the warning for weights left in float32, converter
options. TensorFlow's by nature: skipped on other backends."""

import warnings

import keras
import numpy as np
import pytest
from conftest import BACKEND, requires_tensorflow

from lqs_core import metrics
from lqs_core.convert import quantize_model
from lqs_core.layers import QuantizedWrapper, quantized_params

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


def wider_cnn():
    """Weights of at least 1024 values in CONV_2D and FULLY_CONNECTED (TFLite's dynamic-range threshold)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(32, 3, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(40, name="head")(keras.layers.Dense(64, activation="relu", name="fc")(x))
    return keras.Model(inputs, outputs)


def convert(*args, model=cnn, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        q = quantize_model(model(), *args, **kwargs)
    rng = np.random.default_rng(1)  # BatchNorm statistics that matter when folded (a negative gamma included)
    for layer in q.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(-1.5, 1.5, n), rng.normal(size=n), rng.normal(size=n),
                               rng.uniform(0.5, 2, n)])
    for layer in q.layers:  # non-zero biases
        if isinstance(layer, QuantizedWrapper):
            layer.layer.bias.assign(rng.normal(0, 0.05, layer.layer.bias.shape))
    return q


def keras_predict(model, x=X):
    return keras.ops.convert_to_numpy(model(x, training=False))


def export(q, path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no weight left in float32 unless a test says so
        kwargs.setdefault("mode", "float")  # exact predictions; tests of mode="dynamic" say so
        return litert.export_litert(q, path, **kwargs)


def file_tensors(path):
    """``{name: (array, scales, quantized_dimension)}`` of the integer tensors in a ``.tflite`` file."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    out = {}
    for t in model.subgraphs[0].tensors:
        if t.type in (schema.TensorType.INT8, schema.TensorType.INT16) and t.buffer:
            dtype = "<i1" if t.type == schema.TensorType.INT8 else "<i2"
            data = np.frombuffer(bytes(model.buffers[t.buffer].data), dtype).reshape(list(t.shape))
            scale = np.asarray(t.quantization.scale, np.float32)
            out[t.name.decode()] = (data, scale, t.quantization.quantizedDimension)
    return out


def op_graph(path):
    """``[(operator, type of its weight input or None), ...]`` without DEQUANTIZE (its output counts as float32)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        if name != "DEQUANTIZE":
            weight = op.inputs[1] if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") else -1
            ops.append((name, None if weight < 0 else int(graph.tensors[weight].type)))
    return ops


def float_twin(q, model):
    """``model()`` with the weights ``q`` computes with (``P_r``), for TFLite's own conversions."""
    twin = model()
    for layer in q.layers:
        if isinstance(layer, QuantizedWrapper):
            twin.get_layer(layer.name).set_weights([keras.ops.convert_to_numpy(quantizer(v))
                                                    for _, v, quantizer in layer.quantized_params()])
        elif layer.weights:
            twin.get_layer(layer.name).set_weights(layer.get_weights())
    return twin


def tflite_dynamic_range(model, path):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    path.write_bytes(converter.convert())
    return path


@pytest.mark.parametrize("spec, options", [
    ("nested", {"granularity": "outputwise", "scale_init": 5e-3}),
    ("nested", {"granularity": "rowwise", "scale_init": 5e-3}),
    ({"method": "lsq", "bits": 4, "granularity": "outputwise"}, {}),
    ({"method": "lsq", "bits": 8, "granularity": "outputwise"}, {}),
    ({"method": "fixed", "bits": 8}, {}),
])
def test_weights_stored_as_int8_and_predictions_equal(tmp_path, spec, options):
    q = convert(spec, **options)
    report = export(q, tmp_path / "q.tflite", float_path=tmp_path / "f.tflite")
    storage = {t["name"]: t["storage"] for t in report["tensors"]}
    assert storage.pop("conv/bias") == "float32"  # BatchNorm's shift is folded into it
    assert set(storage.values()) == {"int8"}, report["tensors"]
    conv = next(t for t in report["tensors"] if t["name"] == "conv/kernel")
    assert conv["folded"] and conv["quantized_dimension"] == 0 and conv["tflite_shape"] == (16, 3, 3, 3)
    expected = keras_predict(q)
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "q.tflite", X), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "f.tflite", X), expected, rtol=1e-5, atol=1e-6)
    assert report["file_bytes"] < report["float_file_bytes"]
    assert report["float_file_bytes"] == (tmp_path / "f.tflite").stat().st_size


def test_the_learned_integers_and_scales_are_stored_exactly(tmp_path):
    q = convert({"method": "lsq", "bits": 8, "granularity": "outputwise"})
    export(q, tmp_path / "q.tflite")
    stored, ints, scales = file_tensors(tmp_path / "q.tflite"), metrics.integer_tensors(q), metrics.scales(q)
    layouts = {"dw/kernel": lambda a: a.reshape(1, 3, 3, 16), "sep/depthwise_kernel": lambda a: a.reshape(1, 3, 3, 16),
               "sep/pointwise_kernel": lambda a: a.transpose(3, 0, 1, 2), "head/kernel": lambda a: a.T}
    for name, layout in layouts.items():  # nothing folded: the learned integers and scales, bit for bit
        data, s, axis = stored[name]
        np.testing.assert_array_equal(data, layout(ints[name]))
        np.testing.assert_array_equal(s, scales[name].ravel())
        assert axis == {"head/kernel": 0, "sep/pointwise_kernel": 0}.get(name, 3)
    for name in ("dw/bias", "sep/bias", "head/bias"):
        np.testing.assert_array_equal(stored[name][0], ints[name])
        np.testing.assert_array_equal(stored[name][1], scales[name].ravel())
    # BatchNorm folded: per channel the learned integers (sign flipped where gamma < 0), scale s * |gamma| / sigma
    gamma, _, _, var = q.get_layer("bn").get_weights()
    factor = gamma / np.sqrt(var + q.get_layer("bn").epsilon)
    data, s, axis = stored["conv/kernel"]
    sign = np.sign(factor)[:, None, None, None]
    np.testing.assert_array_equal(data, ints["conv/kernel"].transpose(3, 0, 1, 2) * sign)
    np.testing.assert_allclose(s, scales["conv/kernel"].ravel() * np.abs(factor), rtol=1e-6)
    assert axis == 0 and (factor < 0).any()


def test_dynamic_mode_has_the_op_graph_of_tflites_dynamic_range_file(tmp_path):
    q = convert({"method": "lsq", "bits": 8, "granularity": "outputwise"}, model=wider_cnn)
    report = export(q, tmp_path / "q.tflite", mode="dynamic")
    ours = op_graph(tmp_path / "q.tflite")
    theirs = op_graph(tflite_dynamic_range(float_twin(q, wider_cnn), tmp_path / "dyn.tflite"))
    assert ours == theirs
    assert ("CONV_2D", 9) in ours and ("FULLY_CONNECTED", 9) in ours  # 9: INT8 weights, hybrid kernels
    assert report["file_bytes"] <= (tmp_path / "dyn.tflite").stat().st_size
    x = np.random.default_rng(2).uniform(0, 1, size=(4, 10, 10, 3)).astype("float32")
    expected, got = keras_predict(q, x), litert.predict_litert(tmp_path / "q.tflite", x)
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()  # activations quantized at run time
    # the default mode: the same graph with a DEQUANTIZE per weight, predictions equal
    report = export(q, tmp_path / "f.tflite")
    assert report["file_bytes"] <= (tmp_path / "dyn.tflite").stat().st_size
    assert {op for op, weight in op_graph(tmp_path / "f.tflite")} == {op for op, _ in theirs}
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "f.tflite", x), expected, rtol=1e-5, atol=1e-6)


def mlp():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    x = keras.layers.Dense(64, activation="relu", name="fc1")(inputs)
    x = keras.layers.Dense(32, activation="relu", name="fc2")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(x))


def test_dynamic_mode_row_wise_scales_and_float_layers(tmp_path):
    """Row-wise scales (per input unit): a MUL on the input, ``(x · s) @ P_q``; a layer lqs leaves in float: TFLite's
    dynamic-range rule, as in TFLite's file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        q = quantize_model(mlp(), {"method": "lsq", "bits": 8, "granularity": "rowwise"}, exclude=["fc2"])
    report = export(q, tmp_path / "q.tflite", mode="dynamic")
    fc1 = next(t for t in report["tensors"] if t["name"] == "fc1/kernel")
    assert fc1["storage"] == "int8" and fc1["quantized_dimension"] == 1 and not fc1["requantized"]
    assert len(report["requantized"]) == 1 and "fc2" in report["requantized"][0]
    ours = op_graph(tmp_path / "q.tflite")
    assert ours.count(("MUL", None)) == 1
    assert [op for op in ours if op[0] != "MUL"] == op_graph(tflite_dynamic_range(float_twin(q, mlp),
                                                                                  tmp_path / "dyn.tflite"))
    x = np.random.default_rng(2).uniform(0, 1, size=(4, 64)).astype("float32")
    expected = keras_predict(q, x)
    assert np.abs(litert.predict_litert(tmp_path / "q.tflite", x) - expected).max() < 0.05 * np.abs(expected).max()


def thesis_like_cnn():
    """The CIFAR-10 network's pattern: Conv2D -> ReLU -> BatchNorm (not foldable into the conv) -> pooling."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(2)(keras.layers.BatchNormalization(name="bn1")(x))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Flatten()(keras.layers.BatchNormalization(name="bn2")(x))
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(x))


@pytest.mark.parametrize("statistics", ["initial", "trained"])
def test_dynamic_mode_moves_channel_wise_scales_into_the_batchnorm_before(tmp_path, statistics):
    """Channel-wise (input-channel) scales: ``(x · a + b) · s`` folded into the BatchNorm's constants (a MUL, and an
    ADD where its shift is not zero), so the op graph is TFLite's dynamic-range graph itself; the float Dense head
    gets TFLite's own int8."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        q = quantize_model(thesis_like_cnn(), {"method": "lsq", "bits": 8, "granularity": "channelwise"},
                           layers=["c1", "c2"])
    if statistics == "trained":
        rng = np.random.default_rng(1)
        q.get_layer("bn1").set_weights([rng.uniform(0.5, 1.5, 16), rng.normal(size=16), rng.normal(size=16),
                                        rng.uniform(0.5, 2, 16)])
    report = export(q, tmp_path / "q.tflite", mode="dynamic")
    assert {t["name"]: t["storage"] for t in report["tensors"]}["c2/kernel"] == "int8"
    ours = op_graph(tmp_path / "q.tflite")
    assert ours == op_graph(tflite_dynamic_range(float_twin(q, thesis_like_cnn), tmp_path / "dyn.tflite"))
    assert ("CONV_2D", 9) in ours and ("FULLY_CONNECTED", 9) in ours
    x = np.random.default_rng(2).uniform(0, 1, size=(4, 10, 10, 3)).astype("float32")
    expected = keras_predict(q, x)
    assert np.abs(litert.predict_litert(tmp_path / "q.tflite", x) - expected).max() < 0.05 * np.abs(expected).max()


def transformer():
    """The issue's small transformer: MultiHeadAttention (EinsumDense projections), LayerNorm, Dense."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 8))
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(inputs, inputs)
    x = keras.layers.LayerNormalization(name="ln")(keras.layers.Add()([inputs, x]))
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(16, activation="relu", name="ff")(x))
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def conv1d_net():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((20, 4))
    x = keras.layers.Conv1D(8, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.Conv1D(8, 3, padding="same", name="c2")(keras.layers.BatchNormalization(name="bn")(x))
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling1D()(x)))


@pytest.mark.parametrize("model, x", [(transformer, (4, 6, 8)), (conv1d_net, (4, 20, 4))],
                         ids=["transformer", "conv1d"])
def test_attention_and_conv1d_weights_are_int8(tmp_path, model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        q = quantize_model(model(), {"method": "lsq", "bits": 8, "granularity": "outputwise"})
    rng = np.random.default_rng(1)
    for _, _, _, variable, quantizer in quantized_params(q):  # non-zero biases, integers recomputed
        if len(variable.shape) < 3 and variable.path.endswith("bias"):
            variable.assign(rng.normal(0, 0.05, variable.shape))
            quantizer.calibrate(variable)
    report = export(q, tmp_path / "q.tflite")
    assert {t["storage"] for t in report["tensors"]} == {"int8"}, report["tensors"]
    x = rng.normal(size=x).astype("float32")
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "q.tflite", x), keras_predict(q, x), rtol=1e-5,
                               atol=1e-6)


def test_weights_beyond_int8_stay_float32_with_a_warning(tmp_path):
    q = convert("nested", granularity="outputwise")  # default scale 1.19e-5: integers ~1e4
    with pytest.warns(UserWarning, match=r"export_litert: the learned integers of 5 weight tensor\(s\) are not in "
                                         r"the file, stored as float32.*'conv/kernel' \(integers -\d+\.\.\d+: "
                                         r"integers -\d+\.\.\d+ exceed int8\)"):
        report = litert.export_litert(q, tmp_path / "q.tflite", mode="float")
    kernels = [t for t in report["tensors"] if t["name"].endswith("kernel")]
    assert {t["storage"] for t in kernels} == {"float32"} and all("exceed int8" in t["reason"] for t in kernels)
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "q.tflite", X), keras_predict(q), rtol=1e-5,
                               atol=1e-6)
    with pytest.warns(UserWarning, match="left to TFLite's dynamic-range rule"):
        report = litert.export_litert(q, tmp_path / "d.tflite", mode="dynamic")
    assert [t["name"] for t in report["tensors"] if t["requantized"]] == ["head/kernel"]  # 2880 values
    # int16 (per tensor only): where no per-channel factor is folded in
    q = convert("nested", granularity="scalar", scale_init=2e-4)
    with pytest.warns(UserWarning, match="'conv/kernel'"):
        report = litert.export_litert(q, tmp_path / "i.tflite", int16=True, mode="float")
    storage = {t["name"]: t["storage"] for t in report["tensors"]}
    assert storage["conv/kernel"] == "float32" and storage["head/kernel"] == "int16"
    assert "no per-axis int16" in next(t["reason"] for t in report["tensors"] if t["name"] == "conv/kernel")
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "i.tflite", X), keras_predict(q), rtol=1e-5,
                               atol=1e-6)


def test_scales_without_a_tflite_form_stay_float32(tmp_path):
    q = convert("cgmq", gates="weight")  # one step per bit width and weight
    with pytest.warns(UserWarning, match="no per-tensor or per-axis scale"):
        report = litert.export_litert(q, tmp_path / "c.tflite", mode="float")
    assert {t["storage"] for t in report["tensors"]} == {"float32"}
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "c.tflite", X), keras_predict(q), rtol=1e-5,
                               atol=1e-6)
    # a row-wise scale with BatchNorm's per-channel factor folded in: two axes, no int8 form
    q = convert({"method": "lsq", "bits": 8, "granularity": "rowwise"})
    with pytest.warns(UserWarning, match=r"1 weight tensor\(s\).*'conv/kernel'.*no converted constant"):
        report = litert.export_litert(q, tmp_path / "r.tflite", mode="float")
    np.testing.assert_allclose(litert.predict_litert(tmp_path / "r.tflite", X), keras_predict(q), rtol=1e-5,
                               atol=1e-6)


def test_converter_options_reach_the_converter(tmp_path):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(8, name="lstm"), keras.layers.Dense(2, name="d")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        q = quantize_model(model, {"method": "lsq", "bits": 8})
    with pytest.raises(ValueError, match="converter_options=.*SELECT_TF_OPS"):
        litert.export_litert(q, tmp_path / "x.tflite")
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    report = export(q, tmp_path / "lstm.tflite", converter_options={"target_spec.supported_ops": ops,
                                                                     "_experimental_lower_tensor_list_ops": False})
    assert {t["name"]: t["storage"] for t in report["tensors"]}["d/kernel"] == "int8"
    assert b"FlexTensorList" in (tmp_path / "lstm.tflite").read_bytes()  # TensorFlow ops (the Flex delegate runs them)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no quantized parameters"):
        litert.export_litert(cnn(), tmp_path / "x.tflite")
    q = convert()
    with pytest.raises(ValueError, match="int16 must be True or False"):
        litert.export_litert(q, tmp_path / "x.tflite", int16="yes")
    with pytest.raises(ValueError, match="mode must be one of"):
        litert.export_litert(q, tmp_path / "x.tflite", mode="int8")
    with pytest.raises(ValueError, match="no option 'target_spec.supported_opz'"):
        litert.export_litert(q, tmp_path / "x.tflite", converter_options={"target_spec.supported_opz": []})
    with pytest.raises(ValueError, match="'optimizations' is set by the export itself"):
        litert.export_litert(q, tmp_path / "x.tflite", converter_options={"optimizations": []})
    assert not (tmp_path / "x.tflite").exists()
