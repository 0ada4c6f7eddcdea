"""Learning rates, optimizers and gradient transforms from SolverOptions."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import config as config_lib
from deeplab2 import trainer_pb2
from deeplab2.trainer import fused_optimizers
from deeplab2.trainer import schedules


def _solver(**fields):
    return trainer_pb2.SolverOptions(**fields)


def _rates(schedule, steps):
    return [float(schedule(tf.constant(step, tf.int64))) for step in steps]


def test_poly_by_hand():
    # (0.01 - 0.001) * (1 - step / 100) ** 0.9 + 0.001, flat after 100.
    schedule = schedules.build_learning_rate(_solver(
        learning_policy='poly', base_learning_rate=0.01,
        poly_end_learning_rate=0.001, poly_learning_power=0.9,
        training_number_of_steps=100))
    want = [0.01, 0.009 * 0.5 ** 0.9 + 0.001, 0.009 * 0.1 ** 0.9 + 0.001,
            0.001, 0.001]
    np.testing.assert_allclose(_rates(schedule, [0, 50, 90, 100, 150]), want,
                               rtol=1e-5)


def test_proto_defaults_are_poly_adam():
    solver = _solver()
    schedule = schedules.build_learning_rate(solver)
    # base 0.001, power 0.9, end 0, 60000 steps.
    np.testing.assert_allclose(_rates(schedule, [30000]),
                               [0.001 * 0.5 ** 0.9], rtol=1e-5)
    assert isinstance(schedules.build_optimizer(solver), keras.optimizers.Adam)


def test_cosine_by_hand():
    schedule = schedules.build_learning_rate(_solver(
        learning_policy='cosine', base_learning_rate=0.1,
        training_number_of_steps=100))
    want = [0.1, 0.1 * 0.5 * (1 + math.cos(math.pi * 0.25)), 0.05, 0.0, 0.0]
    np.testing.assert_allclose(_rates(schedule, [0, 25, 50, 100, 120]), want,
                               rtol=1e-5, atol=1e-8)


def test_constant():
    schedule = schedules.build_learning_rate(_solver(
        learning_policy='constant', base_learning_rate=0.5))
    np.testing.assert_allclose(_rates(schedule, [0, 10, 10 ** 6]), [0.5] * 3)


def test_linear_warmup_then_unshifted_poly():
    # Steps 0..9: 0.01 * step / 10; from 10 on the poly value at that step.
    schedule = schedules.build_learning_rate(_solver(
        learning_policy='poly', base_learning_rate=0.01,
        poly_learning_power=1.0, training_number_of_steps=100,
        warmup_steps=10))
    np.testing.assert_allclose(_rates(schedule, [0, 2, 9, 10, 50]),
                               [0.0, 0.002, 0.009, 0.009, 0.005], rtol=1e-5)


def test_warmup_scales_with_the_multiplier():
    schedule = schedules.build_learning_rate(_solver(
        learning_policy='constant', base_learning_rate=0.1, warmup_steps=4),
        learning_rate_multiplier=0.5)
    np.testing.assert_allclose(_rates(schedule, [1, 4]), [0.0125, 0.05])


def test_schedules_serialize():
    schedule = schedules.build_learning_rate(_solver(warmup_steps=5))
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule))
    np.testing.assert_allclose(_rates(restored, [3, 1000]),
                               _rates(schedule, [3, 1000]))


@pytest.mark.parametrize('name,cls', [('adam', keras.optimizers.Adam),
                                      ('sgd', keras.optimizers.SGD),
                                      ('adamw', keras.optimizers.AdamW)])
def test_each_optimizer_builds_and_steps(name, cls):
    optimizer = schedules.build_optimizer(_solver(
        optimizer=name, learning_policy='constant', base_learning_rate=0.1,
        adamw_weight_decay=0.01))
    assert isinstance(optimizer, cls)
    assert type(optimizer).__module__ == fused_optimizers.__name__
    variable = keras.Variable([1.0, -2.0], name='kernel')
    optimizer.apply_gradients([(tf.constant([1.0, 1.0]), variable)])
    assert int(optimizer.iterations) == 1
    assert not np.allclose(variable.numpy(), [1.0, -2.0])
    if name == 'sgd':
        assert optimizer.momentum == pytest.approx(0.9)
        np.testing.assert_allclose(variable.numpy(), [0.9, -2.1], rtol=1e-6)
    if name != 'sgd':
        assert optimizer.epsilon == pytest.approx(1e-7)


def test_adamw_decays_kernels_only():
    optimizer = schedules.build_optimizer(_solver(
        optimizer='adamw', learning_policy='constant', base_learning_rate=0.1,
        adamw_weight_decay=0.5))
    layer = keras.layers.Dense(1, kernel_initializer='ones',
                               bias_initializer='ones')
    layer.build([None, 1])
    norm = keras.layers.BatchNormalization()
    norm.build([None, 1])
    variables = layer.trainable_variables + norm.trainable_variables
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in variables])
    # Zero gradient -> no Adam step; only the kernel decays: 1 - 0.5 * 0.1.
    np.testing.assert_allclose(layer.kernel.numpy(), [[0.95]], rtol=1e-6)
    np.testing.assert_allclose(layer.bias.numpy(), [1.0])
    np.testing.assert_allclose(norm.gamma.numpy(), [1.0])


def test_optimizers_add_no_l2_weight_decay():
    # weight_decay is the model's L2 regularizer, not the optimizer's.
    for name in ('adam', 'sgd'):
        optimizer = schedules.build_optimizer(_solver(optimizer=name,
                                                      weight_decay=0.1))
        assert optimizer.weight_decay is None


def test_clipping_clips_by_global_norm():
    transform = schedules.gradient_transform(
        _solver(use_gradient_clipping=True, clip_gradient_norm=1.0), [])
    a, b = keras.Variable([0.0]), keras.Variable([0.0, 0.0])
    pairs = transform([(tf.constant([3.0]), a), (tf.constant([0.0, 4.0]), b)])
    np.testing.assert_allclose(pairs[0][0].numpy(), [0.6], rtol=1e-6)
    np.testing.assert_allclose(pairs[1][0].numpy(), [0.0, 0.8], rtol=1e-6)
    assert pairs[0][1] is a and pairs[1][1] is b
    # Off unless use_gradient_clipping.
    pairs = schedules.gradient_transform(_solver(clip_gradient_norm=1.0), [])(
        [(tf.constant([3.0]), a)])
    np.testing.assert_allclose(pairs[0][0].numpy(), [3.0])


def test_backbone_multiplier_scales_only_encoder_gradients():
    encoder = keras.layers.Dense(2, name='encoder')
    head = keras.layers.Dense(1, name='head')
    model = keras.Sequential([keras.Input([3]), encoder, head])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.ones([4, 3])))
    variables = model.trainable_variables
    gradients = tape.gradient(loss, variables)
    pairs = schedules.scale_backbone_gradients(
        zip(gradients, variables), encoder.trainable_variables, 0.1)
    encoder_ids = {id(v) for v in encoder.trainable_variables}
    for (scaled, variable), original in zip(pairs, gradients):
        factor = 0.1 if id(variable) in encoder_ids else 1.0
        np.testing.assert_allclose(scaled.numpy(), factor * original.numpy(),
                                   rtol=1e-6)
    # Through the transform: clipping first, then the multiplier.
    solver = _solver(backbone_learning_rate_multiplier=0.1,
                     use_gradient_clipping=True, clip_gradient_norm=1e-3)
    pairs = schedules.gradient_transform(solver, encoder.trainable_variables)(
        list(zip(gradients, variables)))
    norms = [float(tf.norm(g)) for g, _ in pairs]
    clipped_norm = math.sqrt(sum(
        (n / 0.1 if id(v) in encoder_ids else n) ** 2
        for n, (_, v) in zip(norms, pairs)))
    assert clipped_norm == pytest.approx(1e-3, rel=1e-4)


def test_backbone_multiplier_only_when_set():
    assert schedules.backbone_learning_rate_multiplier(_solver()) == 1.0
    assert schedules.backbone_learning_rate_multiplier(
        _solver(backbone_learning_rate_multiplier=0.1)) == pytest.approx(0.1)
    with pytest.raises(config_lib.ConfigError,
                       match='backbone_learning_rate_multiplier'):
        schedules.backbone_learning_rate_multiplier(
            _solver(backbone_learning_rate_multiplier=-1))


def test_errors_name_the_field():
    with pytest.raises(config_lib.ConfigError,
                       match=r"solver_options\.optimizer 'rmsprop'.*adam, sgd"):
        schedules.build_optimizer(_solver(optimizer='rmsprop'))
    with pytest.raises(config_lib.ConfigError,
                       match=r"solver_options\.learning_policy 'step'.*poly"):
        schedules.build_learning_rate(_solver(learning_policy='step'))
    with pytest.raises(config_lib.ConfigError,
                       match=r'training_number_of_steps'):
        schedules.build_learning_rate(_solver(training_number_of_steps=0))
