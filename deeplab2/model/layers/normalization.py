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


# cuDNN's fused batch norm refuses an epsilon under 1e-5, and float32's
# 1e-5 (DeepLab2's MobileNet configs) lies just under it; TF's CPU kernel
# takes any. With a GPU in sight such layers train on Keras' path.
_CUDNN_MIN_EPSILON = 1.001e-5


def _gpu_visible() -> bool:
    return bool(tf.config.list_logical_devices('GPU'))


@keras.saving.register_keras_serializable(package='deeplab2')
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras batch norm computed by TF's fused kernels where it can be.

    Keras 3 normalizes with separate element-wise ops, and in training its
    moments' gradients add more (Tiles of the reduced gradients, then
    products with the input): on CPU that is many passes over every
    activation, and TF's graph optimizer cannot fold it into the preceding
    convolution as it does FusedBatchNormV3. FusedBatchNormV3 and its
    gradient kernel do the same maths in two or three passes. Statistics
    synchronized across several replicas (and masks, renorm, other layouts)
    stay Keras'.
    """

    def _fusable(self, inputs, mask) -> bool:
        return (mask is None and len(inputs.shape) == 4 and
                self.axis in (-1, 3) and self.scale and self.center and
                not self.renorm)

    def _fused_training_possible(self) -> bool:
        if self.synchronized and (
                tf.distribute.get_strategy().num_replicas_in_sync > 1):
            return False
        return self.epsilon >= _CUDNN_MIN_EPSILON or not _gpu_visible()

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        if training and self.trainable:
            if not self._fused_training_possible():
                return super().call(inputs, training=training, mask=mask)
            return self._fused_training(inputs)
        if inputs.dtype not in (tf.float16, tf.bfloat16, tf.float32):
            inputs = tf.cast(inputs, tf.float32)
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(self.gamma, tf.float32),
            tf.cast(self.beta, tf.float32),
            mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon, is_training=False)
        return tf.cast(outputs, self.compute_dtype)

    def _fused_training(self, inputs):
        """Keras' training step (batch moments normalize, then update the
        moving averages) with the fused kernel; float32 as Keras computes
        it whatever the input's dtype."""
        inputs = tf.cast(inputs, tf.float32)
        empty = tf.zeros([0], tf.float32)  # training: no moving statistics
        outputs, mean, variance = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=tf.cast(self.gamma, tf.float32),
            offset=tf.cast(self.beta, tf.float32), mean=empty,
            variance=empty, epsilon=self.epsilon, data_format='NHWC',
            is_training=True)[:3]
        # The kernel returns the variance with Bessel's correction (n / (n
        # - 1), for its own moving average); Keras averages the batch's
        # plain variance, which normalized the outputs.
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
        variance = variance * ((count - 1.0) / tf.maximum(count, 1.0))
        momentum = self.momentum
        self.moving_mean.assign(
            tf.cast(self.moving_mean, tf.float32) * momentum +
            mean * (1.0 - momentum))
        self.moving_variance.assign(
            tf.cast(self.moving_variance, tf.float32) * momentum +
            variance * (1.0 - momentum))
        return tf.cast(outputs, self.compute_dtype)
