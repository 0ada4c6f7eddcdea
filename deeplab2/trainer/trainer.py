"""One training loop under a tf.distribute strategy.

`Trainer.train(iterator, num_steps)` runs `num_steps` steps inside one
tf.function call (steps_per_loop) and returns the mean of every loss term
over them. Each replica's loss is summed over its examples and divided by
the global batch, so gradients summed across replicas equal the gradient of
the global-batch mean; the model's regularization losses are divided by the
number of replicas for the same reason.
"""

import keras
import tensorflow as tf

from deeplab2 import common


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or Inf; names the step and the term."""


class Trainer:
    """Args:
      strategy: the tf.distribute strategy the model and optimizer live in.
      model: a DeepLab model.
      loss_fn: ground-truth dict, prediction dict -> dict of loss terms
        (per example [B], or per batch []).
      optimizer: a Keras optimizer (a LossScaleOptimizer for float16).
      global_batch_size: examples per step over all replicas.
      gradient_transform: optional fn(list of (grad, var)) -> same, applied
        before the update (clipping, backbone learning-rate multiplier).
    """

    def __init__(self, strategy, model, loss_fn, optimizer,
                 global_batch_size: int, gradient_transform=None):
        self.strategy = strategy
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.global_batch_size = global_batch_size
        self.gradient_transform = gradient_transform
        # Create the optimizer's slots now, outside any tf.function: Keras
        # builds them lazily otherwise, and creating variables inside a
        # distributed tf.function breaks under MirroredStrategy.
        with strategy.scope():
            optimizer.build(model.trainable_variables)
        # The step is a tf.function of its own, called from the loop's: the
        # loop calls it twice (see _loop), and a nested function is traced
        # once, which halves the start-up cost of tracing the model.
        self._traced_step = tf.function(self._replicated_step)
        self._train_loop = tf.function(self._loop)

    def train(self, iterator, num_steps: int) -> dict:
        """Runs num_steps steps; returns {term: mean over the steps}."""
        sums = self._train_loop(iterator, tf.constant(num_steps, tf.int32))
        return {key: float(value) / num_steps for key, value in sums.items()}

    def _loop(self, iterator, num_steps):
        # The first step defines the structure AutoGraph's loop carries.
        sums = self._traced_step(iterator)
        for _ in tf.range(num_steps - 1):
            terms = self._traced_step(iterator)
            sums = {key: sums[key] + terms[key] for key in sums}
        return sums

    def _replicated_step(self, iterator):
        terms = self.strategy.run(self._step, args=(next(iterator),))
        return {key: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value,
                                          axis=None)
                for key, value in terms.items()}

    def _step(self, inputs):
        with tf.GradientTape() as tape:
            outputs = self.model(inputs[common.IMAGE], training=True)
            terms = self.loss_fn(inputs, outputs)
            scaled = {key: self._global_mean(value)
                      for key, value in terms.items()}
            regularization = (tf.add_n(self.model.losses) /
                              self.strategy.num_replicas_in_sync
                              if self.model.losses else 0.0)
            objective = scaled[common.TOTAL_LOSS] + regularization
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                objective = self.optimizer.scale_loss(objective)
        variables = self.model.trainable_variables
        gradients = tape.gradient(objective, variables)
        pairs = list(zip(gradients, variables))
        if self.gradient_transform is not None:
            pairs = self.gradient_transform(pairs)
        self.optimizer.apply_gradients(pairs)
        return scaled

    def _global_mean(self, value):
        """This replica's share of the global-batch mean of a loss term."""
        value = tf.cast(value, tf.float32)
        if value.shape.rank == 0:
            return value / self.strategy.num_replicas_in_sync
        return tf.reduce_sum(value) / self.global_batch_size


def check_finite(losses: dict, step: int) -> None:
    """Raises NonFiniteLossError naming the step and the bad terms."""
    bad = [key for key, value in losses.items()
           if not tf.math.is_finite(value)]
    if bad:
        raise NonFiniteLossError(
            f'Loss became non-finite at step {step}: '
            + ', '.join(f'{key}={losses[key]}' for key in bad)
            + '. The last checkpoint in model_dir is the last good state.')
