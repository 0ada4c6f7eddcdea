"""Timing of the pieces users care about, reported as JSON by
scripts/benchmark.py. Every figure is the median of several timed runs after
warm-up runs (which absorb tracing and allocation)."""

import os
import statistics
import time
from typing import Callable

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2.model import builder
from deeplab2.model import postprocess as postprocess_lib


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


def synthetic_prediction(height: int = 1025, width: int = 2049,
                         batch_size: int = 1, num_classes: int = 19,
                         num_instances: int = 60, seed: int = 0) -> dict:
    """A deterministic network-output dict with large stuff regions and
    `num_instances` thing blobs (classes 11..18), their Gaussian centers and
    offsets pointing at them: a stand-in for a Cityscapes prediction."""
    rng = np.random.RandomState(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    labels = np.zeros([height, width], np.int32)
    # Stuff: sky, building, vegetation, sidewalk and road bands with a wavy
    # boundary, so every class spans a large area.
    bands = [10, 2, 8, 1, 0]
    wave = (np.sin(cols / 97.0) * height / 30).astype(np.float32)
    edges = np.linspace(0, height, len(bands) + 1)
    for label, top in zip(bands, edges[:-1]):
        labels[rows + wave >= top] = label
    heatmap = np.zeros([height, width], np.float32)
    offsets = np.zeros([height, width, 2], np.float32)
    for _ in range(num_instances):
        center_y, center_x = rng.uniform(0.3, 0.95) * height, rng.uniform(
            0.02, 0.98) * width
        radius_y, radius_x = rng.uniform(15, 60), rng.uniform(15, 90)
        inside = ((rows - center_y) / radius_y) ** 2 + (
            (cols - center_x) / radius_x) ** 2 <= 1
        labels[inside] = rng.randint(11, 19)
        offsets[inside] = np.stack([center_y - rows[inside],
                                    center_x - cols[inside]], -1)
        heatmap = np.maximum(heatmap, np.exp(
            -((rows - center_y) ** 2 + (cols - center_x) ** 2) / 128.0))
    logits = rng.normal(0, 0.5, [height, width, num_classes]).astype(
        np.float32)
    logits[rows.astype(int), cols.astype(int), labels] += 5.0
    probs = tf.nn.softmax(logits).numpy()
    tile = lambda array: np.repeat(array[None], batch_size, axis=0)
    return {common.PRED_SEMANTIC_PROBS_KEY: tf.constant(tile(probs)),
            common.PRED_CENTER_HEATMAP_KEY: tf.constant(tile(heatmap)),
            common.PRED_OFFSET_MAP_KEY: tf.constant(tile(offsets))}


def _rss_bytes(field: str) -> int:
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


def postprocess(config_path: str, height: int = 1025, width: int = 2049,
                batch_sizes=(1, 4), runs: int = 7, warmup: int = 2) -> list:
    """Post-processing time and peak extra memory (RSS above the level with
    the inputs loaded) on synthetic_prediction, per batch size."""
    config = config_lib.load_config(config_path)
    processor = tf.function(postprocess_lib.build_postprocessor(config))
    results = []
    for batch_size in batch_sizes:
        inputs = synthetic_prediction(height, width, batch_size)
        result = {'config': str(config_path), 'input_shape':
                  [batch_size, height, width], 'device': _device_name()}
        # Peak RSS over every call, the first (tracing, XLA compilation)
        # included, above the level with the inputs loaded.
        measured = _reset_peak_rss()
        before = _rss_bytes('VmRSS')
        result['timing'] = median_seconds(lambda: processor(inputs), runs,
                                          warmup)
        if measured:
            result['peak_extra_memory_bytes'] = _rss_bytes('VmHWM') - before
        outputs = processor(inputs)
        result['instances'] = int(tf.reduce_max(
            outputs[common.PRED_INSTANCE_KEY]).numpy())
        results.append(result)
    return results


def write_synthetic_tfrecords(folder: str, num_examples: int = 8,
                              height: int = 1024, width: int = 2048,
                              num_shards: int = 4, seed: int = 0) -> str:
    """Cityscapes-like PNG examples with panoptic labels (stuff bands and
    ~40 thing blobs each) as TFRecord shards; returns their glob pattern."""
    import io
    from PIL import Image
    from deeplab2.data import tfrecord
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(seed)
    writers = [tf.io.TFRecordWriter(
        os.path.join(folder, f'bench-{i:05d}-of-{num_shards:05d}.tfrecord'))
        for i in range(num_shards)]
    rows, cols = np.mgrid[0:height, 0:width]
    for index in range(num_examples):
        semantic = np.minimum(rows * 5 // height, 4) * 2  # stuff bands
        panoptic = semantic.astype(np.int32) * 1000
        for instance in range(1, 41):
            y, x = rng.randint(height // 3, height), rng.randint(width)
            radius = rng.randint(10, 80)
            blob = (rows - y) ** 2 + (cols - x) ** 2 <= radius ** 2
            panoptic[blob] = rng.randint(11, 19) * 1000 + instance
        image = (rng.rand(height, width, 3) * 40 + (panoptic // 1000)[
            ..., None] * 10).astype(np.uint8)
        encoded = io.BytesIO()
        Image.fromarray(image).save(encoded, format='PNG')
        example = tfrecord.encode_example(encoded.getvalue(),
                                          f'synthetic_{index:06d}', 'png',
                                          height, width, panoptic)
        writers[index % num_shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return os.path.join(folder, 'bench-*.tfrecord')


def input_pipeline_throughput(file_pattern: str, is_training: bool,
                              batch_size: int = 2, crop=(1025, 2049),
                              batches: int = 20, warmup: int = 3,
                              autoaugment_policy: str = '') -> dict:
    """Images per second out of the input pipeline, and the peak RSS.

    autoaugment_policy: training only; e.g. DeepLab2's
      'simple_classification_policy_magnitude_scale_0.2'.
    """
    from deeplab2.data import input_pipeline
    options = config_lib.ExperimentOptions().train_dataset_options
    options.dataset = 'cityscapes_panoptic'
    options.file_pattern.append(file_pattern)
    options.batch_size = batch_size
    options.crop_size.extend(crop)
    if is_training:
        augmentations = options.augmentations
        augmentations.min_scale_factor = 0.5
        augmentations.max_scale_factor = 2.0
        augmentations.scale_factor_step_size = 0.1
        augmentations.autoaugment_policy_name = autoaugment_policy
        options.increase_small_instance_weights = True
    _reset_peak_rss()
    dataset = input_pipeline.build_dataset(options, is_training)
    if not is_training:
        dataset = dataset.repeat()
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    elapsed = time.perf_counter() - start
    return {'mode': 'train' if is_training else 'eval',
            'autoaugment_policy': autoaugment_policy if is_training else '',
            'batch_size': batch_size, 'crop_size': list(crop),
            'batches': batches, 'images_per_s': batches * batch_size / elapsed,
            'device': _device_name(),
            'peak_rss_bytes': _rss_bytes('VmHWM')}


def train_step(config_path: str, height: int = 257, width: int = 513,
               batch_size: int = 1, runs: int = 7, warmup: int = 2) -> dict:
    """Time of one training step (forward, loss, backward, optimizer
    update) on a synthetic batch, for the config's model, loss and solver."""
    from deeplab2.data import datasets
    from deeplab2.loss import build_loss
    from deeplab2.trainer import schedules
    from deeplab2.trainer import trainer as trainer_lib
    config = config_lib.load_config(config_path)
    strategy = tf.distribute.get_strategy()
    model = builder.build_model(config)
    optimizer = schedules.build_optimizer(config.trainer_options.solver_options)
    loss = build_loss(config, datasets.get_dataset_descriptor(
        config.train_dataset_options.dataset))
    trainer = trainer_lib.Trainer(strategy, model, loss, optimizer,
                                  batch_size)
    rng = np.random.RandomState(0)
    shape = [batch_size, height, width]
    batch = {
        common.IMAGE: rng.uniform(0, 255, shape + [3]).astype(np.float32),
        common.GT_SEMANTIC_KEY: rng.randint(0, 19, shape).astype(np.int32),
        common.GT_INSTANCE_CENTER_KEY: rng.uniform(0, 1, shape).astype(
            np.float32),
        common.GT_INSTANCE_REGRESSION_KEY: rng.normal(
            0, 10, shape + [2]).astype(np.float32),
        common.SEMANTIC_LOSS_WEIGHT_KEY: np.ones(shape, np.float32),
        common.CENTER_LOSS_WEIGHT_KEY: np.ones(shape, np.float32),
        common.REGRESSION_LOSS_WEIGHT_KEY: np.ones(shape, np.float32),
    }
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    result = {'config': str(config_path), 'input_shape': shape + [3],
              'device': _device_name()}
    result['step'] = median_seconds(lambda: trainer.train(iterator, 1), runs,
                                    warmup)
    return result


def serve_latency(config_path: str, height: int = 1025, width: int = 2049,
                  batch_size: int = 1, runs: int = 5, warmup: int = 2,
                  jit_postprocessing: bool = True) -> dict:
    """Latency of an exported SavedModel's serving_default (checks, network,
    post-processing) on a random uint8 image, after a round trip through
    tf.saved_model.save / load; and of the same export without
    post-processing (`network_latency`), so its share shows.

    The model keeps its random initial weights: the network's cost does not
    depend on them, post-processing's does (through the number of centers
    and thing pixels; random weights typically give none), so the instance
    count is reported with the time; `postprocess` times a prediction with
    60 instances.
    """
    import tempfile
    from deeplab2 import export
    config = config_lib.load_config(config_path)
    model = export.load_model(config, checkpoint_path=None)
    images = tf.constant(np.random.RandomState(0).randint(
        0, 256, [batch_size, height, width, 3], dtype=np.uint8))
    result = {'config': str(config_path),
              'input_shape': [batch_size, height, width, 3],
              'jit_postprocessing': jit_postprocessing,
              'device': _device_name()}
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
                export.DEFAULT_SIGNATURE]
            result[key] = median_seconds(lambda: serve(images=images), runs,
                                         warmup)
            if with_postprocessing:
                result['instances'] = int(tf.reduce_max(serve(
                    images=images)[common.PRED_INSTANCE_KEY]).numpy())
    return result
