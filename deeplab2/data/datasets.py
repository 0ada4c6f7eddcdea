"""Dataset descriptors: the facts about a dataset that the rest of the
pipeline needs (label space, ignore value, panoptic encoding, split sizes).

A `DatasetOptions.dataset` name in a config is looked up here: a built-in
dataset's name, or the path of a dataset spec file (`dataset_spec.py`;
`config.load_config` has made a config's spec paths absolute). A run looks
its datasets up once and hands the descriptors down (`trainer/runner.py`,
`predict.run`, `export.export_from_config`). The built-in values follow
DeepLab2's descriptors so that its TFRecords and checkpoints mean the same
thing here.
"""

import dataclasses
import functools
import os
from typing import Mapping

from deeplab2 import config as config_lib
from deeplab2.data import cityscapes_labels
from deeplab2.data import coco_labels


@dataclasses.dataclass(frozen=True)
class DatasetDescriptor:
    """What a dataset is, independent of where its files live.

    Attributes:
      name: the registry key, as written in `DatasetOptions.dataset`.
      splits_to_sizes: number of examples in each split, keyed by the split
        name used in TFRecord shard names (e.g. `train_fine`).
      num_classes: semantic classes predicted by the model, void excluded
        unless the dataset counts it (COCO's class 0).
      ignore_label: semantic label of void pixels, skipped by losses and
        metrics.
      panoptic_label_divisor: panoptic labels are `semantic * divisor +
        instance`.
      class_has_instances_list: semantic labels of "thing" classes, whose
        pixels form countable instances (DeepLab2's field name).
      colormap: name of the palette used for visualization.
      class_names: the name of each semantic label 0..num_classes-1 (for
        predictions shown to people).
      eval_ids: the id each semantic label 0..num_classes-1 has in the
        dataset's official evaluation and benchmark server (Cityscapes
        label ids, COCO category ids); `eval_void_id` is void's.
      class_colors: an (r, g, b) per semantic label, for datasets whose
        `colormap` is SPEC_COLORMAP (a spec file's own colours).
      file_patterns: TFRecord pattern of each split, for datasets that know
        where their records are (spec files); configs may then omit
        `file_pattern`.
      has_instances: whether labels carry instance ids (panoptic); false
        for semantic-only datasets.
      numeric_image_ids: whether the official ground-truth json names an
        image by the integer its file name spells (COCO: 000000000139.jpg
        is image_id 139); prediction jsons must use the same ids.
    """
    name: str
    splits_to_sizes: Mapping[str, int]
    num_classes: int
    ignore_label: int
    panoptic_label_divisor: int
    class_has_instances_list: tuple[int, ...]
    colormap: str
    class_names: tuple[str, ...] = ()
    eval_ids: tuple[int, ...] = ()
    eval_void_id: int = 0
    class_colors: tuple[tuple[int, int, int], ...] = ()
    file_patterns: Mapping[str, str] = dataclasses.field(default_factory=dict)
    has_instances: bool = True
    numeric_image_ids: bool = False

    @property
    def thing_class_ids(self) -> tuple[int, ...]:
        return self.class_has_instances_list

    @property
    def stuff_class_ids(self) -> tuple[int, ...]:
        things = set(self.class_has_instances_list)
        return tuple(label for label in range(self.num_classes)
                     if label not in things and label != self.ignore_label)


# The colormap of datasets described by a spec file: their class_colors.
SPEC_COLORMAP = 'spec'


CITYSCAPES_PANOPTIC = DatasetDescriptor(
    name='cityscapes_panoptic',
    splits_to_sizes={'train_fine': 2975, 'val_fine': 500,
                     'trainval_fine': 3475, 'test_fine': 1525},
    num_classes=19,
    ignore_label=255,
    panoptic_label_divisor=1000,
    # person, rider, car, truck, bus, train, motorcycle, bicycle.
    class_has_instances_list=tuple(range(11, 19)),
    colormap='cityscapes',
    class_names=cityscapes_labels.CLASS_NAMES,
    eval_ids=cityscapes_labels.LABEL_IDS,
    eval_void_id=cityscapes_labels.VOID_LABEL_ID,
)

COCO_PANOPTIC = DatasetDescriptor(
    name='coco_panoptic',
    splits_to_sizes={'train': 118287, 'val': 5000, 'test': 40670},
    # 80 thing + 53 stuff categories, plus label 0 which is void.
    num_classes=134,
    ignore_label=0,
    panoptic_label_divisor=256,
    class_has_instances_list=tuple(range(1, 81)),
    colormap='coco',
    class_names=('void',) + tuple(category.name for category in
                                  coco_labels.COCO_CATEGORIES),
    # Label 0 is void and stays 0.
    eval_ids=coco_labels.LABEL_TO_COCO_ID,
    eval_void_id=0,
    numeric_image_ids=True,
)

# The embedded synthetic dataset (deeplab2.data.demo): Cityscapes' label
# space and file layout, converted by the Cityscapes converter, small enough
# to generate on first use and to train on a CPU. Its shards are named by
# the raw split folders the converter reads ('train', 'val').
DEMO = DatasetDescriptor(
    name='demo',
    splits_to_sizes={'train': 64, 'val': 16},
    num_classes=CITYSCAPES_PANOPTIC.num_classes,
    ignore_label=CITYSCAPES_PANOPTIC.ignore_label,
    panoptic_label_divisor=CITYSCAPES_PANOPTIC.panoptic_label_divisor,
    class_has_instances_list=CITYSCAPES_PANOPTIC.class_has_instances_list,
    colormap=CITYSCAPES_PANOPTIC.colormap,
    class_names=CITYSCAPES_PANOPTIC.class_names,
    eval_ids=CITYSCAPES_PANOPTIC.eval_ids,
    eval_void_id=CITYSCAPES_PANOPTIC.eval_void_id,
)

DATASETS: Mapping[str, DatasetDescriptor] = {
    descriptor.name: descriptor
    for descriptor in (CITYSCAPES_PANOPTIC, COCO_PANOPTIC, DEMO)
}


def get_dataset_descriptor(name: str) -> DatasetDescriptor:
    """Returns the built-in descriptor registered under `name`, or the one
    a spec file at path `name` (ending in .json) describes.

    Raises:
      ValueError: naming the unknown dataset and listing the known ones, or
        a DatasetSpecError naming the spec file and key.
      FileNotFoundError: a spec path that does not exist.
    """
    if config_lib.is_spec_path(name):
        path = os.path.abspath(name)
        return _load_spec(path, os.stat(path).st_mtime_ns
                          if os.path.exists(path) else 0)
    try:
        return DATASETS[name]
    except KeyError:
        known = ', '.join(sorted(DATASETS))
        raise ValueError(
            f'Unknown dataset {name!r} (DatasetOptions.dataset). Known '
            f'datasets: {known}.') from None


def eval_dataset_descriptor(config, config_name) -> DatasetDescriptor:
    """The descriptor of `config.eval_dataset_options.dataset`; a bad name
    or spec fails with an error prefixed by config_name (the config file),
    so the user knows which file to fix."""
    try:
        return get_dataset_descriptor(config.eval_dataset_options.dataset)
    except ValueError as error:
        raise ValueError(f'{config_name}: {error}') from None


@functools.lru_cache(maxsize=16)
def _load_spec(path: str, modified_ns: int) -> DatasetDescriptor:
    """One parse per spec file version (the modification time is part of
    the key, so an edited spec is read again)."""
    del modified_ns
    # Imported here: dataset_spec builds descriptors from this module.
    from deeplab2.data import dataset_spec
    return dataset_spec.load_spec(path)
