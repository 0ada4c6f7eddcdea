"""Convert Cityscapes to sharded TFRecords that DeepLab2 and we both read.

  python scripts/build_cityscapes_data.py \
    --cityscapes_root=/data/cityscapes --output_dir=/data/cityscapes/tfrecord

Runs cityscapesscripts' panoptic preparation first when
gtFine/cityscapes_panoptic_<split>_trainId.json is missing. Rerunning after
an interruption keeps the shards already written.
"""

from absl import flags

from deeplab2 import cli  # first: it quiets TensorFlow's start-up

_CITYSCAPES_ROOT = flags.DEFINE_string(
    'cityscapes_root', None, 'Folder holding leftImg8bit/ and gtFine/.',
    required=True)
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None,
                                  'Where to write the shards.', required=True)
_CREATE_PANOPTIC_DATA = flags.DEFINE_boolean(
    'create_panoptic_data', True,
    'Raw int32 panoptic labels; false stores the labelTrainIds PNGs.')
_TREAT_CROWD_AS_IGNORE = flags.DEFINE_boolean(
    'treat_crowd_as_ignore', True, 'Crowd regions become void (255000).')
_NUM_SHARDS = flags.DEFINE_integer('num_shards', 10, 'Shards per split.')
_SPLITS = flags.DEFINE_list(
    'splits', None, 'Splits to convert; default: those of train, val and '
    'test found under leftImg8bit/ (the absent ones are logged).')
_NUM_WORKERS = flags.DEFINE_integer(
    'num_workers', None, 'Worker processes; default: one per CPU.')


def main(argv):
    del argv
    # Imported here, not at the top: worker processes re-import this script,
    # and they should not pay for loading TensorFlow.
    from deeplab2.data import cityscapes
    shard_paths = cityscapes.convert_cityscapes(
        _CITYSCAPES_ROOT.value, _OUTPUT_DIR.value, splits=_SPLITS.value,
        create_panoptic_data=_CREATE_PANOPTIC_DATA.value,
        treat_crowd_as_ignore=_TREAT_CROWD_AS_IGNORE.value,
        num_shards=_NUM_SHARDS.value, num_workers=_NUM_WORKERS.value)
    for split, paths in shard_paths.items():
        print(f'{split}: {len(paths)} shards in {_OUTPUT_DIR.value}')
    return 0


if __name__ == '__main__':
    cli.run(main)
