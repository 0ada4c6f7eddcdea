"""Training noise: dropout by hand, and a checkpointed generator continues
its stream after a restore (what makes resumed runs equal)."""

import numpy as np
import tensorflow as tf

from deeplab2.model.layers import training_noise


def test_dropout_by_hand(monkeypatch):
    """rate 0.25: uniforms below 0.25 drop, the rest scale by 4/3."""
    uniforms = tf.constant([[0.1, 0.25], [0.2499, 0.9]])
    monkeypatch.setattr(training_noise, 'uniform',
                        lambda shape, dtype: tf.reshape(uniforms, shape))
    x = tf.constant([[3.0, 3.0], [6.0, -6.0]])
    np.testing.assert_allclose(training_noise.dropout(x, 0.25).numpy(),
                               [[0.0, 4.0], [0.0, -8.0]])


def test_restored_generator_continues_the_stream(tmp_path):
    generator = training_noise.create_generator(seed=7)
    training_noise.uniform([3])
    path = tf.train.Checkpoint(noise=generator).write(str(tmp_path / 'c'))
    expected = training_noise.uniform([5]).numpy()
    again = training_noise.create_generator(seed=123)  # a new process' state
    tf.train.Checkpoint(noise=again).read(path).assert_consumed()
    np.testing.assert_array_equal(training_noise.uniform([5]).numpy(),
                                  expected)


def test_seed_makes_draws_repeatable():
    training_noise.create_generator(seed=3)
    first = training_noise.uniform([4]).numpy()
    training_noise.create_generator(seed=3)
    np.testing.assert_array_equal(training_noise.uniform([4]).numpy(), first)
