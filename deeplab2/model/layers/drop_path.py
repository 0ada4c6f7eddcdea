"""Drop path (stochastic depth, Huang et al. 2016) for residual branches.

In training, each example's residual branch is zeroed with probability
1 - keep_prob and otherwise scaled by 1 / keep_prob, so its expectation is
unchanged; at inference the branch passes through untouched.
"""

import keras
import tensorflow as tf

from deeplab2.model.layers import base
from deeplab2.model.layers import training_noise

SCHEDULES = ('constant', 'linear')


def scheduled_keep_prob(last_stage_keep_prob: float, schedule: str,
                        current_stage: int, num_stages: int) -> float:
    """Keep probability of a block in `current_stage` (0 = stem).

    'constant' gives every stage `last_stage_keep_prob`; 'linear' falls from
    1.0 at stage 0 to `last_stage_keep_prob` at stage `num_stages`.

    Raises:
      ValueError: for an unknown schedule.
    """
    if schedule == 'constant':
        return last_stage_keep_prob
    if schedule == 'linear':
        return 1.0 - (1.0 - last_stage_keep_prob) * current_stage / num_stages
    raise ValueError(f'Unknown drop_path_schedule {schedule!r}; supported: '
                     f'{", ".join(SCHEDULES)}.')


def random_keep_mask(inputs, keep_prob: float):
    """A [batch, 1, ..., 1] mask of 0 or 1 / keep_prob, one value an example.

    floor(keep_prob + U[0, 1)) is 1 with probability keep_prob. The division
    comes after the floor, as in DeepLab2, so the kept value is exactly
    1 / keep_prob in float32.
    """
    shape = [tf.shape(inputs)[0]] + [1] * (inputs.shape.rank - 1)
    # Not a keras SeedGenerator: it is a variable, which would add a key
    # DeepLab2's checkpoints do not have.
    uniform = training_noise.uniform(shape, inputs.dtype)
    return tf.floor(keep_prob + uniform) / keep_prob


@keras.saving.register_keras_serializable(package='deeplab2')
class DropPath(base.Layer):
    """Multiplies its input by a per-example random keep mask in training.

    Args:
      keep_prob: probability of keeping an example's path, in (0, 1].
    """

    def __init__(self, keep_prob: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f'{self.name}: keep_prob must be in (0, 1], got '
                             f'{keep_prob}.')
        self.keep_prob = keep_prob

    def call(self, inputs, training=False):
        if not training or self.keep_prob >= 1.0:
            return inputs
        return inputs * random_keep_mask(inputs, self.keep_prob)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), 'keep_prob': self.keep_prob}
