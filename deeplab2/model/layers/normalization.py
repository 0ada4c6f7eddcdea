"""Batch norm settings, passed as one value through every layer."""

import dataclasses
from typing import Any, Mapping

import keras
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class BatchNormOptions:
    """How every batch norm in a model is built (from SolverOptions).

    Attributes:
      momentum: moving-average momentum (Keras convention, 0.99).
      epsilon: added to the variance.
      synchronized: average statistics over all replicas in training.
    """
    momentum: float = 0.99
    epsilon: float = 1e-3
    synchronized: bool = False

    @classmethod
    def coerce(cls, value: 'BatchNormOptions | Mapping[str, Any] | None'
               ) -> 'BatchNormOptions':
        """Accepts an instance, a dict (from get_config) or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        return cls(**value)

    def to_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def make(self, name: str = 'batch_norm',
             gamma_initializer: str = 'ones') -> keras.layers.BatchNormalization:
        return BatchNormalization(
            axis=-1, momentum=self.momentum, epsilon=self.epsilon,
            synchronized=self.synchronized,
            gamma_initializer=gamma_initializer, name=name)


@keras.saving.register_keras_serializable(package='deeplab2')
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras batch norm whose inference path is TF's fused kernel.

    Keras 3 normalizes with separate element-wise ops; on CPU that costs
    several passes over every activation, and TF's graph optimizer cannot
    fold it into the preceding convolution as it does FusedBatchNormV3. The
    training path (batch moments, moving averages, cross-replica sync) stays
    Keras'.
    """

    def call(self, inputs, training=None, mask=None):
        if ((training and self.trainable) or mask is not None or
                len(inputs.shape) != 4 or self.axis not in (-1, 3) or
                not (self.scale and self.center)):
            return super().call(inputs, training=training, mask=mask)
        if inputs.dtype not in (tf.float16, tf.bfloat16, tf.float32):
            inputs = tf.cast(inputs, tf.float32)
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(self.gamma, tf.float32),
            tf.cast(self.beta, tf.float32),
            mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon, is_training=False)
        return tf.cast(outputs, self.compute_dtype)
