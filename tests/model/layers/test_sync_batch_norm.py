"""Synchronized batch norm averages statistics over replicas.

Runs in a child process: splitting the CPU into two logical devices must
happen before TensorFlow initializes them.
"""

import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent('''
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from deeplab2.model.layers.normalization import BatchNormOptions
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    with strategy.scope():
        layer = BatchNormOptions(momentum=0.0, synchronized=SYNC).make()
        layer.build((None, 2, 2, 1))
    # Replica 0 sees ones, replica 1 sees threes: the global mean is 2.
    data = tf.data.Dataset.from_tensor_slices(
        tf.constant([1.0, 3.0])[:, None, None, None] * tf.ones([2, 2, 2, 1])
    ).batch(2)
    batch = next(iter(strategy.experimental_distribute_dataset(data)))
    strategy.run(lambda x: layer(x, training=True), args=(batch,))
    print(float(layer.moving_mean.numpy()[0]))
''')


def _moving_mean(sync: bool) -> float:
    result = subprocess.run(
        [sys.executable, '-c', _SCRIPT.replace('SYNC', str(sync))],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return float(result.stdout.strip().splitlines()[-1])


def test_synchronized_batch_norm_uses_the_global_batch():
    assert _moving_mean(True) == 2.0


def test_unsynchronized_batch_norm_uses_its_replica():
    # Each replica updates with its own mean; the mirrored variable keeps
    # one of them (1 or 3), never the global 2.
    assert _moving_mean(False) in (1.0, 3.0)
