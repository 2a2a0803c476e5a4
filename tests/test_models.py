"""The SPEC §4 networks: structure, float twins with the same names, and the PTQ weight transfer."""

import keras
import numpy as np
import pytest

from lqs_core import models
from lqs_core.layers import QConv2D, QDense, QuantizedLayer, quantized_params

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
            models.build(name, quantized=False, seed=7, **kwargs),
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
        y = model(x, training=False).numpy()
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
    f = models.mnist_mlp(quantized=False, seed=1)
    q = models.digits_mlp(seed=1)
    with pytest.raises(ValueError):
        models.transfer_float_weights(f, q)  # dense_1 shapes differ
    f2 = models.digits_mlp(quantized=False, seed=1, hidden=32)
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
        builder(quantized=False, granularity="channelwise")  # float twin: granularity unused
    with pytest.raises(ValueError, match="Unknown dataset"):
        models.build("svhn")
    with pytest.raises(ValueError):
        models.build("digits", granularity="diagonal")
    with pytest.raises(ValueError):
        models.build("digits", threshold=-1e-10)
    assert set(models.MODELS) == {"digits", "mnist", "cifar10", "imagenette"}
