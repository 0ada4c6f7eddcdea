"""COCO mask AP of the thing instances in panoptic maps, via pycocotools.

Ground truth: every thing-class segment with instance id > 0 is an object;
a thing-class segment with instance id 0 (the Cityscapes crowd encoding) is
an `iscrowd` region. Prediction: every thing-class segment is a detection
scored with the mean of `instance_scores` over its pixels.
"""

import contextlib
import io
from typing import Iterable, Optional

import numpy as np
from pycocotools import coco as coco_api
from pycocotools import cocoeval
from pycocotools import mask as mask_api

from deeplab2.evaluation import label_maps

# Order of COCOeval.stats for masks.
_STAT_NAMES = ('ap', 'ap50', 'ap75', 'ap_small', 'ap_medium', 'ap_large',
               'ar_1', 'ar_10', 'ar_100', 'ar_small', 'ar_medium', 'ar_large')


def encode_mask(mask: np.ndarray) -> dict:
    """COCO RLE of a boolean [H, W] mask, counts as str (json-ready)."""
    rle = mask_api.encode(np.asfortranarray(mask, dtype=np.uint8))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


class InstanceAP:
    """AP^mask (COCO definition) over thing classes, streaming over images.

    Category ids in the COCO objects are the class ids; image and annotation
    ids count from 1 (pycocotools treats id 0 as "unmatched").
    """

    def __init__(self, num_classes: int, ignore_label: int,
                 label_divisor: int, thing_class_ids: Iterable[int]):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.label_divisor = label_divisor
        self.thing_class_ids = tuple(sorted(set(int(c) for c in thing_class_ids)))
        if not self.thing_class_ids or any(
                not 0 <= c < num_classes for c in self.thing_class_ids):
            raise ValueError(f'thing_class_ids {self.thing_class_ids} must be '
                             f'non-empty and lie in [0, {num_classes}).')
        self._id_bound = label_maps.id_bound(num_classes, ignore_label,
                                             label_divisor)
        self._is_thing = np.zeros(max(num_classes, ignore_label + 1), bool)
        self._is_thing[list(self.thing_class_ids)] = True
        self.reset_state()

    def reset_state(self) -> None:
        self.images = []
        self.groundtruths = []
        self.detections = []
        self.num_images = 0

    def _thing_segments(self, panoptic: np.ndarray):
        """(ids, areas, flat index, rows of thing segments) of one map."""
        ids, areas, index = label_maps.segment_table(panoptic, self._id_bound)
        classes = ids // self.label_divisor
        return ids, areas, index, np.flatnonzero(self._is_thing[classes])

    def update_state(self, groundtruth_panoptic, predicted_panoptic,
                     instance_scores, image_name: Optional[str] = None) -> None:
        """Accumulates one image.

        Args:
          groundtruth_panoptic: [H, W] int `class * label_divisor + instance`.
          predicted_panoptic: [H, W] int, same encoding.
          instance_scores: [H, W] float confidence of each pixel's instance.
          image_name: named in errors (default: the call's index).
        """
        image = label_maps.image_label(image_name, self.num_images)
        groundtruth = label_maps.check_label_map(
            groundtruth_panoptic, 'ground-truth panoptic map', image)
        prediction = label_maps.check_label_map(
            predicted_panoptic, 'predicted panoptic map', image)
        scores = np.asarray(instance_scores, np.float64)
        label_maps.check_same_shape(groundtruth, prediction, image)
        if scores.shape != prediction.shape:
            raise ValueError(f'Image {image}: instance_scores shape '
                             f'{scores.shape} differs from the prediction '
                             f'shape {prediction.shape}.')
        for array, what in ((groundtruth, 'ground-truth panoptic map'),
                            (prediction, 'predicted panoptic map')):
            label_maps.check_panoptic_ids(array, what, image, self.num_classes,
                                          self.ignore_label, self.label_divisor)
        image_id = self.num_images + 1
        height, width = groundtruth.shape
        self.images.append({'id': image_id, 'height': height, 'width': width})
        self._add_groundtruth(groundtruth, image_id)
        self._add_detections(prediction, scores, image_id)
        self.num_images += 1

    def _add_groundtruth(self, groundtruth: np.ndarray, image_id: int) -> None:
        ids, areas, index, things = self._thing_segments(groundtruth)
        index = index.reshape(groundtruth.shape)
        for row in things:
            rle = encode_mask(index == row)
            self.groundtruths.append({
                'id': len(self.groundtruths) + 1,
                'image_id': image_id,
                'category_id': int(ids[row] // self.label_divisor),
                'segmentation': rle,
                'area': float(areas[row]),
                'bbox': mask_api.toBbox(rle).tolist(),
                'iscrowd': int(ids[row] % self.label_divisor == 0),
            })

    def _add_detections(self, prediction: np.ndarray, scores: np.ndarray,
                        image_id: int) -> None:
        ids, areas, index, things = self._thing_segments(prediction)
        mean_scores = np.bincount(index, weights=scores.ravel(),
                                  minlength=ids.size) / areas
        index = index.reshape(prediction.shape)
        for row in things:
            self.detections.append({
                'image_id': image_id,
                'category_id': int(ids[row] // self.label_divisor),
                'segmentation': encode_mask(index == row),
                'score': float(mean_scores[row]),
            })

    def evaluate(self) -> cocoeval.COCOeval:
        """Runs COCOeval (segm) over everything accumulated; quiet."""
        groundtruth = coco_api.COCO()
        groundtruth.dataset = {
            'images': list(self.images),
            'annotations': list(self.groundtruths),
            'categories': [{'id': c} for c in self.thing_class_ids],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            groundtruth.createIndex()
            if self.detections:
                detections = groundtruth.loadRes(
                    [dict(d) for d in self.detections])
            else:  # loadRes cannot take an empty list.
                detections = coco_api.COCO()
                detections.dataset = dict(groundtruth.dataset, annotations=[])
                detections.createIndex()
            evaluation = cocoeval.COCOeval(groundtruth, detections, 'segm')
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        return evaluation

    def result(self) -> dict:
        """`ap`, `ap50`, `ap75`, size-range AP and AR (fractions) and
        `per_class_ap`; NaN where COCO has nothing to average (no gt)."""
        if not self.images:
            raise ValueError('InstanceAP.result() before any update_state().')
        evaluation = self.evaluate()
        results = {name: float(value) if value >= 0 else float('nan')
                   for name, value in zip(_STAT_NAMES, evaluation.stats)}
        # precision: [iou thresholds, recall, categories, area ranges, maxDets]
        precision = evaluation.eval['precision'][:, :, :, 0, -1]
        per_class_ap = np.full(self.num_classes, np.nan)
        for k, class_id in enumerate(evaluation.params.catIds):
            values = precision[:, :, k]
            if (values > -1).any():
                per_class_ap[class_id] = values[values > -1].mean()
        results['per_class_ap'] = per_class_ap
        return results
