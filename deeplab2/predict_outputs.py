"""What `deeplab2.predict` writes per image, from the predicted maps.

For each image `<name>.<ext>` the output folder gets, from a panoptic
prediction:

  <name>_panoptic.png   segment ids in the Cityscapes/COCO panoptic colour
                        encoding: id = R + 256 G + 65536 B, 0 = void, and a
                        segment's id is `class * label_divisor + instance + 1`
                        (deeplab2.evaluation.coco_panoptic_format);
  <name>_overlay.jpg    the colored panoptic map blended onto the image;
  <name>_segments.json  one entry per segment: `id`, `category_id` (the
                        model's class id), `category_name`, `eval_id` (the
                        class's id in the dataset's original annotations:
                        a Cityscapes label id, a COCO category id, a spec
                        class's `eval_id`), `isthing`, `score`, `area`
                        (pixels) and `bbox` [x, y, w, h].

A thing segment's `score` is the mean of `instance_scores` over its pixels:
the center-heatmap peak of the instance it was grouped to (0 for thing
pixels that found no center). Stuff segments get `null`: Panoptic-DeepLab
has no per-segment confidence for stuff, and a softmax mean would be a
different quantity under the same name.

From a semantic prediction (a semantic-only model, which outputs
`semantic_pred` alone, or a semantic-only dataset, which has no
instances) there are no panoptic files; instead:

  <name>_semantic.png   each pixel's class as its `eval_id` (the id the
                        dataset's own labels use: for a label-folder
                        dataset, the values of its label PNGs), one
                        channel, 8 bits when every eval id fits, else 16;
  <name>_overlay.jpg    the colored semantic map blended onto the image;
  <name>_segments.json  as above with `semantic_png` in place of
                        `panoptic_png` and no `label_divisor`: one entry per
                        class present, whose `id` is its value in the PNG
                        (its eval id), `isthing` the class's flag, `score`
                        null (a class region has no instance score).

Every file is written under a temporary name and renamed, and the JSON
last, so a `_segments.json` means that image's outputs are complete.
"""

import dataclasses
import json
import os
from typing import Optional

import numpy as np
from PIL import Image

from deeplab2 import common
from deeplab2 import files
from deeplab2 import vis
from deeplab2.data import datasets
from deeplab2 import panoptic_png
from deeplab2.evaluation import coco_panoptic_format

PANOPTIC_SUFFIX = '_panoptic.png'
SEMANTIC_SUFFIX = '_semantic.png'
OVERLAY_SUFFIX = '_overlay.jpg'
SEGMENTS_SUFFIX = '_segments.json'
OUTPUT_SUFFIXES = (PANOPTIC_SUFFIX, SEMANTIC_SUFFIX, OVERLAY_SUFFIX,
                   SEGMENTS_SUFFIX)
_OVERLAY_JPEG_QUALITY = 90
# The largest id a 16-bit semantic PNG holds.
_MAX_UINT16 = 65535


@dataclasses.dataclass
class Prediction:
    """One image's results: the id map its PNG holds, [H, W] int64 (panoptic
    segment ids, 0 = void; or, when `semantic`, each pixel's class eval
    id), the segments' JSON entries, and the overlay uint8 [H, W, 3]."""
    segment_ids: np.ndarray
    segments: list
    overlay: np.ndarray
    semantic: bool = False


def describe_segments(panoptic: np.ndarray, instance_scores: np.ndarray,
                      descriptor: datasets.DatasetDescriptor,
                      image_name: Optional[str] = None):
    """Segment-id map and the segments' JSON entries of a panoptic map.

    Args:
      panoptic: [H, W] int `class * label_divisor + instance`.
      instance_scores: [H, W] float, each thing pixel's instance score.
    Returns:
      (segment_ids [H, W] int64, list of segment dicts; see module doc).
    """
    segment_ids, segments = coco_panoptic_format.panoptic_to_segments(
        panoptic, descriptor.num_classes, descriptor.ignore_label,
        descriptor.panoptic_label_divisor, image_name=image_name,
        scores=instance_scores)
    things = set(descriptor.class_has_instances_list)
    names = descriptor.class_names
    eval_ids = descriptor.eval_ids
    described = []
    for segment in segments:
        category = segment['category_id']
        isthing = category in things
        described.append({
            'id': segment['id'],
            'category_id': category,
            'category_name': names[category] if category < len(names)
            else str(category),
            'eval_id': eval_ids[category] if category < len(eval_ids)
            else category,
            'isthing': isthing,
            'score': round(segment['score'], 6) if isthing else None,
            'area': segment['area'],
            'bbox': segment['bbox'],
        })
    return segment_ids, described


def eval_id_table(descriptor: datasets.DatasetDescriptor) -> np.ndarray:
    """Semantic label -> its eval id, for every label up to the ignore
    label (which, like a label without one, gets `eval_void_id`)."""
    size = max(descriptor.num_classes, descriptor.ignore_label + 1)
    table = np.full(size, descriptor.eval_void_id, np.int64)
    table[:descriptor.num_classes] = (descriptor.eval_ids or
                                      np.arange(descriptor.num_classes))
    table[descriptor.ignore_label] = descriptor.eval_void_id
    return table


def describe_semantic(semantic: np.ndarray,
                      descriptor: datasets.DatasetDescriptor,
                      image_name: Optional[str] = None):
    """Eval-id map and the per-class JSON entries of a semantic map.

    Args:
      semantic: [H, W] int semantic labels (the model's class ids).
    Returns:
      (eval ids [H, W] int64, list of class dicts; see the module doc).
    """
    semantic = np.asarray(semantic, np.int64)
    # Label-divisor 1 makes each class one segment, numbered class + 1.
    _, segments = coco_panoptic_format.panoptic_to_segments(
        semantic, descriptor.num_classes, descriptor.ignore_label, 1,
        image_name=image_name)
    table = eval_id_table(descriptor)
    things = set(descriptor.class_has_instances_list)
    names = descriptor.class_names
    described = [{
        'id': int(table[segment['category_id']]),
        'category_id': segment['category_id'],
        'category_name': (names[segment['category_id']]
                          if segment['category_id'] < len(names)
                          else str(segment['category_id'])),
        'eval_id': int(table[segment['category_id']]),
        'isthing': segment['category_id'] in things,
        'score': None,
        'area': segment['area'],
        'bbox': segment['bbox'],
    } for segment in segments]
    return table[semantic], described


def prediction_from_maps(maps: dict, image: np.ndarray,
                         descriptor: datasets.DatasetDescriptor,
                         image_name: Optional[str] = None) -> Prediction:
    """One image's Prediction from its [H, W] maps (a Predictor's output
    for a single image): panoptic, or semantic when the model has no
    panoptic map or the dataset no instances."""
    for key, value in maps.items():
        if value.shape[:2] != image.shape[:2]:
            raise ValueError(
                f'Image {image_name}: the model returned {key} of shape '
                f'{value.shape}, expected the image size {image.shape[:2]}.')
    palette = vis.palette(descriptor)
    if (common.PRED_PANOPTIC_KEY not in maps
            or not descriptor.has_instances):
        semantic = maps[common.PRED_SEMANTIC_KEY]
        eval_ids, classes = describe_semantic(semantic, descriptor,
                                              image_name)
        colored = vis.colorize_semantic(semantic, palette,
                                        descriptor.ignore_label)
        return Prediction(eval_ids, classes, vis.overlay(image, colored),
                          semantic=True)
    panoptic = maps[common.PRED_PANOPTIC_KEY]
    segment_ids, segments = describe_segments(
        panoptic, maps[common.PRED_INSTANCE_SCORES_KEY], descriptor,
        image_name)
    colored = vis.colorize_panoptic(
        panoptic, descriptor.panoptic_label_divisor, palette,
        descriptor.ignore_label)
    return Prediction(segment_ids, segments, vis.overlay(image, colored))


def _write_semantic_png(path: str, eval_ids: np.ndarray,
                        descriptor: datasets.DatasetDescriptor) -> None:
    """8 bits when every eval id of the dataset fits (the same depth for
    every image), else 16."""
    largest = int(eval_id_table(descriptor).max())
    if largest > _MAX_UINT16:
        raise ValueError(
            f'Dataset {descriptor.name!r}: eval id {largest} does not fit a '
            '16-bit PNG.')
    dtype = np.uint8 if largest <= 255 else np.uint16
    png = Image.fromarray(eval_ids.astype(dtype))
    files.write_atomically(path, lambda temporary: png.save(temporary,
                                                            format='PNG'))


def write_prediction(output_dir: str, name: str, image_path: str,
                     prediction: Prediction,
                     descriptor: datasets.DatasetDescriptor) -> None:
    """Writes the three files of one image (the JSON last)."""
    prefix = os.path.join(output_dir, name)
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    if prediction.semantic:
        png_path = prefix + SEMANTIC_SUFFIX
        _write_semantic_png(png_path, prediction.segment_ids, descriptor)
    else:
        png_path = prefix + PANOPTIC_SUFFIX
        panoptic_png.write(png_path,
                                                prediction.segment_ids)
    overlay = Image.fromarray(prediction.overlay)
    files.write_atomically(
        prefix + OVERLAY_SUFFIX,
        lambda path: overlay.save(path, format='JPEG',
                                  quality=_OVERLAY_JPEG_QUALITY))
    height, width = prediction.segment_ids.shape
    content = {
        'image': image_path,
        'height': height,
        'width': width,
        ('semantic_png' if prediction.semantic else 'panoptic_png'):
            os.path.basename(png_path),
        'dataset': descriptor.name,
    }
    if not prediction.semantic:
        content['label_divisor'] = descriptor.panoptic_label_divisor
    content['segments'] = prediction.segments

    def write_json(path):
        with open(path, 'w') as f:
            f.write(_segments_json(content))
    files.write_atomically(prefix + SEGMENTS_SUFFIX, write_json)


def _segments_json(content: dict) -> str:
    """JSON with one line per segment: readable, and greppable by id."""
    header = {key: value for key, value in content.items()
              if key != 'segments'}
    fields = [f'  {json.dumps(key)}: {json.dumps(value)}'
              for key, value in header.items()]
    segments = ',\n'.join(f'    {json.dumps(segment)}'
                           for segment in content['segments'])
    fields.append(f'  "segments": [\n{segments}\n  ]' if segments
                  else '  "segments": []')
    return '{\n' + ',\n'.join(fields) + '\n}\n'
