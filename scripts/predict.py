"""Panoptic predictions on your own images (JPEG/PNG, any size, no labels).

  python scripts/predict.py \
    --config_file=configs/cityscapes/panoptic_deeplab/resnet50_os32.textproto \
    --checkpoint_path=/ckpt/resnet50_os32_cityscapes.tar.gz \
    --input='/photos/*.jpg' --output_dir=/tmp/predictions

or `--model=/exports/resnet50` (a SavedModel folder), `--model=m.tflite`
(run by LiteRT) or `--model=m.onnx` (run by ONNX Runtime) instead of
`--checkpoint_path`: the runtime is picked by the file type, and a .tflite
or .onnx export takes images of the size it was exported at. Writes
`<name>_panoptic.png`, `<name>_overlay.jpg` and `<name>_segments.json` per
image (see deeplab2/predict.py); a semantic-only model or dataset gets
`<name>_semantic.png` (class eval ids, 8 or 16 bit) instead of the panoptic
PNG. Exit status 1 when some image could not be
read (the others are written and the skipped files are listed), 2 on a
usage or setup error.
"""

import sys

from absl import app
from absl import flags

from deeplab2 import cli  # first: it quiets TensorFlow's start-up

_CONFIG_FILE = flags.DEFINE_string(
    'config_file', None,
    'Config the model was trained with (label space, class names, and the '
    'network for --checkpoint_path).', required=True)
_CONFIG_OVERRIDE = flags.DEFINE_multi_string(
    'config_override', [], 'dotted.field.path=value overrides.')
_CHECKPOINT_PATH = flags.DEFINE_string(
    'checkpoint_path', None, 'Checkpoint prefix, folder or .tar.gz (ours or '
    "DeepLab2's).")
_MODEL = flags.DEFINE_string(
    'model', None, 'An export (scripts/export_model.py) instead of '
    '--checkpoint_path: a SavedModel folder, a .tflite or an .onnx file.')
_SAVED_MODEL = flags.DEFINE_string(
    'saved_model', None, 'Same as --model (kept for older command lines).')
_PRECISION = flags.DEFINE_enum(
    'precision', None, ['float32', 'bfloat16'],
    'With --checkpoint_path: compute in float32 (default) or bfloat16 '
    '(fast on CPUs with avx512_bf16/amx_bf16; see '
    'deeplab2/model/precision.py). An export keeps its own.')
_INPUT = flags.DEFINE_string(
    'input', None, 'Image glob (quote it; ** recurses) or a folder of images.',
    required=True)
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Output folder.',
                                  required=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    exported = [value for value in (_MODEL.value, _SAVED_MODEL.value)
                if value]
    if len(exported) + bool(_CHECKPOINT_PATH.value) != 1:
        raise app.UsageError(
            'Give exactly one of --checkpoint_path and --model.')
    # Imported here, not at the top: TensorFlow loads in cli.run, quietly,
    # once the flags are parsed (so --help does not load it). Bad paths,
    # configs, checkpoints, an unwritable output folder raise errors naming
    # the culprit, which cli.run prints (status 2); files already written
    # stay.
    from deeplab2 import predict
    result = predict.run(
        _CONFIG_FILE.value, _INPUT.value, _OUTPUT_DIR.value,
        checkpoint_path=_CHECKPOINT_PATH.value,
        exported=exported[0] if exported else None,
        config_overrides=_CONFIG_OVERRIDE.value,
        precision=_PRECISION.value)
    print(f'Wrote predictions for {_count(result.written, "image")} to '
          f'{_OUTPUT_DIR.value}', file=sys.stderr)
    if result.skipped:
        print(f'Skipped {_count(result.skipped, "unreadable image")}:',
              file=sys.stderr)
        for _, reason in result.skipped:
            print(f'  {reason}', file=sys.stderr)
        return 1
    return 0


def _count(items, noun: str) -> str:
    return f'{len(items)} {noun}' + ('' if len(items) == 1 else 's')


if __name__ == '__main__':
    cli.run(main)
