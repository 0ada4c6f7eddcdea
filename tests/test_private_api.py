"""The TF/Keras internals behind deeplab2.private_api: each still exists and
still does what the package relies on, and nothing else reaches for them.

When a TensorFlow or Keras upgrade removes one, the first test fails with
the ImportError naming it (module path and attribute) and the versions.
"""

import importlib
import pathlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

_PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'deeplab2'
# How a module would reach a TF/Keras internal without the seam.
_PRIVATE_IMPORT = re.compile(
    r'keras\.src\b|tensorflow\.python\b|tensorflow\.core\b|__internal__'
    r'|tensorflow\.lite\.python\b|_experimental_calibrate_only'
    r'|\._momentums\b|\._velocities\b|\._get_variable_index\b')


def test_every_private_symbol_resolves():
    # Imported here, not at the top: a missing symbol then fails this test
    # with private_api's message rather than the whole module's collection.
    importlib.import_module('deeplab2.private_api')


def test_a_missing_symbol_is_named_with_the_versions():
    from deeplab2 import private_api
    with pytest.raises(ImportError) as raised:
        private_api.resolve('tensorflow', '__internal__.no_such_symbol')
    message = str(raised.value)
    assert 'tensorflow.__internal__.no_such_symbol' in message
    assert f'TensorFlow {tf.__version__}' in message
    assert f'Keras {keras.__version__}' in message
    with pytest.raises(ImportError, match=r'no_such_module\.Thing'):
        private_api.resolve('tensorflow.no_such_module', 'Thing')


def test_tracked_list_is_how_keras_holds_a_list_of_layers():
    from deeplab2 import private_api
    layer = keras.layers.Layer()
    layer.blocks = [keras.layers.Dense(1)]
    assert isinstance(vars(layer)['blocks'], private_api.TrackedList)


def test_wrapped_list_is_checkpointed_by_index(tmp_path):
    from deeplab2 import private_api
    variables = [tf.Variable(1.0), tf.Variable(2.0)]
    root = tf.train.Checkpoint(items=private_api.wrap_trackable_list(
        list(variables)))
    path = root.write(str(tmp_path / 'ckpt'))
    names = {name for name, _ in tf.train.list_variables(path)}
    assert {'items/0/.ATTRIBUTES/VARIABLE_VALUE',
            'items/1/.ATTRIBUTES/VARIABLE_VALUE'} <= names


def test_graph_traversal_names_variables_as_a_save_does(tmp_path):
    from deeplab2 import private_api
    root = tf.train.Checkpoint(model=tf.train.Checkpoint(w=tf.Variable(3.0)))
    view = private_api.ObjectGraphView(root)
    objects, _, _, _, names = (
        private_api.objects_ids_and_slot_variables_and_paths(view))
    traversed = {names[obj] for obj in objects
                 if isinstance(obj, tf.Variable)}
    assert traversed == {'model/w'}

    path = root.write(str(tmp_path / 'ckpt'))
    graph = private_api.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor(
        '_CHECKPOINTABLE_OBJECT_GRAPH'))
    saved = [attribute.checkpoint_key for node in graph.nodes
             for attribute in node.attributes]
    assert saved == ['model/w/.ATTRIBUTES/VARIABLE_VALUE']


def test_optimizer_slots_are_the_ones_keras_updates():
    from deeplab2 import private_api
    variables = [keras.Variable([1.0, 2.0]), keras.Variable([3.0])]
    gradients = [tf.constant([0.5, -1.0]), tf.constant([2.0])]
    adam = keras.optimizers.Adam(0.1, beta_1=0.5, beta_2=0.75)
    adam.apply_gradients(zip(gradients, variables))
    sgd = keras.optimizers.SGD(0.1, momentum=0.9)
    sgd.apply_gradients(zip(gradients, variables))
    for variable, gradient in zip(variables, gradients):
        momentum, velocity = private_api.adam_slots(adam, variable)
        # One step from zero: m = (1 - beta_1) g, v = (1 - beta_2) g^2;
        # SGD's momentum: -lr g.
        np.testing.assert_allclose(momentum.numpy(), 0.5 * gradient)
        np.testing.assert_allclose(velocity.numpy(), 0.25 * gradient ** 2)
        np.testing.assert_allclose(
            private_api.sgd_momentum(sgd, variable).numpy(), -0.1 * gradient,
            rtol=1e-6)


def test_no_other_module_imports_internals():
    offenders = []
    for path in sorted(_PACKAGE.rglob('*.py')):
        if path.name == 'private_api.py':
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split('#', 1)[0]
            if _PRIVATE_IMPORT.search(code):
                offenders.append(f'{path.relative_to(_PACKAGE.parent)}:'
                                 f'{number}: {line.strip()}')
    assert not offenders, ('use deeplab2.private_api instead:\n'
                           + '\n'.join(offenders))
