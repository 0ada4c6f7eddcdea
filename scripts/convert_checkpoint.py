"""Convert a DeepLab2 checkpoint into ours (loadable by tf.train.Checkpoint
of `model.checkpoint_items`, no conversion code needed).

  python scripts/convert_checkpoint.py \
    --config_file=configs/cityscapes/panoptic_deeplab/resnet50_os32.textproto \
    --input=/ckpt/resnet50_os32_panoptic_deeplab_cityscapes_trainfine.tar.gz \
    --output=/ckpt/converted/ckpt
"""

from absl import flags

from deeplab2 import cli  # first: it quiets TensorFlow's start-up

_CONFIG_FILE = flags.DEFINE_string('config_file', None,
                                   'Config the checkpoint was trained with.',
                                   required=True)
_CONFIG_OVERRIDE = flags.DEFINE_multi_string(
    'config_override', [], 'dotted.field.path=value overrides.')
_INPUT = flags.DEFINE_string(
    'input', None, 'Checkpoint prefix, folder or .tar.gz.', required=True)
_OUTPUT = flags.DEFINE_string('output', None, 'Output checkpoint prefix.',
                              required=True)


def main(argv):
    del argv
    # Imported here, not at the top: TensorFlow loads in cli.run, quietly,
    # once the flags are parsed (so --help does not load it).
    from deeplab2 import compat
    from deeplab2 import config as config_lib
    config = config_lib.load_config(_CONFIG_FILE.value, _CONFIG_OVERRIDE.value)
    summary = compat.convert_checkpoint(config, _INPUT.value, _OUTPUT.value,
                                        expected=_CONFIG_FILE.value)
    print(summary)
    print(f'Wrote {_OUTPUT.value}')
    return 0


if __name__ == '__main__':
    cli.run(main)
