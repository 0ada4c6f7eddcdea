"""Latency of the exported model on each runtime, side by side: the
SavedModel in TensorFlow (float32 and bfloat16), TFLite files (float32, float16, int8) in LiteRT
and the ONNX file in ONNX Runtime, all end to end (uint8 image in, panoptic
maps out) at one size, in one process."""

import os
import tempfile
import time

import numpy as np

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2 import serving
from deeplab2.benchmarks import scenes
from deeplab2.benchmarks import timing

# name -> (export format, quantization, network precision); the
# SavedModel first.
RUNTIMES = {
    'saved_model': ('saved_model', None, 'float32'),
    'saved_model_bfloat16': ('saved_model', None, 'bfloat16'),
    'litert_float32': ('tflite', None, 'float32'),
    'litert_float16': ('tflite', 'float16', 'float16 weights'),
    'litert_int8': ('tflite', 'int8', 'int8'),
    'onnxruntime': ('onnx', None, 'float32'),
}
# Synthetic scenes that calibrate the int8 export.
_CALIBRATION_SCENES = 8


def serve_latency(config_path: str, height: int = 1025, width: int = 2049,
                  batch_size: int = 1, runs: int = 5, warmup: int = 2,
                  jit_postprocessing: bool = True,
                  checkpoint_path: str | None = None,
                  runtimes=tuple(RUNTIMES),
                  num_threads: int | None = None) -> dict:
    """{'config', 'checkpoint', 'input_shape', 'jit_postprocessing',
    'device', 'threads', 'runtimes': {name: {'precision' (the network's;
    post-processing is float32 everywhere), 'latency'
    (timing.median_seconds), 'export_s', 'size_bytes', 'instances'}}}, and
    'network_latency' of the float32 SavedModel without post-processing,
    so that its share shows.

    The input is a synthetic street scene (benchmarks.scenes). With random
    weights (no checkpoint_path) post-processing typically finds no
    centers, so its cost is the dense stages only; a checkpoint trained on
    the demo data finds the scene's instances. `instances` (of the first
    image) comes with every time. The TFLite and ONNX files are exported at
    this size; LiteRT and ONNX Runtime run num_threads threads (default:
    every core), TensorFlow its default pools (also every core).
    """
    from deeplab2 import export
    from deeplab2 import runtimes as runtimes_lib
    config = config_lib.load_config(config_path)
    models = {'float32': export.load_model(config, checkpoint_path,
                                           expected=str(config_path),
                                           precision='float32')}
    if any(RUNTIMES[name][2] == 'bfloat16' for name in runtimes):
        # The same weights, computing in bfloat16.
        models['bfloat16'] = export.load_model(config, None,
                                               precision='bfloat16')
        models['bfloat16'].set_weights(models['float32'].get_weights())
    image = scenes.scene(0, height, width)[0]
    images = np.repeat(image[None], batch_size, axis=0)
    threads = num_threads or os.cpu_count()
    result = {'config': str(config_path), 'checkpoint': checkpoint_path,
              'input_shape': [batch_size, height, width, 3],
              'jit_postprocessing': jit_postprocessing,
              'device': timing.device_name(),
              'threads': {'tensorflow': 'default (every core)',
                          'litert': threads, 'onnxruntime': threads},
              'runtimes': {}}
    calibration = [scenes.scene(seed, height, width)[0]
                   for seed in range(1, 1 + _CALIBRATION_SCENES)]
    with tempfile.TemporaryDirectory() as folder:
        for name in runtimes:
            export_format, quantize, precision = RUNTIMES[name]
            options = export.ExportOptions(
                input_size=(height, width), quantize=quantize,
                jit_postprocessing=jit_postprocessing)
            suffix = {'tflite': '.tflite', 'onnx': '.onnx'}.get(
                export_format, '')
            start = time.perf_counter()
            path = export.export_model(
                config, models.get(precision, models['float32']),
                os.path.join(folder, name + suffix),
                export_format, options,
                calibration_images=calibration if quantize == 'int8' else None)
            export_s = time.perf_counter() - start
            run = _runner(path, export_format, threads, runtimes_lib)
            entry = {'precision': precision,
                     'latency': timing.median_seconds(
                lambda: run(images), runs, warmup),
                'export_s': export_s, 'size_bytes': _size_bytes(path)}
            entry['instances'] = int(np.count_nonzero(np.unique(
                run(images)[common.PRED_INSTANCE_KEY][0])))
            result['runtimes'][name] = entry
        network = export.export_model(
            config, models['float32'], os.path.join(folder, 'network_only'),
            options=export.ExportOptions(with_postprocessing=False))
        run = _runner(network, 'saved_model', threads, runtimes_lib)
        result['network_latency'] = timing.median_seconds(
            lambda: run(images), runs, warmup)
    return result


def _runner(path, export_format, threads, runtimes_lib):
    """images -> {key: numpy} for an export, run as a user runs it."""
    if export_format != 'saved_model':
        return runtimes_lib.load(path, num_threads=threads)
    import tensorflow as tf
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures[serving.DEFAULT_SIGNATURE]

    def run(images):
        return {key: value.numpy() for key, value in serve(
            **{serving.IMAGES_INPUT: tf.constant(images)}).items()}

    run.loaded = loaded  # its signatures need it alive
    return run


def _size_bytes(path) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)
