"""PQ, mIoU and AP of an exported model on the config's eval dataset.

  python scripts/evaluate_export.py \
    --config_file=configs/demo/panoptic_deeplab_mobilenet_v3_small_os16.textproto \
    --model=/tmp/exports/demo_int8.tflite

--model is a SavedModel folder, a .tflite file (run by LiteRT) or an .onnx
file (run by ONNX Runtime); a .tflite/.onnx file must have been exported at
the eval crop size. The pipeline, evaluator and metrics are those of
`--mode=eval` (see deeplab2/evaluate_export.py). Prints one JSON object
(the metrics, then each class's under its name) and writes it to
--output_json when given.
"""

import json
import pathlib

from absl import app
from absl import flags

from deeplab2 import cli  # first: it quiets TensorFlow's start-up

_CONFIG_FILE = flags.DEFINE_string(
    'config_file', None, 'Config the model was trained with (its eval '
    'dataset is what is evaluated).', required=True)
_CONFIG_OVERRIDE = flags.DEFINE_multi_string(
    'config_override', [], 'dotted.field.path=value overrides.')
_MODEL = flags.DEFINE_string(
    'model', None, 'SavedModel folder, .tflite or .onnx file '
    '(scripts/export_model.py).', required=True)
_NUM_THREADS = flags.DEFINE_integer(
    'num_threads', None, 'CPU threads of LiteRT / ONNX Runtime (default: '
    'the runtime\'s).')
_EVAL_STEPS = flags.DEFINE_integer(
    'eval_steps', None, 'Batches to evaluate (default: the config\'s '
    'evaluator_options.eval_steps; -1: all).')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None,
                                   'Also write the results here.')


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    from deeplab2 import evaluate_export  # TensorFlow loads here
    results = evaluate_export.evaluate_export(
        _CONFIG_FILE.value, _MODEL.value, _CONFIG_OVERRIDE.value,
        num_threads=_NUM_THREADS.value, eval_steps=_EVAL_STEPS.value)
    text = json.dumps(results, indent=1)
    print(text)
    if _OUTPUT_JSON.value:
        from deeplab2 import files
        pathlib.Path(_OUTPUT_JSON.value).parent.mkdir(parents=True,
                                                      exist_ok=True)
        files.write_atomically(
            _OUTPUT_JSON.value,
            lambda path: pathlib.Path(path).write_text(text + '\n'))
    return 0


if __name__ == '__main__':
    cli.run(main)
