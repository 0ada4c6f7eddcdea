"""Benchmarks, printed (and optionally written) as JSON.

  python scripts/benchmark.py \
    --config_file=configs/cityscapes/panoptic_deeplab/mobilenet_v3_small_os16.textproto \
    --config_file=configs/cityscapes/panoptic_deeplab/resnet50_os32.textproto \
    --height=513 --width=1025 --runs=5 --warmup=2 --output=bench.json
"""

import json
import sys

from absl import app
from absl import flags

from deeplab2 import benchmark

_CONFIG_FILES = flags.DEFINE_multi_string(
    'config_file', None, 'Experiment config(s) to benchmark.', required=True)
_HEIGHT = flags.DEFINE_integer('height', 513, 'Input height.')
_WIDTH = flags.DEFINE_integer('width', 1025, 'Input width.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 1, 'Batch size.')
_RUNS = flags.DEFINE_integer('runs', 5, 'Timed runs (the median is reported).')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed runs first.')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the JSON here.')


def main(argv):
    del argv
    results = [benchmark.network_forward(
        path, _HEIGHT.value, _WIDTH.value, batch_size=_BATCH_SIZE.value,
        runs=_RUNS.value, warmup=_WARMUP.value)
        for path in _CONFIG_FILES.value]
    text = json.dumps({'network_forward': results}, indent=2)
    print(text)
    if _OUTPUT.value:
        with open(_OUTPUT.value, 'w') as f:
            f.write(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(app.run(main))
