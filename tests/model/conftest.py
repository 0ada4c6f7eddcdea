"""The shared layer harness: one call checks a layer's output shapes, its
keras.saving round trip, eager vs tf.function equality and one gradient
step."""

import json
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402


def _as_json(config):
    return json.loads(json.dumps(config))


def _shapes(outputs):
    return tf.nest.map_structure(lambda t: tuple(t.shape), outputs)


def check_layer(layer, inputs, expected_shapes, *, call_kwargs=None,
                atol=1e-5):
    """Runs the four checks on `layer` and returns its inference outputs.

    The layer's class must be registered with
    keras.saving.register_keras_serializable, as a .keras file needs.

    Args:
      layer: an unbuilt keras layer.
      inputs: the input tensor.
      expected_shapes: the output shape, or a structure of shapes matching
        the output structure (e.g. a dict of tuples).
      call_kwargs: extra keyword arguments for every call.
    """
    call_kwargs = call_kwargs or {}
    outputs = layer(inputs, training=False, **call_kwargs)
    assert _shapes(outputs) == expected_shapes

    # keras.saving round trip through JSON (what a .keras file holds): the
    # same config, the same variables, and with the weights copied over the
    # same outputs.
    serialized = json.loads(json.dumps(
        keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is type(layer)
    clone(inputs, training=False, **call_kwargs)
    assert _as_json(clone.get_config()) == _as_json(layer.get_config())
    assert [tuple(v.shape) for v in clone.weights] == [
        tuple(v.shape) for v in layer.weights]
    clone.set_weights(layer.get_weights())
    for original, restored in zip(
            tf.nest.flatten(outputs),
            tf.nest.flatten(clone(inputs, training=False, **call_kwargs))):
        np.testing.assert_array_equal(original.numpy(), restored.numpy())

    # Eager and graph execution agree.
    graph_call = tf.function(
        lambda x: layer(x, training=False, **call_kwargs))
    for eager, graph in zip(tf.nest.flatten(outputs),
                            tf.nest.flatten(graph_call(inputs))):
        np.testing.assert_allclose(eager.numpy(), graph.numpy(), atol=atol,
                                   rtol=1e-5)

    # One gradient step changes the trainable weights and lowers nothing to
    # NaN.
    trainable = layer.trainable_variables
    if trainable:
        with tf.GradientTape() as tape:
            train_outputs = layer(inputs, training=True, **call_kwargs)
            loss = tf.add_n([tf.reduce_mean(tf.square(tf.cast(t, tf.float32)))
                             for t in tf.nest.flatten(train_outputs)
                             if t.dtype.is_floating])
        gradients = tape.gradient(loss, trainable)
        missing = [v.path for v, g in zip(trainable, gradients) if g is None]
        assert not missing, f'no gradient for {missing}'
        assert all(np.all(np.isfinite(g.numpy())) for g in gradients)
        before = [v.numpy().copy() for v in trainable]
        keras.optimizers.SGD(0.1).apply_gradients(zip(gradients, trainable))
        changed = [not np.array_equal(b, v.numpy())
                   for b, v in zip(before, trainable)]
        assert any(changed), 'a gradient step changed no weight'
    return outputs


def weighted_loss_gradients(call, layer, inputs):
    """(outputs, [d inputs] + d layer.trainable_variables, the traced
    step's graph) for `call(inputs)` under a loss that weights every output
    differently, in a tf.function as training runs it."""
    inputs = tf.constant(inputs)
    weights = tf.random.stateless_normal(
        layer.compute_output_shape(inputs.shape), [5, 6])

    @tf.function
    def run(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = call(inputs)
            loss = tf.reduce_sum(outputs * weights)
        return outputs, tape.gradient(loss, [inputs] +
                                      layer.trainable_variables)

    outputs, gradients = run(inputs)
    return outputs, gradients, run.get_concrete_function(inputs).graph


def assert_reordered_kernel_gradients(got, expected):
    """Same outputs and input gradient bit for bit; the other gradients
    (kernel, bias) equal up to summation order: within 1e-5 of their
    largest magnitude. `got`, `expected`: weighted_loss_gradients' first
    two results."""
    (got_outputs, got_gradients), (outputs, gradients) = got, expected
    np.testing.assert_array_equal(got_outputs, outputs)
    np.testing.assert_array_equal(got_gradients[0], gradients[0])
    for got_gradient, gradient in zip(got_gradients[1:], gradients[1:]):
        np.testing.assert_allclose(got_gradient, gradient, rtol=0,
                                   atol=1e-5 * np.abs(gradient).max())


@pytest.fixture
def layer_gradients():
    """weighted_loss_gradients, with assert_reordered_kernel_gradients as
    its `.assert_reordered` attribute."""
    import types
    return types.SimpleNamespace(
        run=weighted_loss_gradients,
        assert_reordered=assert_reordered_kernel_gradients)


@pytest.fixture
def layer_harness():
    return check_layer


# ---------------------------------------------------------------------------
# Checkpoint layout helpers: compare our object paths with the manifests of
# DeepLab2 checkpoints in ../shared/fixtures/deeplab2.

# The loader's own spelling rules: the layout tests check what it relies on.
from deeplab2.compat.naming import VALUE_SUFFIX as _VALUE_SUFFIX  # noqa: E402
from deeplab2.compat.naming import deeplab2_key  # noqa: E402


def read_manifest(path, prefix: str = '') -> dict:
    """Model variables of a manifest TSV: {key without suffix: shape}.

    Optimizer state, counters and the object graph are left out; `prefix`
    keeps only keys starting with it (e.g. 'encoder/')."""
    import json
    shapes = {}
    for line in open(path):
        key, shape, _ = line.rstrip('\n').split('\t')
        if (key.startswith(('optimizer/', 'global_step', 'save_counter',
                            '_CHECKPOINTABLE_OBJECT_GRAPH')) or
                '.OPTIMIZER_SLOT' in key or not key.startswith(prefix)):
            continue
        shapes[key.removesuffix(_VALUE_SUFFIX)] = tuple(json.loads(shape))
    return shapes


def checkpoint_shapes(tmp_dir, **items) -> dict:
    """{DeepLab2-spelled key without suffix: shape} of a checkpoint of
    `items` (built layers), written under tmp_dir."""
    path = tf.train.Checkpoint(**items).save(str(tmp_dir / 'ckpt'))
    return {deeplab2_key(key).removesuffix(_VALUE_SUFFIX): tuple(shape)
            for key, shape in tf.train.list_variables(path)
            if key.endswith(_VALUE_SUFFIX) and not key.startswith(
                'save_counter')}


def encoder_from_config(path):
    """The encoder build_model makes for a config file (batch norm and
    weight decay from its solver options), unbuilt."""
    from deeplab2 import config as config_lib
    from deeplab2.model import builder
    return builder.build_model(config_lib.load_config(path),
                               build=False).encoder


def assert_encoder_layout(encoder, manifest, tmp_dir):
    """The built encoder's checkpoint holds exactly the manifest's
    `encoder/...` variables with their shapes, the moving statistics being
    its non-trainable variables."""
    expected = read_manifest(manifest, prefix='encoder/')
    assert checkpoint_shapes(tmp_dir, encoder=encoder) == expected
    moving = [k for k in expected if k.endswith(('/moving_mean',
                                                 '/moving_variance'))]
    assert len(encoder.non_trainable_variables) == len(moving)
    assert len(encoder.trainable_variables) == len(expected) - len(moving)


@pytest.fixture
def checkpoint_layout():
    """The helpers above, for layout tests."""
    import types
    return types.SimpleNamespace(
        read_manifest=read_manifest, checkpoint_shapes=checkpoint_shapes,
        deeplab2_key=deeplab2_key, encoder_from_config=encoder_from_config,
        assert_encoder_layout=assert_encoder_layout)
