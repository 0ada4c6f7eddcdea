"""Panoptic quality (Kirillov et al., CVPR 2019), streaming over images.

The matching rules are those of the COCO / Cityscapes panoptic evaluators
(cityscapesscripts.evaluation.evalPanopticSemanticLabeling), so the numbers
agree with the benchmark server:

- Ground-truth void is every pixel whose class is `ignore_label`. A
  ground-truth crowd region is a thing-class pixel with instance id 0.
- A ground-truth and a predicted segment of the same class match when their
  IoU exceeds 0.5, the union leaving out the predicted pixels on void.
  Crowd regions never match.
- An unmatched predicted segment is a false positive unless more than half
  of it lies on void plus the crowd region of its own class.
- Predicted pixels of class `ignore_label` are not a segment.
- Classes without any true positive, false positive or false negative are
  left out of the averages (and are NaN in the per-class arrays).
"""

from typing import Iterable, Optional

import numpy as np

from deeplab2.evaluation import label_maps


class PanopticQuality:
    """PQ, SQ and RQ overall, for things, for stuff and per class.

    Args:
      num_classes: number of semantic classes; classes are 0..num_classes-1.
      ignore_label: the void class id (may lie outside 0..num_classes-1).
      label_divisor: panoptic id = class * label_divisor + instance.
      thing_class_ids: classes that have instances; the others are stuff.
      offset: upper bound (exclusive) on panoptic ids, as in DeepLab2. By
        default the smallest bound that holds every known class.
    """

    def __init__(self, num_classes: int, ignore_label: int,
                 label_divisor: int, thing_class_ids: Iterable[int],
                 offset: Optional[int] = None):
        if num_classes <= 0 or label_divisor <= 0 or ignore_label < 0:
            raise ValueError(
                'num_classes and label_divisor must be positive and '
                f'ignore_label non-negative, got {num_classes}, '
                f'{label_divisor}, {ignore_label}.')
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.label_divisor = label_divisor
        self.thing_class_ids = tuple(sorted(set(int(c) for c in thing_class_ids)))
        if any(not 0 <= c < num_classes for c in self.thing_class_ids):
            raise ValueError(f'thing_class_ids {self.thing_class_ids} must lie '
                             f'in [0, {num_classes}).')
        needed = label_maps.id_bound(num_classes, ignore_label, label_divisor)
        self.offset = needed if offset is None else int(offset)
        if self.offset < needed:
            raise ValueError(f'offset {self.offset} cannot hold the ids of '
                             f'{num_classes} classes and ignore label '
                             f'{ignore_label} (needs {needed}).')
        self._is_thing = np.zeros(max(num_classes, ignore_label + 1), bool)
        self._is_thing[list(self.thing_class_ids)] = True
        self.reset_state()

    def reset_state(self) -> None:
        self.iou_sum = np.zeros(self.num_classes, np.float64)
        self.tp = np.zeros(self.num_classes, np.int64)
        self.fp = np.zeros(self.num_classes, np.int64)
        self.fn = np.zeros(self.num_classes, np.int64)
        self.num_images = 0

    def merge_state(self, *others: 'PanopticQuality') -> None:
        """Adds the counts of metrics that saw other images (e.g. workers)."""
        for other in others:
            self.iou_sum += other.iou_sum
            self.tp += other.tp
            self.fp += other.fp
            self.fn += other.fn
            self.num_images += other.num_images

    def update_state(self, groundtruth, prediction,
                     image_name: Optional[str] = None) -> None:
        """Accumulates one image.

        Args:
          groundtruth: [H, W] int panoptic map `class * label_divisor +
            instance`.
          prediction: [H, W] int panoptic map, same encoding.
          image_name: named in errors (default: the call's index).
        """
        image = label_maps.image_label(image_name, self.num_images)
        groundtruth = label_maps.check_label_map(
            groundtruth, 'ground-truth panoptic map', image)
        prediction = label_maps.check_label_map(
            prediction, 'predicted panoptic map', image)
        label_maps.check_same_shape(groundtruth, prediction, image)
        runs = label_maps.pixel_runs([groundtruth, prediction])
        weights = None if runs is None else runs[1]
        prediction_table = label_maps.panoptic_segments(
            label_maps.run_values(prediction, runs), 'predicted panoptic map',
            image, self.num_classes, self.ignore_label, self.label_divisor,
            weights=weights)
        # Ground-truth rows pre-multiplied by the number of predicted
        # segments: pair keys are then one addition.
        groundtruth_table = label_maps.panoptic_segments(
            label_maps.run_values(groundtruth, runs),
            'ground-truth panoptic map', image, self.num_classes,
            self.ignore_label, self.label_divisor,
            row_scale=prediction_table[0].size, weights=weights)
        iou_sum, tp, fp, fn = self._image_counts(groundtruth_table,
                                                 prediction_table, weights)
        self.iou_sum += iou_sum
        self.tp += tp
        self.fp += fp
        self.fn += fn
        self.num_images += 1

    def _image_counts(self, gt_table, pred_table, weights=None):
        """Per-class (iou_sum, tp, fp, fn) of one image from the segment
        tables (label_maps.segment_table) of ground truth (its index scaled
        by the number of predicted segments) and prediction, over pixels or
        over runs of `weights` pixels."""
        divisor = self.label_divisor
        gt_ids, gt_areas, gt_scaled_index = gt_table
        pred_ids, pred_areas, pred_index = pred_table
        # [num_gt, num_pred] pixel counts of every segment pair.
        pair_keys = gt_scaled_index
        pair_keys += pred_index
        intersection = np.bincount(
            pair_keys, weights=weights,
            minlength=gt_ids.size * pred_ids.size).reshape(
                gt_ids.size, pred_ids.size)
        if weights is not None:
            intersection = np.rint(intersection).astype(np.int64)

        gt_class, pred_class = gt_ids // divisor, pred_ids // divisor
        gt_void = gt_class == self.ignore_label
        gt_crowd = ~gt_void & self._is_thing[gt_class] & (gt_ids % divisor == 0)
        pred_void = pred_class == self.ignore_label
        same_class = gt_class[:, None] == pred_class[None, :]
        on_void = intersection[gt_void].sum(axis=0)

        candidate = (same_class & (intersection > 0)
                     & ~(gt_void | gt_crowd)[:, None] & ~pred_void[None, :])
        union = (gt_areas[:, None] + pred_areas[None, :] - intersection
                 - on_void[None, :])
        iou = np.where(candidate, intersection / np.maximum(union, 1), 0.0)
        # IoU > 0.5 makes a match unique in both directions.
        matched = iou > 0.5
        gt_rows, _ = np.nonzero(matched)
        n = self.num_classes
        tp = np.bincount(gt_class[gt_rows], minlength=n)
        iou_sum = np.bincount(gt_class[gt_rows], weights=iou[matched],
                              minlength=n)

        missed = ~(gt_void | gt_crowd | matched.any(axis=1))
        fn = np.bincount(gt_class[missed], minlength=n)

        on_crowd = (intersection * (gt_crowd[:, None] & same_class)).sum(axis=0)
        ignored = (on_void + on_crowd) / pred_areas > 0.5
        spurious = ~(pred_void | matched.any(axis=0) | ignored)
        fp = np.bincount(pred_class[spurious], minlength=n)
        return iou_sum[:n], tp[:n], fp[:n], fn[:n]

    def result(self) -> dict:
        """PQ/SQ/RQ as fractions in [0, 1], overall, things, stuff, per class.

        Averages over no class are 0. Per-class arrays hold NaN for the
        classes left out (no tp, fp or fn); `per_class_valid` marks the rest.
        """
        tp, fp, fn = (a.astype(np.float64) for a in (self.tp, self.fp, self.fn))
        valid = (self.tp + self.fp + self.fn) > 0
        with np.errstate(divide='ignore', invalid='ignore'):
            denominator = tp + 0.5 * fp + 0.5 * fn
            pq = np.where(valid, self.iou_sum / denominator, np.nan)
            sq = np.where(valid, np.where(tp > 0, self.iou_sum / tp, 0.0),
                          np.nan)
            rq = np.where(valid, tp / denominator, np.nan)
        is_thing = self._is_thing[:self.num_classes]
        results = {}
        for suffix, subset in (('', np.ones_like(valid)),
                               ('_thing', is_thing), ('_stuff', ~is_thing)):
            chosen = valid & subset
            count = int(chosen.sum())
            for name, values in (('pq', pq), ('sq', sq), ('rq', rq)):
                results[name + suffix] = (float(values[chosen].sum() / count)
                                          if count else 0.0)
            results['num_classes' + suffix] = count
        results.update(
            per_class_pq=pq, per_class_sq=sq, per_class_rq=rq,
            per_class_valid=valid, per_class_tp=self.tp.copy(),
            per_class_fp=self.fp.copy(), per_class_fn=self.fn.copy(),
            per_class_iou_sum=self.iou_sum.copy())
        return results
