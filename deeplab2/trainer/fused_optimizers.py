"""Keras' Adam, AdamW and SGD with momentum, each variable updated by one
TensorFlow kernel instead of a chain of element-wise ops.

Keras 3 writes Adam's update as some ten separate ops (subtract, multiply,
square, sqrt, divide, three assigns), and each reads and writes the whole
variable: on ResNet-50 Panoptic-DeepLab's 55M parameters that is about
130 ms per step on 2 CPU cores. `ResourceApplyAdam` does the same
arithmetic in one pass over memory (about 40 ms there). The formulas are
Keras' own, term for term:

  Adam:  m += (g - m)(1 - beta_1);  v += (g^2 - v)(1 - beta_2);
         var -= m * lr sqrt(1 - beta_2^t) / (1 - beta_1^t) / (sqrt(v) + eps)
  SGD:   m = momentum * m - lr * g;  var += m   (ResourceApplyKerasMomentum)

so these classes are drop-in subclasses: same hyper-parameters, same slot
variables (and so the same checkpoints), same weight decay for AdamW
(applied by Keras before `update_step`). One rounding differs: the kernel
forms 1 - beta in float32, Keras in float64 before the cast, and for
beta_2 = 0.999 those differ by 1.3e-5 relative; the velocity differs by as
much, the updates by about half (tests/trainer/test_fused_optimizers.py).

Cases the kernels do not cover go to Keras' own `update_step`: sparse
(IndexedSlices) gradients, `amsgrad`, Nesterov momentum, SGD without
momentum, and variables that are not float32.
"""

import keras
import tensorflow as tf

from deeplab2 import private_api


def _fusable(gradient, variable) -> bool:
    return (not isinstance(gradient, tf.IndexedSlices)
            and variable.dtype == tf.float32)


def _handle(variable):
    """The resource handle of a Keras or TF variable. Inside a
    tf.distribute update, a mirrored variable's handle is the component on
    the device being updated."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


class _FusedAdamUpdate:
    """update_step for Adam and AdamW (AdamW's decay happens before it)."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or not _fusable(gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        momentum, velocity = private_api.adam_slots(self, variable)
        step = tf.cast(self.iterations + 1, tf.float32)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(momentum), v=_handle(velocity),
            beta1_power=tf.pow(tf.constant(self.beta_1, tf.float32), step),
            beta2_power=tf.pow(tf.constant(self.beta_2, tf.float32), step),
            lr=tf.cast(learning_rate, tf.float32),
            beta1=tf.constant(self.beta_1, tf.float32),
            beta2=tf.constant(self.beta_2, tf.float32),
            epsilon=tf.constant(self.epsilon, tf.float32),
            grad=tf.cast(gradient, tf.float32), use_locking=False)


class Adam(_FusedAdamUpdate, keras.optimizers.Adam):
    """keras.optimizers.Adam, updated by ResourceApplyAdam."""


class AdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
    """keras.optimizers.AdamW, updated by ResourceApplyAdam."""


class SGD(keras.optimizers.SGD):
    """keras.optimizers.SGD; with (non-Nesterov) momentum, updated by
    ResourceApplyKerasMomentum."""

    def update_step(self, gradient, variable, learning_rate):
        if (not self.momentum or self.nesterov
                or not _fusable(gradient, variable)):
            return super().update_step(gradient, variable, learning_rate)
        accumulator = private_api.sgd_momentum(self, variable)
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable), accum=_handle(accumulator),
            lr=tf.cast(learning_rate, tf.float32),
            grad=tf.cast(gradient, tf.float32),
            momentum=tf.constant(self.momentum, tf.float32),
            use_locking=False, use_nesterov=False)
