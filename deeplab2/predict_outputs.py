"""What `deeplab2.predict` writes per image, from the predicted maps.

For each image `<name>.<ext>` the output folder gets:

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
from deeplab2.evaluation import coco_panoptic_format

PANOPTIC_SUFFIX = '_panoptic.png'
OVERLAY_SUFFIX = '_overlay.jpg'
SEGMENTS_SUFFIX = '_segments.json'
OUTPUT_SUFFIXES = (PANOPTIC_SUFFIX, OVERLAY_SUFFIX, SEGMENTS_SUFFIX)
_OVERLAY_JPEG_QUALITY = 90


@dataclasses.dataclass
class Prediction:
    """One image's results: segment ids [H, W] int64 (0 = void), the
    segments' JSON entries, and the overlay uint8 [H, W, 3]."""
    segment_ids: np.ndarray
    segments: list
    overlay: np.ndarray


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


def prediction_from_maps(maps: dict, image: np.ndarray,
                         descriptor: datasets.DatasetDescriptor,
                         image_name: Optional[str] = None) -> Prediction:
    """One image's Prediction from its [H, W] maps (a Predictor's output
    for a single image)."""
    for key, value in maps.items():
        if value.shape[:2] != image.shape[:2]:
            raise ValueError(
                f'Image {image_name}: the model returned {key} of shape '
                f'{value.shape}, expected the image size {image.shape[:2]}.')
    if common.PRED_PANOPTIC_KEY in maps:
        panoptic = maps[common.PRED_PANOPTIC_KEY]
        scores = maps[common.PRED_INSTANCE_SCORES_KEY]
    else:  # A semantic-only model: one segment per predicted class.
        panoptic = (maps[common.PRED_SEMANTIC_KEY].astype(np.int64)
                    * descriptor.panoptic_label_divisor)
        scores = np.zeros(panoptic.shape, np.float32)
    segment_ids, segments = describe_segments(panoptic, scores, descriptor,
                                              image_name)
    colored = vis.colorize_panoptic(
        panoptic, descriptor.panoptic_label_divisor,
        vis.palette(descriptor), descriptor.ignore_label)
    return Prediction(segment_ids, segments, vis.overlay(image, colored))


def write_prediction(output_dir: str, name: str, image_path: str,
                     prediction: Prediction,
                     descriptor: datasets.DatasetDescriptor) -> None:
    """Writes the three files of one image (the JSON last)."""
    prefix = os.path.join(output_dir, name)
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    coco_panoptic_format.write_panoptic_png(prefix + PANOPTIC_SUFFIX,
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
        'panoptic_png': os.path.basename(prefix + PANOPTIC_SUFFIX),
        'dataset': descriptor.name,
        'label_divisor': descriptor.panoptic_label_divisor,
        'segments': prediction.segments,
    }

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
