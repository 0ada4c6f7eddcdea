r"""Convert your own labelled images to records and a dataset.json.

COCO-panoptic annotations (any categories, any ids):

  python scripts/build_dataset.py --format=coco_panoptic --split=train \
    --image_dir=data/images --panoptic_dir=data/panoptic_train \
    --panoptic_json=data/panoptic_train.json --output_dir=data/records

Folders of label PNGs (class id per pixel; instance ids optional):

  python scripts/build_dataset.py --format=label_folders --split=train \
    --image_dir=data/train/images --semantic_dir=data/train/classes \
    --instance_dir=data/train/instances --classes=data/classes.json \
    --output_dir=data/records

Each run converts one split and adds it to <output_dir>/dataset.json, the
file a config names as its dataset. The formats, the classes file and the
label rules are described in deeplab2/data/coco_panoptic_dataset.py,
label_folders.py and dataset_conversion.py. Rerunning after an
interruption keeps the shards already written.
"""

from absl import flags

from deeplab2 import cli  # first: it quiets TensorFlow's start-up
from deeplab2.data import conversion_flags

FORMATS = ('coco_panoptic', 'label_folders')
# The input flags of each format: required ones, then optional ones.
_INPUTS = {
    'coco_panoptic': (('image_dir', 'panoptic_dir', 'panoptic_json'), ()),
    'label_folders': (('image_dir', 'semantic_dir', 'classes'),
                      ('instance_dir',)),
}

_FORMAT = flags.DEFINE_enum('format', None, FORMATS,
                            'The input format.', required=True)
_SPLIT = flags.DEFINE_string(
    'split', None, 'Name of the split (shard names, dataset.json key).',
    required=True)
_IMAGE_DIR = flags.DEFINE_string('image_dir', None,
                                 'Folder of the images (JPEG or PNG).')
_PANOPTIC_DIR = flags.DEFINE_string(
    'panoptic_dir', None, 'coco_panoptic: folder of the segment-id PNGs.')
_PANOPTIC_JSON = flags.DEFINE_string(
    'panoptic_json', None,
    'coco_panoptic: the json of images, annotations and categories.')
_SEMANTIC_DIR = flags.DEFINE_string(
    'semantic_dir', None, 'label_folders: one class-id PNG per image.')
_INSTANCE_DIR = flags.DEFINE_string(
    'instance_dir', None, 'label_folders: one instance-id PNG per image '
    '(0 = none); without it the dataset is semantic-only.')
_CLASSES = flags.DEFINE_string(
    'classes', None, 'label_folders: JSON file {"classes": [{"name", "id", '
    '"thing", "color"}, ...], "ignore_id": 255}.')
_DATASET_NAME = flags.DEFINE_string(
    'dataset_name', None, 'Name in dataset.json; default: the existing '
    'one, else the output folder\'s name.')
_LABEL_DIVISOR = flags.DEFINE_integer(
    'label_divisor', None, 'Panoptic label divisor; default: that of an '
    'existing dataset.json, else 256, or 1000 when an image has 256 or more '
    'instances of one class.', lower_bound=2)
_OUTPUT_DIR, _NUM_SHARDS, _NUM_WORKERS = conversion_flags.define_output_flags(
    num_shards=10, num_shards_help='Shards per split.')
_TREAT_CROWD_AS_IGNORE = conversion_flags.define_crowd_flag(
    'Crowd regions (coco_panoptic: iscrowd segments; label_folders: thing '
    'pixels of instance 0) become void instead of instance 0 of their '
    'class.')
flags.adopt_module_key_flags(conversion_flags)  # --help lists them here.


def _check_inputs(format_name: str) -> None:
    """Every input flag the format needs is given, and none it ignores."""
    required, optional = _INPUTS[format_name]
    for name in required:
        if not flags.FLAGS[name].value:
            raise ValueError(f'--format={format_name} needs --{name}.')
    others = {name for inputs in _INPUTS.values() for group in inputs
              for name in group} - set(required) - set(optional)
    for name in sorted(others):
        if flags.FLAGS[name].value:
            raise ValueError(
                f'--{name} is not an input of --format={format_name}.')


def main(argv):
    del argv
    _check_inputs(_FORMAT.value)
    options = dict(split=_SPLIT.value, output_dir=_OUTPUT_DIR.value,
                   treat_crowd_as_ignore=_TREAT_CROWD_AS_IGNORE.value,
                   num_shards=_NUM_SHARDS.value,
                   num_workers=_NUM_WORKERS.value,
                   dataset_name=_DATASET_NAME.value,
                   label_divisor=_LABEL_DIVISOR.value)
    # Imported here, not at the top: worker processes re-import this script,
    # and they should not pay for loading TensorFlow.
    if _FORMAT.value == 'coco_panoptic':
        from deeplab2.data import coco_panoptic_dataset
        shard_paths, spec_path = coco_panoptic_dataset.convert(
            _IMAGE_DIR.value, _PANOPTIC_DIR.value, _PANOPTIC_JSON.value,
            **options)
    else:
        from deeplab2.data import label_folders
        shard_paths, spec_path = label_folders.convert(
            _IMAGE_DIR.value, _SEMANTIC_DIR.value, _CLASSES.value,
            instance_dir=_INSTANCE_DIR.value, **options)
    print(f'{_SPLIT.value}: {len(shard_paths)} shards in {_OUTPUT_DIR.value}; '
          f'dataset spec {spec_path}')
    return 0


if __name__ == '__main__':
    cli.run(main)
