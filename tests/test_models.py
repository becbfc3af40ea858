import keras
import numpy as np
import pytest

import keras_kd


@pytest.mark.parametrize(
    "name, params",
    [("resnet8", 78_000), ("resnet20", 273_000), ("resnet56", 856_000)],
)
def test_cifar_resnets_have_the_paper_sizes(name, params):
    model = keras_kd.models.get(name, (32, 32, 3), 10)
    assert model.output_shape == (None, 10)
    # He et al. list 0.27M parameters for ResNet-20 and 0.85M for ResNet-56;
    # the two 1x1 projection shortcuts add about 1%.
    assert abs(model.count_params() - params) / params < 0.05
    depth = int(name[6:])
    convs = [layer for layer in model.layers if layer.name.endswith("_conv") and "proj" not in layer.name]
    assert len(convs) + 1 == depth  # + the dense head


@pytest.mark.parametrize("name", ["cnn", "mlp", "resnet8"])
@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
def test_models_map_inputs_to_logits(name, shape):
    model = keras_kd.models.get(name, shape, 7)
    out = model.predict(np.zeros((2, *shape), "float32"), verbose=0)
    assert out.shape == (2, 7)


def test_resnet_variants_scale_the_width_and_swap_the_normalization():
    base = keras_kd.models.get("resnet8", (40, 1), 10)
    wide = keras_kd.models.get("resnet8_w2", (40, 1), 10)
    layer_norm = keras_kd.models.get("resnet8_ln", (40, 1), 10)
    assert wide.get_layer("stage3_block1_2_conv").filters == 128
    assert 3.5 < wide.count_params() / base.count_params() < 4.1  # ~4x: width squared
    kinds = {type(layer).__name__ for layer in layer_norm.layers}
    assert "GroupNormalization" in kinds and "BatchNormalization" not in kinds
    assert layer_norm.get_layer("stem_ln").groups == 1  # LayerNorm over positions and channels
    # No batch statistics: every weight trains, so weight averages are networks.
    assert not layer_norm.non_trainable_weights
    with pytest.raises(ValueError, match="width factor _w<k> needs k >= 1"):
        keras_kd.models.check_name("resnet8_w0")


def test_mlp_takes_feature_vectors():
    assert keras_kd.models.get("mlp", (20,), 3).output_shape == (None, 3)


@pytest.mark.parametrize(
    "name, shape, classes, message",
    [
        ("vgg", (8, 8, 1), 10, "Unknown model 'vgg'"),
        ("resnet9", (8, 8, 1), 10, "depth is 6n \\+ 2"),
        ("resnet20", (64,), 10, "or signals of shape"),
        ("cnn", (8, 8, 1), 1, "num_classes must be an integer >= 2; got 1"),
    ],
)
def test_bad_model_requests_are_named(name, shape, classes, message):
    with pytest.raises(ValueError, match=message):
        keras_kd.models.get(name, shape, classes)


def test_penultimate_features_feed_the_logits_layer():
    model = keras_kd.models.get("resnet8", (8, 8, 1), 10)
    features = keras_kd.models.penultimate(model)
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 1)).astype("float32")
    logits_layer = model.layers[-1]
    np.testing.assert_allclose(logits_layer(features(x)), model(x), rtol=1e-5, atol=1e-5)
    ensemble = keras_kd.Ensemble([model, keras_kd.models.get("cnn", (8, 8, 1), 10, width=4)])
    assert keras_kd.models.penultimate(ensemble)(x).shape == (5, 64 + 8)
    with pytest.raises(ValueError, match="functional Keras model"):
        keras_kd.models.penultimate(keras.layers.Dense(3))


@pytest.mark.parametrize("input_shape, kind", [((4,), "features"), ((8, 8, 1), "images"),
                                               ((8, 8, 3), "images")])
def test_mnist1d_cnn_on_anything_but_signals_is_refused_by_name(input_shape, kind):
    info = keras_kd.data.DatasetInfo("npz:x.npz", 3, input_shape, 10, 5)
    with pytest.raises(ValueError, match=rf"teacher_arch='mnist1d_cnn' reads signals, but "
                       rf"dataset 'npz:x.npz' holds {kind}"):
        keras_kd.models.check_fits("mnist1d_cnn", info, role="teacher_arch")
    keras_kd.models.check_fits("mlp", info)  # an MLP reads any numeric input


def test_a_registered_model_without_declared_inputs_is_left_to_its_builder():
    keras_kd.models.register("anything", lambda shape, classes: None)
    try:
        info = keras_kd.data.DatasetInfo("texts", 2, (5,), 2, 2, vocabulary_size=9)
        keras_kd.models.check_fits("anything", info)
        assert keras_kd.models.inputs_read("anything") is None
    finally:
        keras_kd.models.unregister("anything")
