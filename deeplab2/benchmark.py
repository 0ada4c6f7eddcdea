"""Timing of the pieces users care about, reported as JSON by
scripts/benchmark.py. Every figure is the median of several timed runs after
warm-up runs (which absorb tracing and allocation)."""

import statistics
import time
from typing import Callable

import tensorflow as tf

from deeplab2 import config as config_lib
from deeplab2.model import builder


def median_seconds(fn: Callable[[], object], runs: int, warmup: int) -> dict:
    """Calls fn `warmup` times untimed, then `runs` times timed."""
    for _ in range(warmup):
        _block(fn())
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return {'median_s': statistics.median(times), 'min_s': min(times),
            'max_s': max(times), 'runs': runs, 'warmup': warmup}


def _block(result):
    # Tensors are computed asynchronously on accelerators: wait for them.
    for tensor in tf.nest.flatten(result):
        if isinstance(tensor, tf.Tensor):
            tensor.numpy()


def network_forward(config_path: str, height: int, width: int,
                    batch_size: int = 1, runs: int = 5,
                    warmup: int = 2) -> dict:
    """Build time and network-only inference time (the model's call under
    tf.function: encoder, decoder, heads, upsampling; no post-processing)."""
    config = config_lib.load_config(config_path)
    start = time.perf_counter()
    model = builder.build_model(config)
    build_s = time.perf_counter() - start
    images = tf.random.uniform([batch_size, height, width, 3], maxval=255.0,
                               seed=0)
    forward = tf.function(lambda x: model(x, training=False))
    result = {'config': str(config_path),
              'input_shape': [batch_size, height, width, 3],
              'build_s': build_s,
              'parameters': int(sum(v.numpy().size
                                    for v in model.trainable_variables)),
              'device': _device_name()}
    result['forward'] = median_seconds(lambda: forward(images), runs, warmup)
    return result


def _device_name() -> str:
    gpus = tf.config.list_logical_devices('GPU')
    return gpus[0].name if gpus else 'CPU'
