"""Writes eval predictions to disk: pictures for people and raw files for
the official evaluators and benchmark servers.

Layout under `save_dir` (DeepLab2's `<model_dir>/vis` unless overridden):

  %06d_image.png, %06d_semantic_prediction.png, %06d_instance_prediction.png,
  %06d_center_prediction.png, %06d_panoptic_prediction.png (overlay),
  %06d_semantic_label.png, %06d_panoptic_label.png
      colored pictures of the first `num_vis_samples` images;
  raw_semantic/<image>.png
      semantic labels, one uint8 per pixel (Cityscapes' pixel-level
      evaluator reads these as `*_labelIds.png`-style predictions);
  raw_panoptic/<image>.png|.npy
      DeepLab2's `raw_panoptic_format`: 'two_channel_png' (R = class,
      G = instance), 'three_channel_png' (R = class, G = instance // 256,
      B = instance % 256) or 'two_channel_numpy_array' ([H, W, 2] int32);
  raw_panoptic_coco/<image>.png + raw_panoptic_coco.json
      the COCO panoptic format (RGB-encoded segment ids plus segments_info)
      that cityscapesscripts' and COCO's panoptic evaluators read;
  raw_instance/<image>.txt + raw_instance/instance_masks/*.png
      one line `instance_masks/<mask>.png <class> <score>` per thing
      segment, the input of Cityscapes' instance-level evaluator.

With `convert_to_eval_ids` every raw class id is the dataset's official id
(`DatasetDescriptor.eval_ids`: Cityscapes label ids, COCO category ids), as
the benchmark servers expect; otherwise the model's own labels. Every file
goes through a temporary name, so an interrupted run leaves whole files.
"""

import os
from typing import Optional

import numpy as np
from PIL import Image

from deeplab2 import common
from deeplab2 import files
from deeplab2 import vis
from deeplab2 import panoptic_png
from deeplab2.evaluation import coco_panoptic_format

RAW_PANOPTIC_FORMATS = ('two_channel_png', 'three_channel_png',
                        'two_channel_numpy_array')
COCO_FOLDER = 'raw_panoptic_coco'


def _save_png(path: str, array: np.ndarray) -> None:
    files.write_atomically(path, Image.fromarray(array).save)


def _save_npy(path: str, array: np.ndarray) -> None:
    files.write_atomically(path, lambda temporary: np.save(temporary, array))


def _save_text(path: str, text: str) -> None:
    def write(temporary):
        with open(temporary, 'w') as f:
            f.write(text)

    files.write_atomically(path, write)


def colorize_instances(instance: np.ndarray) -> np.ndarray:
    """[H, W] instance ids -> [H, W, 3] uint8, a fixed color per id, 0
    black."""
    instance = np.asarray(instance, np.int64)
    # Multiplicative hashing spreads consecutive ids over the color cube.
    colors = (instance[..., None] * np.array([97, 57, 151])) % 200 + 55
    return np.where(instance[..., None] > 0, colors, 0).astype(np.uint8)


def colorize_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """[H, W] scores in [0, 1] -> [H, W, 3] uint8, black-red-yellow-white."""
    level = np.clip(np.asarray(heatmap, np.float32), 0, 1)[..., None] * 3
    rgb = np.clip(level - np.array([0.0, 1.0, 2.0]), 0, 1)
    return np.round(rgb * 255).astype(np.uint8)


def pictures(descriptor, image, predictions: dict, labels: dict) -> dict:
    """kind -> uint8 [H, W, 3] picture of one image: the image, its colored
    predictions (panoptic ones overlaid on it) and ground truth, for the
    keys present."""
    palette = vis.palette(descriptor)
    image = np.clip(np.round(np.asarray(image, np.float32)), 0,
                    255).astype(np.uint8)

    def semantic(labels_map):
        return vis.colorize_semantic(labels_map, palette,
                                     descriptor.ignore_label)

    def panoptic(panoptic_map):
        return vis.overlay(image, vis.colorize_panoptic(
            panoptic_map, descriptor.panoptic_label_divisor, palette,
            descriptor.ignore_label))

    drawers = {
        'semantic_prediction': (predictions, common.PRED_SEMANTIC_KEY,
                                semantic),
        'instance_prediction': (predictions, common.PRED_INSTANCE_KEY,
                                colorize_instances),
        'center_prediction': (predictions, common.PRED_CENTER_HEATMAP_KEY,
                              lambda heatmap: vis.overlay(
                                  image, colorize_heatmap(heatmap))),
        'panoptic_prediction': (predictions, common.PRED_PANOPTIC_KEY,
                                panoptic),
        'semantic_label': (labels, common.GT_SEMANTIC_RAW, semantic),
        'panoptic_label': (labels, common.GT_PANOPTIC_RAW, panoptic),
    }
    drawn = {'image': image}
    for kind, (maps, key, draw) in drawers.items():
        if key in maps:
            drawn[kind] = draw(np.asarray(maps[key]).reshape(image.shape[:2]))
    return drawn


class PredictionWriter:
    """Writes one image's predictions at a time; `close()` writes the json.

    Args:
      descriptor: the eval dataset's DatasetDescriptor.
      save_dir: the folder to write into (created).
      num_vis_samples: colored pictures for this many images (0: none).
      save_raw: write the raw files for every image.
      raw_panoptic_format: one of RAW_PANOPTIC_FORMATS.
      convert_to_eval_ids: raw class ids as the dataset's official ids.
    """

    def __init__(self, descriptor, save_dir: str, num_vis_samples: int = 0,
                 save_raw: bool = False,
                 raw_panoptic_format: str = 'two_channel_png',
                 convert_to_eval_ids: bool = True):
        if raw_panoptic_format not in RAW_PANOPTIC_FORMATS:
            raise ValueError(
                f'Unknown raw_panoptic_format {raw_panoptic_format!r} '
                f'(evaluator_options.raw_panoptic_format); supported: '
                f'{", ".join(RAW_PANOPTIC_FORMATS)}.')
        if convert_to_eval_ids and save_raw and not descriptor.eval_ids:
            raise ValueError(
                f'Dataset {descriptor.name!r} has no official ids to convert '
                'to; set evaluator_options.convert_raw_to_eval_ids=false.')
        self.descriptor = descriptor
        self.save_dir = save_dir
        self.num_vis_samples = num_vis_samples
        self.save_raw = save_raw
        self.raw_panoptic_format = raw_panoptic_format
        self.convert_to_eval_ids = convert_to_eval_ids
        self._class_id = self._class_id_table()
        self._visualized = 0
        self._annotations = []
        os.makedirs(save_dir, exist_ok=True)

    @classmethod
    def from_config(cls, config, model_dir: str,
                    descriptor) -> Optional['PredictionWriter']:
        """The writer `config.evaluator_options` asks for, or None."""
        options = config.evaluator_options
        if not (options.save_predictions or options.save_raw_predictions):
            return None
        save_dir = (options.override_save_dir
                    if options.HasField('override_save_dir')
                    else os.path.join(model_dir, 'vis'))
        return cls(descriptor, save_dir,
                   num_vis_samples=(options.num_vis_samples
                                    if options.save_predictions else 0),
                   save_raw=options.save_raw_predictions,
                   raw_panoptic_format=options.raw_panoptic_format,
                   convert_to_eval_ids=options.convert_raw_to_eval_ids)

    def _class_id_table(self) -> np.ndarray:
        """Model label -> class id written in raw files (void included)."""
        descriptor = self.descriptor
        size = max(256, descriptor.num_classes, descriptor.ignore_label + 1)
        if not self.convert_to_eval_ids:
            return np.arange(size, dtype=np.int64)
        table = np.full(size, descriptor.eval_void_id, np.int64)
        table[:descriptor.num_classes] = descriptor.eval_ids
        return table

    def _folder(self, name: str) -> str:
        folder = os.path.join(self.save_dir, name)
        os.makedirs(folder, exist_ok=True)
        return folder

    def write(self, image_name: str, image: np.ndarray, predictions: dict,
              labels: Optional[dict] = None) -> None:
        """One image: `image` [H, W, 3], `predictions` [H, W] maps keyed
        like the model's outputs (semantic_pred, panoptic_pred, ...), all at
        the image's own size; `labels` optionally holds the ground truth
        (semantic_gt / panoptic_gt keys of deeplab2.common)."""
        image_name = os.path.splitext(os.path.basename(image_name))[0]
        if self._visualized < self.num_vis_samples:
            self._write_pictures(self._visualized, image, predictions,
                                 labels or {})
            self._visualized += 1
        if self.save_raw:
            self._write_raw(image_name, predictions)

    def close(self) -> None:
        """Writes raw_panoptic_coco.json (the images written so far)."""
        if self.save_raw and self._annotations:
            categories = [{
                'id': int(self._class_id[label]), 'name': name,
                'isthing': int(label in self.descriptor.thing_class_ids)}
                for label, name in enumerate(self.descriptor.class_names)
                if label != self.descriptor.ignore_label]
            coco_panoptic_format.write_panoptic_json(
                os.path.join(self.save_dir, COCO_FOLDER + '.json'),
                self._annotations, categories)

    # ---- pictures --------------------------------------------------------

    def _write_pictures(self, index: int, image, predictions, labels):
        for kind, picture in pictures(self.descriptor, image, predictions,
                                      labels).items():
            _save_png(os.path.join(self.save_dir, f'{index:06d}_{kind}.png'),
                      picture)

    # ---- raw files ---------------------------------------------------------

    def _as_uint8_classes(self, classes: np.ndarray, image_name: str,
                          what: str) -> np.ndarray:
        if classes.size and classes.max() > 255:
            raise ValueError(
                f'Image {image_name!r}: {what} class id {classes.max()} does '
                'not fit a uint8 PNG.')
        return classes.astype(np.uint8)

    def _write_raw(self, image_name: str, predictions: dict) -> None:
        semantic = np.asarray(predictions[common.PRED_SEMANTIC_KEY], np.int64)
        _save_png(os.path.join(self._folder('raw_semantic'),
                               image_name + '.png'),
                  self._as_uint8_classes(self._class_id[semantic], image_name,
                                         'semantic'))
        if common.PRED_PANOPTIC_KEY not in predictions:
            return
        panoptic = np.asarray(predictions[common.PRED_PANOPTIC_KEY], np.int64)
        self._write_raw_panoptic(image_name, panoptic)
        segment_ids, segments = self._write_coco_panoptic(
            image_name, panoptic,
            predictions[common.PRED_INSTANCE_SCORES_KEY])
        if self.descriptor.thing_class_ids:
            self._write_instances(image_name, segment_ids, segments)

    def _write_raw_panoptic(self, image_name: str, panoptic: np.ndarray):
        divisor = self.descriptor.panoptic_label_divisor
        classes = self._class_id[panoptic // divisor]
        instances = panoptic % divisor
        folder = self._folder('raw_panoptic')
        if self.raw_panoptic_format == 'two_channel_numpy_array':
            _save_npy(os.path.join(folder, image_name + '.npy'),
                      np.stack([classes, instances], -1).astype(np.int32))
            return
        limit = 255 if self.raw_panoptic_format == 'two_channel_png' else 65535
        if instances.size and instances.max() > limit:
            raise ValueError(
                f'Image {image_name!r}: instance id {instances.max()} does not '
                f'fit {self.raw_panoptic_format} (at most {limit}); use '
                'raw_panoptic_format two_channel_numpy_array.')
        channels = np.zeros(panoptic.shape + (3,), np.uint8)
        channels[..., 0] = self._as_uint8_classes(classes, image_name,
                                                  'panoptic')
        if self.raw_panoptic_format == 'two_channel_png':
            channels[..., 1] = instances
        else:
            channels[..., 1], channels[..., 2] = divmod(instances, 256)
        _save_png(os.path.join(folder, image_name + '.png'), channels)

    def _write_coco_panoptic(self, image_name: str, panoptic: np.ndarray,
                             scores: np.ndarray):
        """Writes the COCO panoptic PNG; returns its segment ids and
        segments (with their mean scores, for the instance files)."""
        descriptor = self.descriptor
        segment_ids, segments = coco_panoptic_format.panoptic_to_segments(
            panoptic, descriptor.num_classes, descriptor.ignore_label,
            descriptor.panoptic_label_divisor,
            category_ids=self._class_id[:descriptor.num_classes],
            image_name=image_name, scores=scores)
        file_name = image_name + '.png'
        panoptic_png.write(
            os.path.join(self._folder(COCO_FOLDER), file_name), segment_ids)
        # The official evaluators pair predictions with ground truth by
        # image_id, so it must be the ground-truth json's own id.
        image_id = (int(image_name) if descriptor.numeric_image_ids
                    and image_name.isdigit() else image_name)
        self._annotations.append(
            coco_panoptic_format.annotation(image_id, file_name, segments))
        return segment_ids, segments

    def _write_instances(self, image_name: str, segment_ids: np.ndarray,
                         segments: list):
        """A mask PNG and a line per thing segment of the COCO segments;
        its score is the mean instance score over the segment (constant
        per instance for Panoptic-DeepLab: its center's heatmap value)."""
        divisor = self.descriptor.panoptic_label_divisor
        thing_ids = set(self._class_id[list(
            self.descriptor.thing_class_ids)].tolist())
        folder = self._folder('raw_instance')
        self._folder(os.path.join('raw_instance', 'instance_masks'))
        lines = []
        for segment in segments:
            class_id = segment['category_id']
            # Segment ids are category * divisor + instance + 1.
            instance = (segment['id'] - 1) % divisor
            if class_id not in thing_ids or instance == 0:
                continue
            mask_name = (f'instance_masks/{image_name}_class_{class_id}'
                         f'_instance_{instance}.png')
            _save_png(os.path.join(folder, mask_name),
                      (segment_ids == segment['id']).astype(np.uint8))
            lines.append(f'{mask_name} {class_id} {segment["score"]:.6f}\n')
        _save_text(os.path.join(folder, image_name + '.txt'), ''.join(lines))
