"""Folders of label PNGs -> records (`build_dataset.py
--format=label_folders`).

Input:

* `--image_dir`: the split's images, `<name>.jpg|.jpeg|.png` (any case;
  JPEG or PNG, any mode: non-RGB ones are stored as RGB PNG), directly in
  the folder;
* `--semantic_dir`: `<name>.png` per image, the class id of each pixel
  (8- or 16-bit grey or palette indices, not colours);
* `--instance_dir` (optional): `<name>.png` per image, the instance id of
  each pixel, 0 = none; without it the dataset is semantic-only;
* `--classes`: a JSON file

      {"classes": [{"name": "road", "id": 7, "color": [128, 64, 128]},
                   {"name": "car", "id": 26, "thing": true}],
       "ignore_id": 0}

  `id`: the class's value in the semantic PNGs (default: its position);
  `thing` (default false): the class has instances; `color` optional;
  `ignore_id` (default 255): the void value of the semantic PNGs, which
  must not be a class id.

Every image needs its label PNGs and every label PNG its image. Records are
named `<name>`, in name order.

Labels: train id = the class's position in the list; its `id` is kept as
the spec's eval_id and `ignore_id` as its eval_void_id. Semantic-only:
8-bit PNGs of train ids (void 255). With instances: `train_id * divisor +
instance`, instance ids as the PNG gives them (numbered per image; an id
that falls on two classes makes one segment per class); void pixels are
void whatever their instance id; a thing pixel with instance 0 is a crowd
(void with `treat_crowd_as_ignore`, else instance 0 of its class, as the
COCO converter treats crowds); an instance id on a stuff pixel is an error
(is the class meant to be a thing?). Thing flags are ignored, with a
warning, for a semantic-only dataset. The largest instance id, which picks
the divisor, is found by reading every instance PNG once before anything is
written.

Errors name the file: a missing or unmatched file, sizes that differ, a
colour (RGB) label PNG, a semantic value that is neither a class id nor
`ignore_id`, an instance id on a stuff class.
"""

import io
import logging
import os
from typing import Optional

import numpy as np
from PIL import Image

from deeplab2 import files
from deeplab2.data import conversion
from deeplab2.data import dataset_conversion
from deeplab2.data import image_files

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
LABEL_EXTENSION = '.png'
DEFAULT_IGNORE_ID = 255
# PIL modes of label PNGs that hold one number per pixel.
_ID_MODES = ('1', 'L', 'P', 'I', 'I;16', 'I;16B', 'I;16L')


def read_classes(path: str) -> tuple[list[dict], int]:
    """The spec's class entries (in file order) and the ignore id of a
    classes file. Raises ValueError naming the file and key."""
    def fail(key, problem):
        raise ValueError(f'{path}: {key}: {problem}.')

    data = files.read_json_object(path, 'Classes file')
    unknown = sorted(set(data) - {'classes', 'ignore_id'})
    if unknown:
        fail(unknown[0], 'unknown key (expected classes, ignore_id)')
    entries = data.get('classes')
    if not isinstance(entries, list) or not entries:
        fail('classes', 'must be a non-empty list')
    ignore_id = data.get('ignore_id', DEFAULT_IGNORE_ID)
    if not _is_int(ignore_id) or ignore_id < 0:
        fail('ignore_id', f'must be a non-negative integer, got '
             f'{ignore_id!r}')
    classes, seen = [], {'name': {}, 'id': {}}
    for index, entry in enumerate(entries):
        key = f'classes[{index}]'
        if not isinstance(entry, dict):
            fail(key, 'must be a JSON object')
        unknown = sorted(set(entry) - {'name', 'id', 'thing', 'color'})
        if unknown:
            fail(f'{key}.{unknown[0]}',
                 'unknown key (expected name, id, thing, color)')
        name, class_id = entry.get('name'), entry.get('id', index)
        thing, color = entry.get('thing', False), entry.get('color')
        if not isinstance(name, str) or not name:
            fail(f'{key}.name', 'must be a non-empty string')
        if not _is_int(class_id) or class_id < 0:
            fail(f'{key}.id', f'must be a non-negative integer, got '
                 f'{class_id!r}')
        if not isinstance(thing, bool):
            fail(f'{key}.thing', f'must be true or false, got {thing!r}')
        for field, value in (('name', name), ('id', class_id)):
            if value in seen[field]:
                fail(f'{key}.{field}', f'{value!r} repeats '
                     f'classes[{seen[field][value]}].{field}')
            seen[field][value] = index
        if class_id == ignore_id:
            fail(f'{key}.id', f'{class_id} is the ignore_id')
        class_entry = {'name': name, 'eval_id': class_id, 'thing': thing}
        if color is not None:
            if not (isinstance(color, list) and len(color) == 3 and all(
                    _is_int(c) and 0 <= c <= 255 for c in color)):
                fail(f'{key}.color', 'must be [r, g, b] with 0..255')
            class_entry['color'] = color
        classes.append(class_entry)
    return classes, ignore_id


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _files_by_name(folder: str, extensions: tuple, what: str
                   ) -> dict[str, str]:
    """name (file name without extension) -> path, for the files directly
    in `folder` with one of `extensions`."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'{what} folder not found: {folder}.')
    found = {}
    for entry in sorted(os.listdir(folder)):
        name, extension = os.path.splitext(entry)
        path = os.path.join(folder, entry)
        if extension.lower() not in extensions or not os.path.isfile(path):
            continue
        if name in found:
            raise ValueError(f'{found[name]} and {path} are both {what} '
                             f'files of {name!r}.')
        found[name] = path
    return found


def _pair(images: dict, labels: dict, label_dir: str, what: str) -> None:
    for name, path in images.items():
        if name not in labels:
            raise FileNotFoundError(
                f'Image {path} has no {what}: '
                f'{os.path.join(label_dir, name + LABEL_EXTENSION)} not '
                'found.')
    for name, path in labels.items():
        if name not in images:
            raise FileNotFoundError(
                f'{what.capitalize()} {path} has no image {name}'
                f'{{{",".join(IMAGE_EXTENSIONS)}}} in the image folder.')


def read_ids(path: str) -> np.ndarray:
    """int64 [H, W] values of a single-channel label PNG.

    Raises:
      ValueError: naming `path`: unreadable, not PNG, or not one number
        per pixel (colour labels must be mapped to ids first).
    """
    image = image_files.open_image(path)
    if image.format != 'PNG':
        raise ValueError(f'Label {path} is {image.format}, not PNG.')
    if image.mode not in _ID_MODES:
        raise ValueError(
            f'Label {path} has mode {image.mode}: it must hold one id per '
            'pixel (grey or palette PNG), not colours.')
    return np.asarray(image).astype(np.int64)


def list_split(image_dir: str, semantic_dir: str, classes_path: str,
               instance_dir: Optional[str] = None,
               treat_crowd_as_ignore: bool = True
               ) -> dataset_conversion.SplitListing:
    """Reads the classes file, pairs images with their label PNGs and
    (with instances) finds the largest instance id. Raises ValueError or
    FileNotFoundError naming the file."""
    classes, ignore_id = read_classes(classes_path)
    images = _files_by_name(image_dir, IMAGE_EXTENSIONS, 'image')
    if not images:
        raise FileNotFoundError(
            f'No {"/".join(IMAGE_EXTENSIONS)} images in {image_dir}.')
    semantic = _files_by_name(semantic_dir, (LABEL_EXTENSION,),
                              'semantic label')
    _pair(images, semantic, semantic_dir, 'semantic label')
    instances, max_instances = {}, 0
    if instance_dir is not None:
        instances = _files_by_name(instance_dir, (LABEL_EXTENSION,),
                                   'instance label')
        _pair(images, instances, instance_dir, 'instance label')
        max_instances = max(int(read_ids(path).max(initial=0))
                            for path in instances.values())
    else:
        things = [entry['name'] for entry in classes if entry['thing']]
        if things:
            logging.warning(
                'No --instance_dir: the dataset is semantic-only, and the '
                'thing flags of %s in %s are ignored.', ', '.join(things),
                classes_path)
        classes = [{**entry, 'thing': False} for entry in classes]
    jobs = [conversion.ImageJob(
        path, name, semantic_png=semantic[name],
        instance_png=instances.get(name),
        treat_crowd_as_ignore=treat_crowd_as_ignore)
            for name, path in sorted(images.items())]
    return dataset_conversion.SplitListing(
        source=classes_path, classes=classes, eval_void_id=ignore_id,
        jobs=jobs, has_instances=instance_dir is not None,
        max_instances=max_instances, source_ignore_id=ignore_id)


def _check_size(path: str, ids: np.ndarray, image_path: str, height: int,
                width: int) -> None:
    if ids.shape != (height, width):
        raise ValueError(f'{path}: size {ids.shape[1]}x{ids.shape[0]} '
                         f'differs from that of image {image_path} '
                         f'({width}x{height}).')


def train_id_map(space: dataset_conversion.LabelSpace,
                 job: conversion.ImageJob, height: int,
                 width: int) -> np.ndarray:
    """int64 [H, W] train ids (void: the ignore label) of a job's semantic
    PNG; ValueError naming it for values outside the classes."""
    source = read_ids(job.semantic_png)
    _check_size(job.semantic_png, source, job.image_path, height, width)
    values, inverse = np.unique(source, return_inverse=True)
    table = {**space.train_ids, space.source_ignore_id: space.ignore_label}
    outside = [int(value) for value in values if int(value) not in table]
    if outside:
        raise ValueError(
            f'{job.semantic_png}: values {outside[:10]} are neither class '
            f'ids ({sorted(space.train_ids)[:20]}) nor the ignore_id '
            f'{space.source_ignore_id}.')
    train_ids = np.array([table[int(value)] for value in values], np.int64)
    return train_ids[inverse.reshape(source.shape)]


def panoptic_label(space: dataset_conversion.LabelSpace,
                   job: conversion.ImageJob, train_ids: np.ndarray
                   ) -> np.ndarray:
    """int32 [H, W] `train_id * divisor + instance` (see the module
    docstring)."""
    instance = read_ids(job.instance_png)
    _check_size(job.instance_png, instance, job.image_path,
                *train_ids.shape)
    is_thing = np.isin(train_ids, list(space.thing_train_ids))
    is_stuff = ~is_thing & (train_ids != space.ignore_label)
    on_stuff = is_stuff & (instance != 0)
    if on_stuff.any():
        row, col = np.argwhere(on_stuff)[0]
        raise ValueError(
            f'{job.instance_png}: instance id {instance[row, col]} on pixel '
            f'(row {row}, column {col}) of stuff class '
            f'{train_ids[row, col]} (train id; see the classes file): mark '
            'the class "thing": true, or make those pixels 0.')
    if int(instance.max(initial=0)) >= space.divisor:
        raise ValueError(f'{job.instance_png}: instance ids reach '
                         f'{instance.max()}, not below the label divisor '
                         f'{space.divisor}.')
    label = train_ids.copy()
    if job.treat_crowd_as_ignore:
        label[is_thing & (instance == 0)] = space.ignore_label
    # Void and stuff pixels have instance 0 (checked or left out above).
    label = label * space.divisor + np.where(is_thing, instance, 0)
    return label.astype(np.int32)


def _png_bytes(train_ids: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(train_ids.astype(np.uint8), 'L').save(buffer, 'PNG')
    return buffer.getvalue()


def prepare_example(space: dataset_conversion.LabelSpace,
                    job: conversion.ImageJob) -> conversion.PreparedExample:
    """Reads and checks one image and builds its label (worker entry)."""
    image_bytes, image_format, height, width = conversion.read_rgb_image(
        job.image_path)
    train_ids = train_id_map(space, job, height, width)
    label = semantic_png = None
    if space.divisor is None:
        semantic_png = _png_bytes(train_ids)
    else:
        label = panoptic_label(space, job, train_ids)
    return conversion.PreparedExample(image_bytes, job.image_name,
                                      image_format, height, width,
                                      panoptic_label=label,
                                      semantic_png=semantic_png)


def convert(image_dir: str, semantic_dir: str, classes_path: str,
            split: str, output_dir: str,
            instance_dir: Optional[str] = None,
            treat_crowd_as_ignore: bool = True,
            **options) -> tuple[list[str], str]:
    """Converts one split; returns (shard paths, dataset.json path).
    `options`: those of `dataset_conversion.convert_split`."""
    listing = list_split(image_dir, semantic_dir, classes_path,
                         instance_dir, treat_crowd_as_ignore)
    return dataset_conversion.convert_split(listing, prepare_example, split,
                                            output_dir, **options)
