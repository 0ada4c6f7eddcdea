"""The training / evaluation CLI, with DeepLab2's flags.

  python -m deeplab2.trainer.train \
    --config_file=configs/demo/panoptic_deeplab_mobilenet_v3_small_os16.textproto \
    --mode=train_and_eval --model_dir=/tmp/deeplab2_demo

Strategy: --master (a TPU address) -> TPUStrategy; TF_CONFIG with several
workers -> MultiWorkerMirroredStrategy; --num_gpus > 1 -> MirroredStrategy;
--num_gpus 1 -> that GPU; otherwise the CPU.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging

from deeplab2 import cli  # first: it quiets TensorFlow's start-up
from deeplab2.trainer import modes

_CONFIG_FILE = flags.DEFINE_string('config_file', None,
                                   'Experiment config (textproto).',
                                   required=True)
_CONFIG_OVERRIDE = flags.DEFINE_multi_string(
    'config_override', [], 'dotted.field.path=value; may repeat.')
_MODE = flags.DEFINE_enum('mode', 'train', modes.MODES,
                          'What to run (see deeplab2.trainer.modes).')
_MODEL_DIR = flags.DEFINE_string('model_dir', None,
                                 'Checkpoints and summaries go here.',
                                 required=True)
_NUM_GPUS = flags.DEFINE_integer('num_gpus', 0, 'GPUs to train on.')
_MASTER = flags.DEFINE_string('master', None, 'TPU address, for TPUStrategy.')
_MIXED_PRECISION = flags.DEFINE_enum(
    'mixed_precision', None, ['bfloat16', 'float16'],
    'Compute in this type with float32 weights.')
_PRECISION = flags.DEFINE_enum(
    'precision', None, ['float32', 'bfloat16'],
    'Compute precision for every mode (bfloat16: float32 weights, fast on '
    'CPUs with avx512_bf16/amx_bf16 and on TPUs; see '
    'deeplab2/model/precision.py). --mixed_precision=bfloat16 is the same.')
_SEED = flags.DEFINE_integer('seed', None,
                             'Seed for initialization, data order and '
                             'augmentation (reproducible runs).')


def create_strategy(master: str | None, num_gpus: int):
    """The tf.distribute strategy for the flags and TF_CONFIG."""
    import tensorflow as tf
    if master:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(master)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    cluster = json.loads(os.environ.get('TF_CONFIG', '{}')).get('cluster', {})
    if len(cluster.get('worker', [])) + len(cluster.get('chief', [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if num_gpus > 1:
        return tf.distribute.MirroredStrategy(
            [f'/gpu:{i}' for i in range(num_gpus)])
    return tf.distribute.OneDeviceStrategy('/gpu:0' if num_gpus == 1
                                           else '/cpu:0')


def _compute_type(precision: str | None, mixed_precision: str | None) -> str:
    """One compute type from --precision and --mixed_precision (either, or
    both when they agree)."""
    if precision and mixed_precision and precision != mixed_precision:
        raise app.UsageError(
            f'--precision={precision} and --mixed_precision='
            f'{mixed_precision} disagree; give one.')
    return precision or mixed_precision or 'float32'


def main(argv):
    del argv
    # Imported here so --help answers without loading TensorFlow.
    import keras
    from deeplab2 import allocator
    from deeplab2 import config as config_lib
    from deeplab2.trainer import runner
    allocator.keep_large_blocks()
    config = config_lib.load_config(_CONFIG_FILE.value, _CONFIG_OVERRIDE.value)
    if _SEED.value is not None:
        keras.utils.set_random_seed(_SEED.value)
    compute_type = _compute_type(_PRECISION.value, _MIXED_PRECISION.value)
    if compute_type != 'float32':
        keras.mixed_precision.set_global_policy(f'mixed_{compute_type}')
    strategy = create_strategy(_MASTER.value, _NUM_GPUS.value)
    logging.info('Strategy %s with %d replicas.', type(strategy).__name__,
                 strategy.num_replicas_in_sync)
    runner.run(config, _MODE.value, _MODEL_DIR.value, strategy,
               seed=_SEED.value)
    return 0


if __name__ == '__main__':
    cli.run(main)
