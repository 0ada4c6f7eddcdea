"""Mean intersection-over-union from a streaming confusion matrix."""

from typing import Optional

import numpy as np

from deeplab2.evaluation import label_maps


class MeanIoU:
    """Per-class and mean IoU of semantic maps.

    Ground-truth pixels labelled `ignore_label` are skipped. A prediction of
    `ignore_label` (e.g. void from panoptic post-processing) on a labelled
    pixel counts as a miss for the true class and a hit for no class.
    Classes that appear neither in the ground truth nor in the prediction
    are left out of the mean and are NaN in `per_class_iou`.
    """

    def __init__(self, num_classes: int, ignore_label: int):
        if num_classes <= 0:
            raise ValueError(f'num_classes must be positive, got {num_classes}.')
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.reset_state()

    def reset_state(self) -> None:
        # Rows: true class; columns: predicted class, the last one void.
        self.confusion_matrix = np.zeros(
            (self.num_classes, self.num_classes + 1), np.int64)
        self.num_images = 0

    def merge_state(self, *others: 'MeanIoU') -> None:
        for other in others:
            self.confusion_matrix += other.confusion_matrix
            self.num_images += other.num_images

    def _check_classes(self, present: np.ndarray, what: str, image: str):
        """Raises naming the ids of `present` that are no class."""
        unknown = present[(present >= self.num_classes)
                          & (present != self.ignore_label)]
        if unknown.size:
            raise ValueError(
                f'Image {image}: {what} has unknown class ids '
                f'{unknown.tolist()}; known classes are '
                f'0..{self.num_classes - 1} and the ignore label '
                f'{self.ignore_label}.')

    def _class_column(self, values: np.ndarray) -> np.ndarray:
        """Confusion-matrix column of each id: the class, or the void column
        for every id that is not a class."""
        return np.where(values < self.num_classes, values, self.num_classes)

    def update_state(self, groundtruth_semantic, predicted_semantic,
                     image_name: Optional[str] = None,
                     label_divisor: int = 1) -> None:
        """Accumulates one image of [H, W] integer class maps.

        With `label_divisor`, the maps are panoptic (`class * label_divisor
        + instance`, as read from COCO panoptic files): classes are taken
        per run of equal pixels, which costs far less than dividing every
        pixel first.
        """
        image = label_maps.image_label(image_name, self.num_images)
        if label_divisor < 1:
            raise ValueError(
                f'label_divisor must be positive, got {label_divisor}.')
        groundtruth = label_maps.check_label_map(
            groundtruth_semantic, 'ground-truth semantic map', image)
        prediction = label_maps.check_label_map(
            predicted_semantic, 'predicted semantic map', image)
        label_maps.check_same_shape(groundtruth, prediction, image)
        if groundtruth.size == 0:
            self.num_images += 1
            return
        # Counted per run of pixels where both maps are constant (label
        # maps are piecewise constant), or per pixel for noise-like maps.
        runs = label_maps.pixel_runs([groundtruth, prediction])
        weights = None if runs is None else runs[1]
        true_values = label_maps.run_values(groundtruth, runs)
        predicted_values = label_maps.run_values(prediction, runs)
        for values, what in ((true_values, 'ground-truth semantic map'),
                             (predicted_values, 'predicted semantic map')):
            if values.min() < 0:
                raise ValueError(f'Image {image}: {what} has negative class '
                                 f'id {int(values.min())}.')
        if label_divisor != 1:
            true_values = true_values // label_divisor
            predicted_values = predicted_values // label_divisor
        # One bincount over (true id, predicted id) pairs of the raw ids,
        # folded into the class matrix afterwards.
        true_span = int(true_values.max()) + 1
        predicted_span = int(predicted_values.max()) + 1
        # Native-width keys: bincount would otherwise copy them first.
        keys = true_values.astype(np.intp) * predicted_span
        keys += predicted_values
        pairs = np.bincount(keys, weights=weights,
                            minlength=true_span * predicted_span).reshape(
                                true_span, predicted_span)
        if weights is not None:
            pairs = np.rint(pairs).astype(np.int64)
        true_ids = np.flatnonzero(pairs.sum(axis=1))
        predicted_ids = np.flatnonzero(pairs.sum(axis=0))
        self._check_classes(true_ids, 'ground-truth semantic map', image)
        self._check_classes(predicted_ids, 'predicted semantic map', image)
        labelled = true_ids[true_ids < self.num_classes]
        block = pairs[np.ix_(labelled, predicted_ids)]
        folded = np.zeros((labelled.size, self.num_classes + 1), np.int64)
        np.add.at(folded, (slice(None), self._class_column(predicted_ids)),
                  block)
        self.confusion_matrix[labelled] += folded
        self.num_images += 1

    def result(self) -> dict:
        """`miou` (fraction), `per_class_iou` and the confusion matrix."""
        matrix = self.confusion_matrix
        hits = np.diag(matrix[:, :self.num_classes]).astype(np.float64)
        union = matrix.sum(axis=1) + matrix[:, :self.num_classes].sum(axis=0) - hits
        valid = union > 0
        per_class_iou = np.full(self.num_classes, np.nan)
        per_class_iou[valid] = hits[valid] / union[valid]
        miou = float(per_class_iou[valid].mean()) if valid.any() else 0.0
        pixel_accuracy = (float(hits.sum() / matrix.sum()) if matrix.sum()
                          else 0.0)
        return {'miou': miou, 'per_class_iou': per_class_iou,
                'per_class_valid': valid, 'pixel_accuracy': pixel_accuracy,
                'confusion_matrix': matrix.copy()}
