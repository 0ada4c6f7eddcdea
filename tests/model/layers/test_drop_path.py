"""Drop path: the keep mask, its scaling, inference identity, schedules."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers import drop_path
from deeplab2.model.layers import training_noise


def test_constant_schedule_is_the_same_everywhere():
    for stage in range(5):
        assert drop_path.scheduled_keep_prob(0.8, 'constant', stage, 4) == 0.8


def test_linear_schedule_by_hand():
    # 1 - (1 - 0.8) * stage / 4: 1.0, 0.95, 0.9, 0.85, 0.8.
    got = [drop_path.scheduled_keep_prob(0.8, 'linear', stage, 4)
           for stage in range(5)]
    np.testing.assert_allclose(got, [1.0, 0.95, 0.9, 0.85, 0.8])


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="'cosine'.*constant, linear"):
        drop_path.scheduled_keep_prob(0.8, 'cosine', 1, 4)


def test_mask_by_hand(monkeypatch):
    """keep_prob 0.8 and uniforms (0.1, 0.25, 0.1999, 0.7): floor(0.9) = 0,
    floor(1.05) = 1, floor(0.9999) = 0, floor(1.5) = 1, so the mask is
    (0, 1.25, 0, 1.25): dropped examples are zero, kept ones scaled by
    1 / 0.8."""
    uniforms = tf.constant([0.1, 0.25, 0.1999, 0.7], shape=[4, 1, 1, 1])
    monkeypatch.setattr(training_noise, 'uniform',
                        lambda shape, dtype: tf.reshape(uniforms, shape))
    x = tf.reshape(tf.range(4 * 2 * 3 * 1, dtype=tf.float32), [4, 2, 3, 1])
    mask = drop_path.random_keep_mask(x, 0.8)
    np.testing.assert_allclose(mask.numpy().ravel(), [0, 1.25, 0, 1.25])
    layer = drop_path.DropPath(0.8, name='drop_path')
    expected = x.numpy() * np.array([0, 1.25, 0, 1.25]).reshape(4, 1, 1, 1)
    np.testing.assert_allclose(layer(x, training=True).numpy(), expected)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())


def test_keeps_the_expectation():
    tf.random.set_seed(0)
    x = tf.ones([20000, 1, 1, 2])
    out = drop_path.DropPath(0.7)(x, training=True).numpy()
    kept = out[:, 0, 0, 0] > 0
    assert set(np.unique(out)) <= {0.0, np.float32(1 / 0.7)}
    assert abs(kept.mean() - 0.7) < 0.02
    assert abs(out.mean() - 1.0) < 0.03
    # One decision an example: all its values share the mask.
    np.testing.assert_array_equal(out[..., 0], out[..., 1])


def test_keep_prob_one_is_the_identity_in_training():
    x = tf.random.normal([3, 2, 2, 1])
    np.testing.assert_array_equal(
        drop_path.DropPath(1.0)(x, training=True).numpy(), x.numpy())


@pytest.mark.parametrize('keep_prob', [0.0, 1.5])
def test_rejects_bad_keep_prob(keep_prob):
    with pytest.raises(ValueError, match='keep_prob must be in'):
        drop_path.DropPath(keep_prob)


def test_drop_path_harness(layer_harness):
    layer_harness(drop_path.DropPath(0.9, name='drop_path'),
                  tf.random.normal([2, 3, 5, 4]), (2, 3, 5, 4))
