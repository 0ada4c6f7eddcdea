"""Input pipeline throughput and peak memory, on TFRecords of synthetic
street scenes (scenes.write_tfrecords)."""

import time

from deeplab2 import config as config_lib
from deeplab2.benchmarks import memory
from deeplab2.benchmarks import timing

# The policy of DeepLab2's configs that use AutoAugment.
AUTOAUGMENT_POLICY = 'simple_classification_policy_magnitude_scale_0.2'


def _options(file_pattern, is_training, batch_size, crop, autoaugment_policy):
    options = config_lib.ExperimentOptions().train_dataset_options
    options.dataset = 'cityscapes_panoptic'
    options.file_pattern.append(file_pattern)
    options.batch_size = batch_size
    options.crop_size.extend(crop)
    if is_training:  # Cityscapes' training augmentation.
        augmentations = options.augmentations
        augmentations.min_scale_factor = 0.5
        augmentations.max_scale_factor = 2.0
        augmentations.scale_factor_step_size = 0.1
        augmentations.autoaugment_policy_name = autoaugment_policy
        options.increase_small_instance_weights = True
    return options


def input_pipeline_throughput(file_pattern: str, is_training: bool,
                              batch_size: int = 2, crop=(1025, 2049),
                              batches: int = 20, warmup: int = 3,
                              autoaugment_policy: str = '') -> dict:
    """{'mode', 'autoaugment_policy', 'targets', 'batch_size',
    'crop_size', 'batches', 'images_per_s', 'device', 'peak_rss_bytes'}
    over `batches` batches after `warmup` ones. Eval samples are those the
    evaluator reads, without training targets ('targets': False).

    autoaugment_policy: training only; e.g. AUTOAUGMENT_POLICY.
    """
    from deeplab2.data import input_pipeline
    options = _options(file_pattern, is_training, batch_size, crop,
                       autoaugment_policy)
    memory.reset_peak_rss()
    # Eval samples as the evaluator reads them (input_pipeline.
    # build_eval_dataset): without the training targets.
    dataset = input_pipeline.build_dataset(options, is_training,
                                           with_targets=is_training)
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
            'targets': is_training,
            'batch_size': batch_size, 'crop_size': list(crop),
            'batches': batches, 'images_per_s': batches * batch_size / elapsed,
            'precision': 'float32',  # the images it yields
            'device': timing.device_name(),
            'peak_rss_bytes': memory.peak_rss_bytes()}
