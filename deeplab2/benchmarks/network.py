"""Network-only inference time: the model's call under tf.function
(encoder, decoder, heads, upsampling; no post-processing)."""

import time

import tensorflow as tf

from deeplab2 import config as config_lib
from deeplab2.benchmarks import timing
from deeplab2.model import builder


def network_forward(config_path: str, height: int, width: int,
                    batch_size: int = 1, runs: int = 5,
                    warmup: int = 2, precision: str = 'float32') -> dict:
    """{'config', 'input_shape', 'precision', 'build_s', 'parameters',
    'device', 'forward': timing.median_seconds} on a random image batch;
    the network computes in `precision` (model/precision.py)."""
    config = config_lib.load_config(config_path)
    start = time.perf_counter()
    model = builder.build_model(config, precision=precision)
    build_s = time.perf_counter() - start
    images = tf.random.uniform([batch_size, height, width, 3], maxval=255.0,
                               seed=0)
    forward = tf.function(lambda x: model(x, training=False))
    result = {'config': str(config_path),
              'input_shape': [batch_size, height, width, 3],
              'precision': precision, 'build_s': build_s,
              'parameters': int(sum(v.numpy().size
                                    for v in model.trainable_variables)),
              'device': timing.device_name()}
    result['forward'] = timing.median_seconds(lambda: forward(images), runs,
                                              warmup)
    return result
