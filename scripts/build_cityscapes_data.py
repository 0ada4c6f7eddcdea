"""Convert Cityscapes to sharded TFRecords that DeepLab2 and we both read.

  python scripts/build_cityscapes_data.py \
    --cityscapes_root=/data/cityscapes --output_dir=/data/cityscapes/tfrecord

Runs cityscapesscripts' panoptic preparation first when
gtFine/cityscapes_panoptic_<split>_trainId.json is missing. Rerunning after
an interruption keeps the shards already written.
"""

from absl import flags

from deeplab2 import cli  # first: it quiets TensorFlow's start-up
from deeplab2.data import conversion_flags

_FLAGS = conversion_flags.define_flags(
    'cityscapes_root', 'Folder holding leftImg8bit/ and gtFine/.',
    void_label=255000, num_shards=10, num_shards_help='Shards per split.',
    splits=None, splits_help='Splits to convert; default: those of train, '
    'val and test found under leftImg8bit/ (the absent ones are logged).')
_CREATE_PANOPTIC_DATA = flags.DEFINE_boolean(
    'create_panoptic_data', True,
    'Raw int32 panoptic labels; false stores the labelTrainIds PNGs.')
flags.adopt_module_key_flags(conversion_flags)  # --help lists them here.


def main(argv):
    del argv
    # Imported here, not at the top: worker processes re-import this script,
    # and they should not pay for loading TensorFlow.
    from deeplab2.data import cityscapes
    return conversion_flags.run(
        cityscapes.convert_cityscapes, _FLAGS,
        create_panoptic_data=_CREATE_PANOPTIC_DATA.value)


if __name__ == '__main__':
    cli.run(main)
