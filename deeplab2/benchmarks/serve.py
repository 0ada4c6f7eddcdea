"""Latency of an exported SavedModel's serving_default, end to end and
without post-processing."""

import tempfile
import time

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2 import serving
from deeplab2.benchmarks import timing


def serve_latency(config_path: str, height: int = 1025, width: int = 2049,
                  batch_size: int = 1, runs: int = 5, warmup: int = 2,
                  jit_postprocessing: bool = True) -> dict:
    """{'config', 'input_shape', 'jit_postprocessing', 'device',
    'export_s', 'latency' and 'network_latency' (timing.median_seconds),
    'instances'}.

    `latency` is serving_default (checks, network, post-processing) on a
    random uint8 image, after a round trip through tf.saved_model.save /
    load; `network_latency` the same export without post-processing, so its
    share shows. The model keeps its random initial weights: the network's
    cost does not depend on them, post-processing's does (through the
    number of centers and thing pixels; random weights typically give
    none), so the instance count (of the first image) comes with the time;
    the `postprocess` benchmark times a prediction with ~60 instances.
    """
    from deeplab2 import export
    config = config_lib.load_config(config_path)
    model = export.load_model(config, checkpoint_path=None)
    images = tf.constant(np.random.RandomState(0).randint(
        0, 256, [batch_size, height, width, 3], dtype=np.uint8))
    result = {'config': str(config_path),
              'input_shape': [batch_size, height, width, 3],
              'jit_postprocessing': jit_postprocessing,
              'device': timing.device_name()}
    variants = {'latency': True, 'network_latency': False}
    with tempfile.TemporaryDirectory() as folder:
        for key, with_postprocessing in variants.items():
            options = export.ExportOptions(
                with_postprocessing=with_postprocessing,
                jit_postprocessing=jit_postprocessing)
            start = time.perf_counter()
            path = export.export_model(config, model, f'{folder}/{key}',
                                       options=options)
            if with_postprocessing:
                result['export_s'] = time.perf_counter() - start
            serve = tf.saved_model.load(path).signatures[
                serving.DEFAULT_SIGNATURE]
            result[key] = timing.median_seconds(
                lambda: serve(images=images), runs, warmup)
            if with_postprocessing:
                instance = serve(images=images)[common.PRED_INSTANCE_KEY]
                result['instances'] = int(np.count_nonzero(
                    np.unique(instance[0].numpy())))
    return result
