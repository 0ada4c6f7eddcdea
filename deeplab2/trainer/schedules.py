"""Learning-rate schedules, optimizers and gradient transforms from SolverOptions.

DeepLab2's facts kept here:
- `poly`: Keras PolynomialDecay over `training_number_of_steps` (no cycle),
  from `base_learning_rate` to `poly_end_learning_rate` with
  `poly_learning_power`; `cosine`: CosineDecay to 0 over the same steps.
  `constant` is our addition (DeepLab2 has only poly and cosine).
- `warmup_steps` > 0: below it the rate is base_rate * step / warmup_steps;
  from it on, the decay schedule evaluated at the *global* step (the warmup
  does not shift the decay).
- `adam` and `adamw` use Keras defaults (beta 0.9/0.999, epsilon 1e-7);
  `sgd` has momentum 0.9. `adamw` decays only kernels/weights, by
  lr * adamw_weight_decay * var before each update.
- `weight_decay` is NOT applied by any optimizer here: the model builder
  already gives the encoder's kernels an L2 regularizer of weight_decay / 2.
  (DeepLab2 itself registered that regularizer but its train step never added
  `model.losses` to the objective.)
- Clipping by global norm happens on each replica's gradients before the
  backbone multiplier and before apply_gradients, as in DeepLab2's step.
"""

import math
from typing import Callable, Sequence

import keras
from absl import logging
import tensorflow as tf

from deeplab2 import config as config_lib
from deeplab2.trainer import fused_optimizers

_FIELD = 'trainer_options.solver_options'
LEARNING_POLICIES = ('poly', 'cosine', 'constant')
OPTIMIZERS = ('adam', 'sgd', 'adamw')
SGD_MOMENTUM = 0.9
# AdamW excludes every variable whose name does not end in kernel/weight
# (DeepLab2 decays kernels only; biases and batch norm are left alone). The
# TF backend matches the wrapped tf.Variable's name, e.g. `kernel:0`.
_NOT_DECAYED_PATTERN = r'^(?!.*(kernel|weight)(:\d+)?$)'


@keras.saving.register_keras_serializable(package='deeplab2')
class ConstantLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The same rate at every step."""

    def __init__(self, learning_rate: float):
        self.learning_rate = learning_rate

    def __call__(self, step):
        return tf.constant(self.learning_rate, tf.float32)

    def get_config(self):
        return {'learning_rate': self.learning_rate}


@keras.saving.register_keras_serializable(package='deeplab2')
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """step < warmup_steps: learning_rate * step / warmup_steps; then
    after_warmup(step) at the unshifted step."""

    def __init__(self, learning_rate: float, after_warmup, warmup_steps: int):
        self.learning_rate = learning_rate
        self.after_warmup = after_warmup
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup_steps = tf.cast(self.warmup_steps, tf.float32)
        warming = self.learning_rate * (step / warmup_steps)
        return tf.where(step < warmup_steps, warming,
                        tf.cast(self.after_warmup(step), tf.float32))

    def get_config(self):
        return {'learning_rate': self.learning_rate,
                'after_warmup': keras.optimizers.schedules.serialize(
                    self.after_warmup),
                'warmup_steps': self.warmup_steps}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config['after_warmup'] = keras.optimizers.schedules.deserialize(
            config['after_warmup'])
        return cls(**config)


def build_learning_rate(solver_options, learning_rate_multiplier: float = 1.0
                        ) -> keras.optimizers.schedules.LearningRateSchedule:
    """The schedule `solver_options` describes, times the multiplier.

    Raises:
      ConfigError naming `learning_policy` (unknown) or
      `training_number_of_steps` / `warmup_steps` (negative).
    """
    rate = solver_options.base_learning_rate * learning_rate_multiplier
    steps = solver_options.training_number_of_steps
    policy = solver_options.learning_policy
    if policy not in LEARNING_POLICIES:
        raise config_lib.ConfigError(
            f'Unknown {_FIELD}.learning_policy {policy!r}; supported: '
            f'{", ".join(LEARNING_POLICIES)}.')
    if policy != 'constant' and steps <= 0:
        raise config_lib.ConfigError(
            f'{_FIELD}.training_number_of_steps must be positive for the '
            f'{policy!r} learning_policy, got {steps}.')
    if policy == 'poly':
        schedule = keras.optimizers.schedules.PolynomialDecay(
            initial_learning_rate=rate, decay_steps=steps,
            end_learning_rate=solver_options.poly_end_learning_rate,
            power=solver_options.poly_learning_power, cycle=False)
    elif policy == 'cosine':
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=rate, decay_steps=steps, alpha=0.0)
    else:
        schedule = ConstantLearningRate(rate)
    if solver_options.warmup_steps < 0:
        raise config_lib.ConfigError(
            f'{_FIELD}.warmup_steps must be >= 0, got '
            f'{solver_options.warmup_steps}.')
    if solver_options.warmup_steps:
        schedule = LinearWarmup(rate, schedule, solver_options.warmup_steps)
    return schedule


def build_optimizer(solver_options, learning_rate_multiplier: float = 1.0
                    ) -> keras.optimizers.Optimizer:
    """The Keras optimizer `solver_options` describes (no L2 weight decay:
    see the module docstring; no clipping: see `clip_gradients`), as its
    fused_optimizers subclass: same updates, one kernel per variable.

    Raises:
      ConfigError naming `optimizer` or `learning_policy`.
    """
    learning_rate = build_learning_rate(solver_options,
                                        learning_rate_multiplier)
    name = solver_options.optimizer
    if name == 'adam':
        return fused_optimizers.Adam(learning_rate=learning_rate)
    if name == 'sgd':
        return fused_optimizers.SGD(learning_rate=learning_rate,
                                    momentum=SGD_MOMENTUM)
    if name == 'adamw':
        optimizer = fused_optimizers.AdamW(
            learning_rate=learning_rate,
            weight_decay=solver_options.adamw_weight_decay)
        optimizer.exclude_from_weight_decay(var_names=[_NOT_DECAYED_PATTERN])
        return optimizer
    raise config_lib.ConfigError(
        f'Unknown {_FIELD}.optimizer {name!r}; supported: '
        f'{", ".join(OPTIMIZERS)}.')


def clip_gradients(grads_and_vars, clip_norm: float):
    """Clips the gradients by their global norm; None gradients pass."""
    grads_and_vars = list(grads_and_vars)
    gradients = [gradient for gradient, _ in grads_and_vars]
    clipped, _ = tf.clip_by_global_norm(gradients, clip_norm)
    return [(gradient, variable) for gradient, (_, variable)
            in zip(clipped, grads_and_vars)]


def scale_backbone_gradients(grads_and_vars, encoder_variables: Sequence,
                             multiplier: float):
    """Multiplies the gradients of `encoder_variables` by `multiplier`.

    With SGD (and momentum) this equals DeepLab2's second optimizer whose
    learning rate is scaled by the multiplier. Adam and AdamW normalize the
    gradient's scale away, so for them this is (nearly) a no-op; use
    `build_optimizer(solver_options, multiplier)` as a second optimizer for
    the encoder variables to reproduce DeepLab2 there.
    """
    if multiplier == 1.0:
        return list(grads_and_vars)
    encoder_ids = {id(variable) for variable in encoder_variables}
    encoder_ids |= {id(_unwrap(variable)) for variable in encoder_variables}
    scaled = []
    for gradient, variable in grads_and_vars:
        in_encoder = (id(variable) in encoder_ids
                      or id(_unwrap(variable)) in encoder_ids)
        if in_encoder and gradient is not None:
            gradient = gradient * tf.cast(multiplier, gradient.dtype)
        scaled.append((gradient, variable))
    return scaled


def _unwrap(variable):
    # Keras 3 variables wrap a tf.Variable; tapes may hand back either.
    return getattr(variable, 'value', variable) if isinstance(
        variable, keras.Variable) else variable


def backbone_learning_rate_multiplier(solver_options) -> float:
    """The multiplier, 1.0 unless the field is set (DeepLab2 reads it only
    when it is set explicitly)."""
    if not solver_options.HasField('backbone_learning_rate_multiplier'):
        return 1.0
    multiplier = solver_options.backbone_learning_rate_multiplier
    if not (math.isfinite(multiplier) and multiplier >= 0):
        raise config_lib.ConfigError(
            f'{_FIELD}.backbone_learning_rate_multiplier must be >= 0, got '
            f'{multiplier}.')
    return multiplier


def gradient_transform(solver_options, encoder_variables: Sequence
                       ) -> Callable[[list], list]:
    """fn(list of (grad, var)) -> same: clipping (if enabled) then the
    backbone multiplier, in DeepLab2's order; the trainer applies it on each
    replica before `apply_gradients`."""
    clip = (solver_options.use_gradient_clipping
            and solver_options.clip_gradient_norm > 0.0)
    clip_norm = solver_options.clip_gradient_norm
    multiplier = backbone_learning_rate_multiplier(solver_options)
    if multiplier != 1.0 and solver_options.optimizer in ('adam', 'adamw'):
        logging.warning(
            'backbone_learning_rate_multiplier %s scales encoder gradients; '
            'with %s this barely changes the update (DeepLab2 used a second '
            'optimizer with a scaled learning rate).', multiplier,
            solver_options.optimizer)
    encoder_variables = list(encoder_variables)

    def transform(grads_and_vars):
        grads_and_vars = list(grads_and_vars)
        if clip:
            grads_and_vars = clip_gradients(grads_and_vars, clip_norm)
        return scale_backbone_gradients(grads_and_vars, encoder_variables,
                                        multiplier)

    return transform
