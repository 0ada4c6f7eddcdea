"""Convert COCO panoptic to sharded TFRecords that DeepLab2 and we both read.

  python scripts/build_coco_data.py \
    --coco_root=/data/coco --output_dir=/data/coco/tfrecord

Expects <coco_root>/{train,val}2017/*.jpg and
<coco_root>/annotations/panoptic_{train,val}2017{.json,/}. Rerunning after
an interruption keeps the shards already written.
"""

from absl import flags

from deeplab2 import cli  # first: it quiets TensorFlow's start-up

_COCO_ROOT = flags.DEFINE_string(
    'coco_root', None, 'Folder holding <split>2017/ and annotations/.',
    required=True)
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None,
                                  'Where to write the shards.', required=True)
_TREAT_CROWD_AS_IGNORE = flags.DEFINE_boolean(
    'treat_crowd_as_ignore', True, 'Crowd regions become void (0).')
_NUM_SHARDS = flags.DEFINE_integer('num_shards', 1000,
                                   'Shards per split (DeepLab2: 1000).')
_SPLITS = flags.DEFINE_list('splits', ['train', 'val'],
                            'Splits to convert (train, val, test).')
_NUM_WORKERS = flags.DEFINE_integer(
    'num_workers', None, 'Worker processes; default: one per CPU.')


def main(argv):
    del argv
    # Imported here, not at the top: worker processes re-import this script,
    # and they should not pay for loading TensorFlow.
    from deeplab2.data import coco
    shard_paths = coco.convert_coco(
        _COCO_ROOT.value, _OUTPUT_DIR.value, splits=_SPLITS.value,
        treat_crowd_as_ignore=_TREAT_CROWD_AS_IGNORE.value,
        num_shards=_NUM_SHARDS.value, num_workers=_NUM_WORKERS.value)
    for split, paths in shard_paths.items():
        print(f'{split}: {len(paths)} shards in {_OUTPUT_DIR.value}')
    return 0


if __name__ == '__main__':
    cli.run(main)
