"""Convert COCO panoptic to sharded TFRecords that DeepLab2 and we both read.

  python scripts/build_coco_data.py \
    --coco_root=/data/coco --output_dir=/data/coco/tfrecord

Expects <coco_root>/{train,val}2017/*.jpg and
<coco_root>/annotations/panoptic_{train,val}2017{.json,/}. Rerunning after
an interruption keeps the shards already written. The records equal those
of DeepLab2's build_coco_data.py, but only the --splits asked for are
written (DeepLab2 also writes test, as 1000 empty shards when test2017/ is
absent; add --splits=train,val,test for the unlabeled test images), and a
PNG segment missing from segments_info, void in both, is logged here.
"""

from absl import flags

from deeplab2 import cli  # first: it quiets TensorFlow's start-up
from deeplab2.data import conversion_flags

_FLAGS = conversion_flags.define_flags(
    'coco_root', 'Folder holding <split>2017/ and annotations/.',
    void_label=0, num_shards=1000,
    num_shards_help='Shards per split (DeepLab2: 1000).',
    splits=['train', 'val'],
    splits_help='Splits to convert (train, val, test).')
flags.adopt_module_key_flags(conversion_flags)  # --help lists them here.


def main(argv):
    del argv
    # Imported here, not at the top: worker processes re-import this script,
    # and they should not pay for loading TensorFlow.
    from deeplab2.data import coco
    return conversion_flags.run(coco.convert_coco, _FLAGS)


if __name__ == '__main__':
    cli.run(main)
