"""Layers held in lists are saved and restored by tf.train.Checkpoint."""

import numpy as np
import tensorflow as tf

from deeplab2.model.layers import base
from deeplab2.model.layers import convolutions


class _ListHolder(base.Layer):

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._blocks = [convolutions.Conv2DSame(2, 1, name=f'b{i}')
                        for i in range(2)]

    def call(self, x):
        for block in self._blocks:
            x = block(x)
        return x


def test_listed_layers_round_trip_through_a_checkpoint(tmp_path):
    x = tf.random.normal([1, 4, 4, 2])
    saved = _ListHolder()
    saved(x)
    path = tf.train.Checkpoint(encoder=saved).save(str(tmp_path / 'ckpt'))
    keys = {name for name, _ in tf.train.list_variables(path)}
    assert 'encoder/_blocks/1/_conv/_kernel/.ATTRIBUTES/VARIABLE_VALUE' in keys
    restored = _ListHolder()
    restored(x)
    tf.train.Checkpoint(encoder=restored).restore(path).assert_consumed()
    np.testing.assert_array_equal(restored(x).numpy(), saved(x).numpy())
