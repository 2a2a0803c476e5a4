"""The docs/method.md §4 networks: structure, float twins with the same names, the PTQ weight transfer, and the quantizer
spec every builder takes (options merged in, default granularity rowwise, ``None`` = the float twin)."""

import keras
import numpy as np
import pytest

from lqs_core import models
from lqs_core.layers import QConv2D, QDense, QuantizedLayer, quantized_params
from lqs_core.quantizers import CGMQQuantizer, FixedBitQuantizer, LSQQuantizer, NestedQuantizer, registry
from lqs_core.spec import DEFAULT_SCALE, RunConfig

# dataset -> (builder kwargs, input shape, {qdense, qconv2d, dense, conv2d} of the quantized model)
CASES = {
    "digits": ({}, (8, 8, 1), {"qdense": 2, "qconv2d": 0, "dense": 0, "conv2d": 0}),
    "mnist": ({}, (28, 28), {"qdense": 2, "qconv2d": 0, "dense": 0, "conv2d": 0}),
    "cifar10": ({}, (32, 32, 3), {"qdense": 0, "qconv2d": 6, "dense": 2, "conv2d": 0}),
    "imagenette": ({"input_shape": (32, 32, 3)}, (32, 32, 3), {"qdense": 0, "qconv2d": 20, "dense": 1, "conv2d": 0}),
}


@pytest.fixture(scope="module")
def twins():
    """dataset -> (quantized model, float twin), both built with seed 7."""
    out = {}
    for name, (kwargs, _, _) in CASES.items():
        granularity = "channelwise" if name in ("cifar10", "imagenette") else "rowwise"
        out[name] = (
            models.build(name, granularity=granularity, threshold=1e-10, seed=7, **kwargs),
            models.build(name, None, seed=7, **kwargs),
        )
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_structure_and_output(twins, name):
    q, f = twins[name]
    _, input_shape, counts = CASES[name]
    assert q.input_shape == (None, *input_shape)
    assert q.output_shape == (None, 10) and f.output_shape == (None, 10)
    assert models.count_layers(q) == counts
    float_counts = {
        "qdense": 0,
        "qconv2d": 0,
        "dense": counts["dense"] + counts["qdense"],
        "conv2d": counts["conv2d"] + counts["qconv2d"],
    }
    assert models.count_layers(f) == float_counts
    assert not quantized_params(f)
    # kernel + bias of every quantized layer are quantized
    assert len(quantized_params(q)) == 2 * (counts["qdense"] + counts["qconv2d"])
    # softmax outputs
    x = np.random.default_rng(0).uniform(0, 16, size=(3, *input_shape)).astype("float32")
    for model in (q, f):
        y = keras.ops.convert_to_numpy(model(x, training=False))
        assert y.shape == (3, 10)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_float_twin_same_names_and_initial_weights(twins, name):
    q, f = twins[name]
    assert [layer.name for layer in q.layers] == [layer.name for layer in f.layers]
    assert models.twin_layer_names(q) == models.twin_layer_names(f)
    assert set(models.twin_layer_names(q)) == {l.name for l in q.layers if isinstance(l, QuantizedLayer)}
    # seeded: the twins start from identical weights (RandomNormal(0, 0.05) for weights and biases)
    fl = {layer.name: layer for layer in f.layers}
    for layer in q.layers:
        if isinstance(layer, QuantizedLayer):
            floats = fl[layer.name].get_weights()
            for (pname, variable, _), w in zip(layer.quantized_params(), floats):
                np.testing.assert_array_equal(variable.numpy(), w, err_msg=f"{layer.name}/{pname}")
            assert 0.03 < float(np.std(floats[0])) < 0.07  # stddev 0.05
            assert abs(float(np.mean(floats[1]))) < 0.05 and float(np.std(floats[1])) > 0.0  # bias also random


def test_distinct_layers_get_distinct_initial_weights(twins):
    q, _ = twins["imagenette"]
    a = q.get_layer("block1_conv1").kernel.numpy()
    b = q.get_layer("block1_conv2").kernel.numpy()
    assert a.shape == b.shape and not np.array_equal(a, b)


@pytest.mark.parametrize("name", ["digits", "cifar10", "imagenette"])
def test_transfer_float_weights(twins, name):
    q, f = twins[name]
    rng = np.random.default_rng(1)
    # make the float model look "trained": new values everywhere (BatchNorm statistics included)
    for layer in f.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(0.5, 0.1, size=w.shape).astype(w.dtype) for w in weights])
    scales_before = [qz.scale.numpy().copy() for *_, qz in quantized_params(q)]
    copied = models.transfer_float_weights(f, q)
    fl = {layer.name: layer for layer in f.layers}
    assert set(copied) == {layer.name for layer in f.layers if layer.get_weights()}
    for layer in q.layers:
        if layer.name not in fl or not fl[layer.name].get_weights():
            continue
        floats = fl[layer.name].get_weights()
        if isinstance(layer, QuantizedLayer):
            got = [v.numpy() for _, v, _ in layer.quantized_params()]
        else:
            got = layer.get_weights()
        assert len(got) == len(floats)
        for g, w in zip(got, floats):
            np.testing.assert_array_equal(g, w, err_msg=layer.name)
    # the scales are left alone
    for before, (*_, qz) in zip(scales_before, quantized_params(q)):
        np.testing.assert_array_equal(before, qz.scale.numpy())


def test_transfer_rejects_a_different_network():
    f = models.mnist_mlp(None, seed=1)
    q = models.digits_mlp(seed=1)
    with pytest.raises(ValueError):
        models.transfer_float_weights(f, q)  # dense_1 shapes differ
    f2 = models.digits_mlp(quantizer=None, seed=1, hidden=32)
    with pytest.raises(ValueError, match="shape"):
        models.transfer_float_weights(f2, q)


def test_quantization_arguments_reach_every_quantizer():
    q = models.cifar10_cnn(granularity="columnwise", threshold=1e-11, scale_init=1e-3, scale_min=1e-4, seed=0)
    params = quantized_params(q)
    assert len(params) == 12
    for _, layer, pname, variable, quantizer in params:
        assert isinstance(layer, QConv2D)
        assert quantizer.threshold == 1e-11 and quantizer.scale_min == 1e-4
        np.testing.assert_allclose(quantizer.scale.numpy(), 1e-3)
        if pname == "kernel":
            assert quantizer.granularity == "columnwise"
            assert quantizer.scale.shape == (1, 3, 1, 1)
        else:
            assert quantizer.granularity == "scalar"
    # the CIFAR-10 head is float
    assert type(q.get_layer("dense_1")) is keras.layers.Dense and type(q.get_layer("dense_2")) is keras.layers.Dense


def test_imagenette_resnet_layout(twins):
    q, _ = twins["imagenette"]
    convs = [layer for layer in q.layers if isinstance(layer, QConv2D)]
    assert len(convs) == 20
    stem = q.get_layer("stem_conv")
    assert stem.kernel_size == (7, 7) and stem.strides == (2, 2) and stem.filters == 64
    assert stem.kernel_regularizer is None
    shortcuts = [c.name for c in convs if "shortcut" in c.name]
    assert shortcuts == ["block3_shortcut_conv", "block5_shortcut_conv", "block7_shortcut_conv"]
    for c in convs:
        if c.name.startswith("block"):
            assert isinstance(c.kernel_regularizer, keras.regularizers.L2)
            assert isinstance(c.bias_regularizer, keras.regularizers.L2)
            assert c.kernel_regularizer.l2 == pytest.approx(1e-4)
    filters = [q.get_layer(f"block{n}_conv1").filters for n in range(1, 9)]
    assert filters == [64, 64, 128, 128, 256, 256, 512, 512]
    strides = [q.get_layer(f"block{n}_conv1").strides for n in range(1, 9)]
    assert strides == [(1, 1), (1, 1), (2, 2), (1, 1), (2, 2), (1, 1), (2, 2), (1, 1)]
    assert q.get_layer("block3_shortcut_conv").kernel_size == (1, 1)
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in q.layers) == 1 + 16 + 3
    rates = [l.rate for l in q.layers if isinstance(l, keras.layers.Dropout)]
    assert rates == [0.2, 0.3, 0.3]
    assert any(isinstance(l, keras.layers.GlobalAveragePooling2D) for l in q.layers)


def test_cifar10_cnn_layout(twins):
    q, _ = twins["cifar10"]
    convs = [layer for layer in q.layers if isinstance(layer, QConv2D)]
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    rates = [l.rate for l in q.layers if isinstance(l, keras.layers.Dropout)]
    assert rates == [0.2, 0.3, 0.4, 0.5]
    assert q.get_layer("dense_1").units == 128


def test_mnist_mlp_layout(twins):
    q, _ = twins["mnist"]
    assert isinstance(q.get_layer("dense_1"), QDense) and q.get_layer("dense_1").units == 128
    assert q.get_layer("dense_1").kernel_quantizer.scale.shape == (784, 1)  # rowwise


def test_channelwise_dense_is_rejected_and_unknown_dataset():
    for builder in (models.digits_mlp, models.mnist_mlp):
        with pytest.raises(ValueError, match="channelwise"):
            builder(granularity="channelwise")
        with pytest.raises(ValueError, match="channelwise"):
            builder({"method": "lsq", "bits": 4, "granularity": "channelwise"})
        # the float twin takes no quantizer options (lqs 0.1 ignored them): refused, naming them
        with pytest.raises(ValueError, match=r"quantizer options \['granularity'\] given for the float twin"):
            builder(None, granularity="channelwise")
        assert not quantized_params(builder(None))
    with pytest.raises(ValueError, match="Unknown dataset"):
        models.build("svhn")
    with pytest.raises(ValueError, match="Unknown granularity 'diagonal'"):
        models.build("digits", granularity="diagonal")
    with pytest.raises(ValueError, match="threshold"):
        models.build("digits", threshold=-1e-10)
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['threshold'\] for quantizer LSQQuantizer"):
        models.build("digits", "lsq", threshold=1e-10)
    with pytest.raises(ValueError, match="Unknown quantizer method 'magic'"):
        models.build("digits", "magic")
    assert set(models.MODELS) == {"digits", "mnist", "cifar10", "imagenette"}


def _kernel_and_bias_specs(model):
    """``{layer: (kernel spec, bias spec)}`` of every quantized host."""
    out = {}
    for _, layer, pname, _, quantizer in quantized_params(model):
        out.setdefault(layer.name, {})[pname] = registry.serialize_spec(quantizer)
    return {name: (specs["kernel"], specs["bias"]) for name, specs in out.items()}


def test_default_quantizer_is_nested_rowwise():
    model = models.digits_mlp(seed=0)
    assert models.DEFAULT_GRANULARITY == "rowwise"
    for kernel, bias in _kernel_and_bias_specs(model).values():
        assert kernel == registry.normalize("nested", granularity="rowwise")
        assert kernel["threshold"] == 0.0 and kernel["scale_init"] == DEFAULT_SCALE
        assert bias == {**kernel, "granularity": "scalar"}
    assert model.get_layer("dense_1").kernel_quantizer.scale.shape == (64, 1)


@pytest.mark.parametrize(
    "quantizer, options, expected",
    [
        ("nested", {"threshold": 1e-10}, {"method": "nested", "granularity": "rowwise", "threshold": 1e-10}),
        ({"method": "nested", "granularity": "rowwise", "threshold": 1e-10}, {},
         {"method": "nested", "granularity": "rowwise", "threshold": 1e-10}),
        ("lsq", {"bits": 4}, {"method": "lsq", "granularity": "rowwise", "bits": 4}),
        ({"method": "lsq", "bits": 4, "granularity": "outputwise"}, {},
         {"method": "lsq", "granularity": "outputwise", "bits": 4}),
        ({"method": "fixed", "bits": 8}, {"bits": 3, "granularity": "scalar"},  # options win over the spec
         {"method": "fixed", "granularity": "scalar", "bits": 3}),
        ("cgmq", {"gates": "weight", "granularity": "columnwise"},
         {"method": "cgmq", "granularity": "columnwise", "gates": "weight"}),
        (NestedQuantizer("columnwise", threshold=1e-9), {},
         {"method": "nested", "granularity": "columnwise", "threshold": 1e-9}),
        (LSQQuantizer(bits=5), {"granularity": "outputwise"},
         {"method": "lsq", "granularity": "outputwise", "bits": 5}),
    ],
)
def test_quantizer_spec_and_options_reach_every_host(quantizer, options, expected):
    model = models.digits_mlp(quantizer, seed=3, **options)
    spec = registry.normalize(expected)
    classes = {"nested": NestedQuantizer, "lsq": LSQQuantizer, "fixed": FixedBitQuantizer, "cgmq": CGMQQuantizer}
    specs = _kernel_and_bias_specs(model)
    assert set(specs) == {"dense_1", "dense_2"}
    for kernel, bias in specs.values():
        assert kernel == spec and bias == {**spec, "granularity": "scalar"}
    quantizers = [q for *_, q in quantized_params(model)]
    assert all(type(q) is classes[spec["method"]] for q in quantizers)
    assert len({id(q) for q in quantizers}) == 4  # a quantizer object is a spec: every parameter gets its own
    assert models.network_spec(quantizer, options, 2, "digits_mlp") == spec


def test_quantizer_object_keeps_its_axis_in_a_network():
    model = models.digits_mlp(NestedQuantizer(axis=1, threshold=1e-9), seed=0)
    q = model.get_layer("dense_1").kernel_quantizer
    assert q.axis == 1 and q.scale.shape == (1, 64)
    assert model.get_layer("dense_1").bias_quantizer.axis is None
    lsq = models.digits_mlp(LSQQuantizer(bits=4, scale_min=1e-3), seed=0).get_layer("dense_2")
    assert lsq.kernel_quantizer.scale_min == 1e-3 and lsq.bias_quantizer.scale_min == 1e-3


def test_options_and_spec_dict_build_the_same_network():
    a = models.digits_mlp(granularity="columnwise", threshold=1e-10, seed=5)
    b = models.digits_mlp({"method": "nested", "granularity": "columnwise", "threshold": 1e-10}, seed=5)
    c = models.build("digits", quantizer="nested", granularity="columnwise", threshold=1e-10, seed=5)
    for other in (b, c):
        assert [layer.get_config() for layer in a.layers] == [layer.get_config() for layer in other.layers]
        for va, vb in zip(a.weights, other.weights):
            np.testing.assert_array_equal(va.numpy(), vb.numpy())


def test_network_spec():
    assert models.network_spec(None, {}, 2, "digits_mlp") is None
    assert models.network_spec("nested", {}, 4, "cifar10_cnn") == registry.normalize("nested", "rowwise")
    assert models.network_spec("nested", {"granularity": "channelwise"}, 4, "cifar10_cnn")["granularity"] == (
        "channelwise")
    with pytest.raises(ValueError, match="channelwise"):
        models.network_spec("nested", {"granularity": "channelwise"}, 2, "digits_mlp")
    with pytest.raises(ValueError, match="float twin"):
        models.network_spec(None, {"threshold": 1e-10}, 2, "digits_mlp")


@pytest.mark.parametrize(
    "config",
    [
        RunConfig(dataset="digits", threshold=1e-10, granularity="outputwise"),
        RunConfig(dataset="digits", method="lsq", bits=4, granularity="scalar"),
        RunConfig(dataset="digits", method="fixed", bits=3),
        RunConfig(dataset="digits", method="cgmq", budget=0.2, method_options={"direction": 2}),
        RunConfig(dataset="digits", method="layer_importance", bits=5),
        RunConfig(dataset="digits", scheme="loss_terms", terms={"maxbin": 1e-8}),
    ],
    ids=lambda c: c.method if c.scheme != "loss_terms" else "loss_terms",
)
def test_run_config_quantizer_spec_builds_its_network(config):
    spec = config.quantizer_spec
    canonical = registry.normalize(spec)
    assert {k: canonical[k] for k in spec} == spec  # valid as it is; normalize only adds defaults
    model = models.build(config.dataset, spec, seed=config.seed)
    for kernel, bias in _kernel_and_bias_specs(model).values():
        assert kernel == registry.normalize(spec) and bias == {**kernel, "granularity": "scalar"}
        assert kernel["granularity"] == config.granularity
    assert RunConfig(dataset="digits", scheme="float").quantizer_spec is None
