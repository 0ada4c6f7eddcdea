"""Trainer on a one-weight-vector linear model, where each SGD step can be
worked out by hand, and the non-finite loss guard."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.trainer import trainer as trainer_lib

# Two examples, x = (1, 0) with target 0 and x = (0, 1) with target 1; the
# model is pred = x . w, w = (1, 2) at the start.
_INPUTS = {common.IMAGE: np.array([[1., 0.], [0., 1.]], np.float32),
           'target': np.array([0., 1.], np.float32)}


def _squared_error(inputs, outputs):
    # Per example, as Trainer expects: it takes the global-batch mean.
    return {common.TOTAL_LOSS: (outputs[:, 0] - inputs['target'])**2}


def _model(regularization=0.0):
    layer = keras.layers.Dense(
        1, use_bias=False,
        kernel_initializer=keras.initializers.Constant([[1.], [2.]]),
        kernel_regularizer=(keras.regularizers.L2(regularization)
                            if regularization else None))
    return keras.Sequential([keras.Input((2,)), layer])


def _train(model, num_steps, loss_fn=_squared_error, **kwargs):
    trainer = trainer_lib.Trainer(
        tf.distribute.get_strategy(), model, loss_fn,
        keras.optimizers.SGD(learning_rate=0.1), global_batch_size=2,
        **kwargs)
    batches = iter(tf.data.Dataset.from_tensors(_INPUTS).repeat())
    return trainer.train(batches, num_steps)


def _weights(model):
    return model.trainable_variables[0].numpy()[:, 0]


def test_two_sgd_steps_match_the_hand_worked_updates():
    # Step 1: errors (1, 1), loss 1, gradient mean(2 e x) = (1, 1), so
    # w = (1, 2) - 0.1 (1, 1) = (0.9, 1.9). Step 2: errors (0.9, 0.9), loss
    # 0.81, w = (0.81, 1.81). train() returns the mean loss of the steps.
    model = _model()
    losses = _train(model, num_steps=2)
    assert losses == {common.TOTAL_LOSS: pytest.approx((1 + 0.81) / 2)}
    np.testing.assert_allclose(_weights(model), [0.81, 1.81], rtol=1e-6)


def test_regularization_joins_the_gradient_but_not_the_reported_loss():
    # L2(0.5) adds 0.5 |w|^2, gradient w = (1, 2): total (2, 3), so
    # w = (0.8, 1.7); the reported loss is still the data term, 1.
    model = _model(regularization=0.5)
    losses = _train(model, num_steps=1)
    assert losses[common.TOTAL_LOSS] == pytest.approx(1.0)
    np.testing.assert_allclose(_weights(model), [0.8, 1.7], rtol=1e-6)


def test_gradient_transform_sees_the_gradients_before_the_update():
    model = _model()
    # Ten times the gradient (1, 1): w = (1, 2) - 0.1 (10, 10) = (0, 1).
    _train(model, num_steps=1, gradient_transform=lambda pairs: [
        (10 * gradient, variable) for gradient, variable in pairs])
    np.testing.assert_allclose(_weights(model), [0., 1.], atol=1e-6)


def test_a_per_batch_term_is_reported_as_is():
    # A scalar term is already a batch mean: divided by the number of
    # replicas (1), not by the batch size.
    def loss_fn(inputs, outputs):
        terms = _squared_error(inputs, outputs)
        return {**terms, 'batch_term': tf.constant(3.0)}

    losses = _train(_model(), num_steps=1, loss_fn=loss_fn)
    assert losses['batch_term'] == pytest.approx(3.0)


def test_non_finite_loss_names_step_and_term():
    with pytest.raises(trainer_lib.NonFiniteLossError,
                       match=r'step 7: center_loss=nan'):
        trainer_lib.check_finite({'semantic_loss': 1.0,
                                  'center_loss': float('nan')}, 7)
    with pytest.raises(trainer_lib.NonFiniteLossError, match='=inf'):
        trainer_lib.check_finite({'semantic_loss': float('inf')}, 1)
    trainer_lib.check_finite({'semantic_loss': 1.0}, 1)
