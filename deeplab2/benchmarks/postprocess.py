"""Post-processing time and memory on the outputs a perfect model would
give for a synthetic Cityscapes-sized street scene with ~60 things, or
for scenes of a given instance count (the cost by instance count)."""

import itertools

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2.benchmarks import memory
from deeplab2.benchmarks import scenes
from deeplab2.benchmarks import timing
from deeplab2.model import postprocess as postprocess_lib

NUM_THINGS = 60


def scene_prediction(height: int, width: int, batch_size: int = 1,
                     num_things: int = NUM_THINGS, seed: int = 0,
                     num_instances: int | None = None) -> tuple[dict, int]:
    """(network-output dict of tensors, the batch of one scene repeated;
    number of thing segments in the scene, what post-processing finds).

    The scene is a street with `num_things` things drawn (some hide
    others), or, given `num_instances`, exactly that many on a grid
    (scenes.crowded_scene).
    """
    if num_instances is None:
        _, panoptic = scenes.scene(seed, height, width, num_things)
    else:
        panoptic = scenes.crowded_scene(height, width, num_instances, seed)
    outputs = scenes.network_outputs(panoptic)
    keys = {'semantic_probs': common.PRED_SEMANTIC_PROBS_KEY,
            'center_heatmap': common.PRED_CENTER_HEATMAP_KEY,
            'offsets': common.PRED_OFFSET_MAP_KEY}
    batch = {keys[name]: tf.constant(np.repeat(array[None], batch_size, 0))
             for name, array in outputs.items()}
    return batch, len(scenes.thing_segments(panoptic))


def count_instances(outputs: dict) -> int:
    """Distinct instances in the first image of a post-processed batch."""
    instance = outputs[common.PRED_INSTANCE_KEY][0].numpy()
    return int(np.count_nonzero(np.unique(instance)))


def postprocess(config_path: str, height: int = 1025, width: int = 2049,
                batch_sizes=(1, 4), runs: int = 7, warmup: int = 2,
                num_instances=None) -> list:
    """Per scene and batch size: {'config', 'input_shape', 'device',
    'precision' (float32), 'scene' ('street', ~60 things, or 'crowded':
    the grid scenes of `num_instances`, one per count), 'timing':
    timing.median_seconds, 'peak_extra_memory_bytes' (peak RSS over every
    call, the first, tracing and XLA compilation, included, above the
    level with the inputs loaded; absent where the peak cannot be reset),
    'instances' (found in the first image)}."""
    config = config_lib.load_config(config_path)
    processor = tf.function(postprocess_lib.build_postprocessor(config))
    results = []
    for count, batch_size in itertools.product(num_instances or [None],
                                               batch_sizes):
        inputs, _ = scene_prediction(height, width, batch_size,
                                     num_instances=count)
        result = {'config': str(config_path),
                  'input_shape': [batch_size, height, width],
                  'device': timing.device_name(),
                  # Post-processing always computes in float32.
                  'precision': 'float32',
                  'scene': 'street' if count is None else 'crowded'}
        measured = memory.reset_peak_rss()
        before = memory.rss_bytes()
        result['timing'] = timing.median_seconds(lambda: processor(inputs),
                                                 runs, warmup)
        if measured:
            result['peak_extra_memory_bytes'] = (memory.peak_rss_bytes()
                                                 - before)
        result['instances'] = count_instances(processor(inputs))
        results.append(result)
    return results
