"""The demo scenes as a raw Cityscapes tree, and checks of its labels.

`generate_demo_cityscapes` writes what a user's Cityscapes copy holds
(leftImg8bit RGB PNGs, gtFine 8-bit `*_labelIds.png` and 16-bit
`*_instanceIds.png`), so that the demo goes through the real Cityscapes
converter. The checks validate raw labels and converted panoptic labels.
"""

import os

import numpy as np
from PIL import Image

from deeplab2.data import synthetic_scene

_CITIES = {'train': ('aldenburg', 'brightwater'),
           'val': ('cedarfield', 'dunmore')}


def _image_name(split: str, index: int) -> tuple[str, str]:
    city = _CITIES[split][index % len(_CITIES[split])]
    return city, f'{city}_000000_{index:06d}'


def generate_demo_cityscapes(root: str, num_train: int = 64,
                             num_val: int = 16, seed: int = 0,
                             height: int = 256, width: int = 512) -> str:
    """Writes the demo scenes as a raw Cityscapes tree under `root`.

    Files: `leftImg8bit/<split>/<city>/<name>_leftImg8bit.png` (RGB) and
    `gtFine/<split>/<city>/<name>_gtFine_{labelIds,instanceIds}.png` (8-bit
    labelIds; 16-bit labelId * 1000 + k on instances, labelId elsewhere),
    with `<name>` = `<city>_000000_<index:06d>`. Writing twice gives
    byte-identical files.

    Returns:
      root.
    """
    for split, count in (('train', num_train), ('val', num_val)):
        for index in range(count):
            city, name = _image_name(split, index)
            rgb, label_ids, instance_ids = synthetic_scene.generate_scene(
                seed, split, index, height, width)
            image_dir = os.path.join(root, 'leftImg8bit', split, city)
            label_dir = os.path.join(root, 'gtFine', split, city)
            os.makedirs(image_dir, exist_ok=True)
            os.makedirs(label_dir, exist_ok=True)
            Image.fromarray(rgb).save(
                os.path.join(image_dir, f'{name}_leftImg8bit.png'))
            Image.fromarray(label_ids).save(
                os.path.join(label_dir, f'{name}_gtFine_labelIds.png'))
            Image.fromarray(instance_ids).save(
                os.path.join(label_dir, f'{name}_gtFine_instanceIds.png'))
    return root


def validate_cityscapes_labels(label_ids: np.ndarray,
                               instance_ids: np.ndarray) -> None:
    """Checks that raw instanceIds agree with labelIds, as in Cityscapes.

    Raises:
      ValueError: on the first inconsistency, naming it.
    """
    from cityscapesscripts.helpers import labels as cs_labels
    label_ids = np.asarray(label_ids, np.int64)
    instance_ids = np.asarray(instance_ids, np.int64)
    if label_ids.shape != instance_ids.shape:
        raise ValueError(f'labelIds shape {label_ids.shape} differs from '
                         f'instanceIds shape {instance_ids.shape}.')
    multiplier = synthetic_scene.INSTANCE_MULTIPLIER
    is_instance = instance_ids >= multiplier
    expected = np.where(is_instance, instance_ids // multiplier,
                        instance_ids)
    if np.any(expected != label_ids):
        raise ValueError('instanceIds disagree with labelIds at '
                         f'{int(np.sum(expected != label_ids))} pixels.')
    has_instances = {label.id for label in cs_labels.labels
                     if label.hasInstances}
    bad = set(np.unique(label_ids[is_instance]).tolist()) - has_instances
    if bad:
        raise ValueError(f'instance numbers on labelIds without instances: '
                         f'{sorted(bad)}.')


def validate_panoptic_label(panoptic: np.ndarray, descriptor) -> dict:
    """Checks a converted panoptic label against a dataset descriptor.

    Every id is `semantic * divisor + instance` with instance < divisor;
    semantic is a class of the descriptor or its ignore label (then the
    instance is 0); only thing classes carry instance numbers. A thing
    segment with instance 0 is a crowd.

    Returns:
      {'thing_classes': sorted classes with instances, 'num_instances',
       'crowd_classes': sorted classes with crowd pixels, 'void_pixels'}.

    Raises:
      ValueError: naming the offending ids.
    """
    panoptic = np.asarray(panoptic, np.int64)
    divisor = descriptor.panoptic_label_divisor
    ids = np.unique(panoptic)
    if ids.size and ids.min() < 0:
        raise ValueError(f'negative panoptic ids: {ids[ids < 0].tolist()}.')
    semantic, instance = ids // divisor, ids % divisor
    things = set(descriptor.class_has_instances_list)
    known = (semantic < descriptor.num_classes) | (
        semantic == descriptor.ignore_label)
    if not np.all(known):
        raise ValueError(f'ids with unknown classes: {ids[~known].tolist()}.')
    void = semantic == descriptor.ignore_label
    if np.any(void & (instance != 0)):
        raise ValueError('void ids with an instance number: '
                         f'{ids[void & (instance != 0)].tolist()}.')
    is_thing = np.isin(semantic, list(things))
    stuff_instances = ~is_thing & ~void & (instance != 0)
    if np.any(stuff_instances):
        raise ValueError('instance numbers on classes without instances: '
                         f'{ids[stuff_instances].tolist()}.')
    instances = is_thing & (instance != 0)
    crowd = is_thing & (instance == 0)
    void_id = descriptor.ignore_label * divisor
    return {
        'thing_classes': sorted(set(semantic[instances].tolist())),
        'num_instances': int(np.sum(instances)),
        'crowd_classes': sorted(set(semantic[crowd].tolist())),
        'void_pixels': int(np.sum(panoptic == void_id)),
    }
