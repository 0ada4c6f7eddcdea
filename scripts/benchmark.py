"""Benchmarks, printed (and optionally written) as JSON. Every figure is a
median over --runs timed runs after --warmup untimed ones.

  # Network forward (no post-processing) and build time:
  python scripts/benchmark.py network \
    --config_file=configs/cityscapes/panoptic_deeplab/mobilenet_v3_small_os16.textproto \
    --config_file=configs/cityscapes/panoptic_deeplab/resnet50_os32.textproto \
    --height=513 --width=1025
  # Post-processing of a synthetic 1025x2049 prediction, batch 1 and 4:
  python scripts/benchmark.py postprocess --batch_sizes=1,4
  # Input pipeline throughput and peak RSS, training (without and with
  # DeepLab2's AutoAugment policy) and eval, on synthetic 1024x2048 PNG
  # examples (batch 2, crop 1025x2049, scale 0.5-2.0, flip):
  python scripts/benchmark.py input --batch_sizes=2
  # Training step time (batch 1, crop 257x513 by default):
  python scripts/benchmark.py train --config_file=... --config_file=...
  # PQ + mIoU over 50 synthetic 1024x2048 predictions, ours against
  # cityscapesscripts' panoptic evaluator on the same files:
  python scripts/benchmark.py eval --num_images=50
  # Exported SavedModel latency (network + post-processing), random weights,
  # 1x1025x2049 by default:
  python scripts/benchmark.py serve \
    --config_file=configs/cityscapes/panoptic_deeplab/mobilenet_v3_small_os16.textproto \
    --config_file=configs/cityscapes/panoptic_deeplab/resnet50_os32.textproto
"""

import json
import sys
import tempfile

from absl import app
from absl import flags

from deeplab2 import benchmark
from deeplab2.evaluation import benchmark as eval_benchmark

_DEFAULT_CONFIG = 'configs/cityscapes/panoptic_deeplab/resnet50_os32.textproto'

_CONFIG_FILES = flags.DEFINE_multi_string(
    'config_file', [_DEFAULT_CONFIG], 'Experiment config(s) to benchmark.')
_HEIGHT = flags.DEFINE_integer('height', None,
                               'Input height (network: 513, postprocess: '
                               '1025).')
_WIDTH = flags.DEFINE_integer('width', None, 'Input width (1025 / 2049).')
_BATCH_SIZES = flags.DEFINE_list('batch_sizes', ['1'], 'Batch sizes.')
_RUNS = flags.DEFINE_integer('runs', 7, 'Timed runs (the median is reported).')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed runs first.')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the JSON here.')
_NUM_IMAGES = flags.DEFINE_integer('num_images', 50,
                                   'eval: number of synthetic predictions.')

# The policy of DeepLab2's configs that use AutoAugment.
_AUTOAUGMENT_POLICY = 'simple_classification_policy_magnitude_scale_0.2'

_BENCHMARKS = ('network', 'postprocess', 'input', 'train', 'eval', 'serve')


def main(argv):
    if len(argv) != 2 or argv[1] not in _BENCHMARKS:
        raise app.UsageError(f'Name one benchmark: {", ".join(_BENCHMARKS)}')
    batch_sizes = [int(size) for size in _BATCH_SIZES.value]
    if argv[1] == 'network':
        results = [benchmark.network_forward(
            path, _HEIGHT.value or 513, _WIDTH.value or 1025,
            batch_size=size, runs=_RUNS.value, warmup=_WARMUP.value)
            for path in _CONFIG_FILES.value for size in batch_sizes]
    elif argv[1] == 'train':
        results = [benchmark.train_step(
            path, _HEIGHT.value or 257, _WIDTH.value or 513, batch_size=size,
            runs=_RUNS.value, warmup=_WARMUP.value)
            for path in _CONFIG_FILES.value for size in batch_sizes]
    elif argv[1] == 'eval':
        with tempfile.TemporaryDirectory() as folder:
            results = [eval_benchmark.eval_speed(
                folder, _NUM_IMAGES.value, _HEIGHT.value or 1024,
                _WIDTH.value or 2048, runs=_RUNS.value)]
    elif argv[1] == 'serve':
        results = [benchmark.serve_latency(
            path, _HEIGHT.value or 1025, _WIDTH.value or 2049,
            batch_size=size, runs=_RUNS.value, warmup=_WARMUP.value)
            for path in _CONFIG_FILES.value for size in batch_sizes]
    elif argv[1] == 'input':
        with tempfile.TemporaryDirectory() as folder:
            pattern = benchmark.write_synthetic_tfrecords(folder)
            modes = [(True, ''), (True, _AUTOAUGMENT_POLICY), (False, '')]
            results = [benchmark.input_pipeline_throughput(
                pattern, is_training, batch_size=size, batches=_RUNS.value * 3,
                warmup=_WARMUP.value, autoaugment_policy=policy)
                for is_training, policy in modes for size in batch_sizes]
    else:
        results = [result for path in _CONFIG_FILES.value
                   for result in benchmark.postprocess(
                       path, _HEIGHT.value or 1025, _WIDTH.value or 2049,
                       batch_sizes=batch_sizes, runs=_RUNS.value,
                       warmup=_WARMUP.value)]
    text = json.dumps({argv[1]: results}, indent=2)
    print(text)
    if _OUTPUT.value:
        with open(_OUTPUT.value, 'w') as f:
            f.write(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(app.run(main))
