"""Benchmarks, printed (and optionally written) as JSON. Every figure is a
median over --runs timed runs after --warmup untimed ones and says the
precision it was computed in; `host` names the CPU and its bfloat16 flags
(deeplab2/host.py): compare figures from one host only.

  # Network forward (no post-processing) and build time:
  python scripts/benchmark.py network \
    --config_file=configs/cityscapes/panoptic_deeplab/mobilenet_v3_small_os16.textproto \
    --config_file=configs/cityscapes/panoptic_deeplab/resnet50_os32.textproto \
    --height=513 --width=1025 --precision=float32,bfloat16
  # Post-processing of the outputs a perfect model would give for a
  # synthetic 1025x2049 street scene (~60 things), batch 1 and 4; and on
  # scenes of exactly 60, 200 and 400 instances:
  python scripts/benchmark.py postprocess --batch_sizes=1,4
  python scripts/benchmark.py postprocess --num_instances=60,200,400
  # Input pipeline throughput and peak RSS, training (without and with
  # DeepLab2's AutoAugment policy) and eval, on synthetic 1024x2048 street
  # scenes as PNG examples (batch 2, crop 1025x2049, scale 0.5-2.0, flip):
  python scripts/benchmark.py input --batch_sizes=2
  # Training step time (batch 1, crop 257x513 by default):
  python scripts/benchmark.py train --config_file=... --config_file=...
  # PQ + mIoU over 50 flawed predictions of synthetic 1024x2048 street
  # scenes, ours against cityscapesscripts' panoptic evaluator on the same
  # files:
  python scripts/benchmark.py eval --num_images=50
  # Exported model latency end to end (uint8 image -> panoptic maps) on
  # each runtime: SavedModel (float32, bfloat16), LiteRT
  # float32/float16/int8, ONNX Runtime;
  # a synthetic street scene, 1x1025x2049 by default, random weights
  # unless --checkpoint_path:
  python scripts/benchmark.py serve \
    --config_file=configs/demo/panoptic_deeplab_mobilenet_v3_small_os16.textproto \
    --checkpoint_path=/tmp/deeplab2_demo --height=513 --width=1025
"""

import json
import sys
import tempfile

from absl import app
from absl import flags

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
_CHECKPOINT_PATH = flags.DEFINE_string(
    'checkpoint_path', None, 'serve: weights to export (default: random).')
_RUNTIMES = flags.DEFINE_list(
    'runtimes', None, 'serve: which of saved_model, saved_model_bfloat16, '
    'litert_float32, litert_float16, litert_int8, onnxruntime (default: '
    'all).')
_NUM_THREADS = flags.DEFINE_integer(
    'num_threads', None, 'serve: LiteRT / ONNX Runtime threads (default: '
    'every core).')
_PRECISIONS = flags.DEFINE_list(
    'precision', ['float32'], 'network, train: one figure per compute '
    'precision, float32 and/or bfloat16 (deeplab2/model/precision.py).')
_NUM_INSTANCES = flags.DEFINE_list(
    'num_instances', None, 'postprocess: one figure per count, each on a '
    'scene of exactly that many instances (default: the street scene, '
    '~60 things).')
_NUM_IMAGES = flags.DEFINE_integer('num_images', 50,
                                   'eval: number of synthetic predictions.')

# Each benchmark module is imported by its runner alone, so that `eval`
# (NumPy only) does not load TensorFlow.


def _batch_sizes():
    return [int(size) for size in _BATCH_SIZES.value]


def _size(height, width):
    return _HEIGHT.value or height, _WIDTH.value or width


def _precisions():
    from deeplab2.model import precision
    try:
        return [precision.check(name) for name in _PRECISIONS.value]
    except ValueError as error:
        raise app.UsageError(f'--precision: {error}')


def _per_config_batch_size_and_precision(benchmark, height, width):
    """benchmark(config, height, width, batch_size=, runs=, warmup=,
    precision=) for every --config_file, --batch_sizes and --precision."""
    return [benchmark(path, *_size(height, width), batch_size=size,
                      runs=_RUNS.value, warmup=_WARMUP.value,
                      precision=precision)
            for path in _CONFIG_FILES.value for size in _batch_sizes()
            for precision in _precisions()]


def _network():
    from deeplab2.benchmarks import network
    return _per_config_batch_size_and_precision(network.network_forward,
                                                513, 1025)


def _postprocess():
    from deeplab2.benchmarks import postprocess
    return [result for path in _CONFIG_FILES.value
            for result in postprocess.postprocess(
                path, *_size(1025, 2049), batch_sizes=_batch_sizes(),
                runs=_RUNS.value, warmup=_WARMUP.value,
                num_instances=[int(n) for n in _NUM_INSTANCES.value or []])]


def _input():
    from deeplab2.benchmarks import input_pipeline
    from deeplab2.benchmarks import scenes
    modes = [(True, ''), (True, input_pipeline.AUTOAUGMENT_POLICY),
             (False, '')]
    with tempfile.TemporaryDirectory() as folder:
        pattern = scenes.write_tfrecords(folder)
        return [input_pipeline.input_pipeline_throughput(
            pattern, is_training, batch_size=size, batches=_RUNS.value * 3,
            warmup=_WARMUP.value, autoaugment_policy=policy)
            for is_training, policy in modes for size in _batch_sizes()]


def _train():
    from deeplab2.benchmarks import train
    return _per_config_batch_size_and_precision(train.train_step, 257, 513)


def _eval():
    from deeplab2.benchmarks import evaluation
    with tempfile.TemporaryDirectory() as folder:
        return [evaluation.eval_speed(folder, _NUM_IMAGES.value,
                                      *_size(1024, 2048), runs=_RUNS.value)]


def _serve():
    from deeplab2.benchmarks import serve
    runtimes = _RUNTIMES.value or list(serve.RUNTIMES)
    unknown = sorted(set(runtimes) - set(serve.RUNTIMES))
    if unknown:
        raise app.UsageError(f'Unknown --runtimes {unknown}; choose from '
                             f'{", ".join(serve.RUNTIMES)}.')
    return [serve.serve_latency(
        path, *_size(1025, 2049), batch_size=size, runs=_RUNS.value,
        warmup=_WARMUP.value, checkpoint_path=_CHECKPOINT_PATH.value,
        runtimes=runtimes, num_threads=_NUM_THREADS.value)
        for path in _CONFIG_FILES.value for size in _batch_sizes()]


BENCHMARKS = {'network': _network, 'postprocess': _postprocess,
              'input': _input, 'train': _train, 'eval': _eval,
              'serve': _serve}


def main(argv):
    if len(argv) != 2 or argv[1] not in BENCHMARKS:
        raise app.UsageError(f'Name one benchmark: {", ".join(BENCHMARKS)}')
    from deeplab2 import allocator
    from deeplab2 import host
    # As the trainer and evaluator run (deeplab2/allocator.py).
    allocator.keep_large_blocks()
    text = json.dumps({argv[1]: BENCHMARKS[argv[1]](),
                       'host': host.describe()}, indent=2)
    print(text)
    if _OUTPUT.value:
        with open(_OUTPUT.value, 'w') as f:
            f.write(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(app.run(main))
