"""The fused optimizers update as Keras' own do, through their single
kernels.

Tolerance: the kernels form (1 - beta) in float32, Keras in float64 before
the cast. For Adam's beta_2 = 0.999 the two coefficients differ by 1.3e-5
relative (1 - 0.999f = 0.00099998713), and the velocity with them; the
updates differ by about half that. So arrays agree to 3e-5 of their largest
magnitude, and the updates (variable minus its start) likewise; a wrong
term (a step off in the bias correction, a missing decay) is off by percent.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.trainer import fused_optimizers

_SHAPES = ([3, 3, 4, 5], [5], [7, 2])


def _learning_rate():
    # Changes every step, so a rate read at the wrong step shows.
    return keras.optimizers.schedules.PolynomialDecay(
        0.05, decay_steps=6, end_learning_rate=0.001)


_CASES = {
    'adam': (lambda: fused_optimizers.Adam(_learning_rate()),
             lambda: keras.optimizers.Adam(_learning_rate()),
             'ResourceApplyAdam'),
    'adamw': (lambda: fused_optimizers.AdamW(_learning_rate(),
                                             weight_decay=0.3),
              lambda: keras.optimizers.AdamW(_learning_rate(),
                                             weight_decay=0.3),
              'ResourceApplyAdam'),
    'sgd': (lambda: fused_optimizers.SGD(_learning_rate(), momentum=0.9),
            lambda: keras.optimizers.SGD(_learning_rate(), momentum=0.9),
            'ResourceApplyKerasMomentum'),
}


def _train(optimizer, steps: int = 4):
    """The variables' updates and the optimizer's variables after `steps`
    updates with seeded gradients of varied scale, applied in a tf.function
    as the trainer does; and the traced update's graph."""
    starts = _starts()
    variables = [keras.Variable(start, name=f'kernel_{i}')
                 for i, start in enumerate(starts)]
    rng = np.random.RandomState(1)
    gradients = [[tf.constant(rng.normal(scale=10.0 ** -k, size=shape),
                              tf.float32)
                  for k, shape in enumerate(_SHAPES)]
                 for _ in range(steps)]

    @tf.function
    def apply(step_gradients):
        optimizer.apply_gradients(zip(step_gradients, variables))

    for step_gradients in gradients:
        apply(step_gradients)
    updates = [v.numpy() - start for v, start in zip(variables, starts)]
    return (updates, [v.numpy() for v in optimizer.variables],
            apply.get_concrete_function(gradients[0]).graph)


def _starts():
    rng = np.random.RandomState(0)
    return [rng.normal(size=shape).astype(np.float32) for shape in _SHAPES]


def _assert_close(ours, theirs, what):
    scale = np.max(np.abs(theirs))
    worst = np.max(np.abs(ours - theirs))
    assert worst <= 3e-5 * scale, (what, worst, scale)


@pytest.mark.parametrize('name', sorted(_CASES))
def test_fused_update_equals_keras(traced_op_types, name):
    make_fused, make_keras, kernel = _CASES[name]
    fused_updates, fused_slots, fused_graph = _train(make_fused())
    keras_updates, keras_slots, keras_graph = _train(make_keras())
    assert kernel in traced_op_types(fused_graph)
    assert kernel not in traced_op_types(keras_graph)
    assert len(fused_slots) == len(keras_slots)
    for i, (ours, theirs) in enumerate(zip(fused_updates, keras_updates)):
        assert np.max(np.abs(theirs)) > 1e-3
        _assert_close(ours, theirs, f'update of variable {i}')
    for i, (ours, theirs) in enumerate(zip(fused_slots, keras_slots)):
        _assert_close(ours, theirs, f'optimizer variable {i}')


def test_sparse_gradients_take_keras_path():
    variable = keras.Variable(np.ones([4, 2], np.float32))
    reference = keras.Variable(np.ones([4, 2], np.float32))
    gradient = tf.IndexedSlices(tf.constant([[1.0, 2.0]]), tf.constant([2]),
                                tf.constant([4, 2]))
    fused_optimizers.Adam(0.1).apply_gradients([(gradient, variable)])
    keras.optimizers.Adam(0.1).apply_gradients([(gradient, reference)])
    np.testing.assert_array_equal(variable.numpy(), reference.numpy())
    assert not np.array_equal(variable.numpy(), np.ones([4, 2]))
