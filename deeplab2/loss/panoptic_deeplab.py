"""The Panoptic-DeepLab multi-task loss: semantic + center + offset terms."""

import tensorflow as tf

from deeplab2 import common
from deeplab2.loss import base_loss

# Regression losses by config name.
REGRESSION_ERRORS = {
    'mse': base_loss.squared_error,
    'l1': base_loss.absolute_error,
}


class PanopticDeepLabLoss:
    """Weighted sum of the Panoptic-DeepLab loss terms, per example.

    Each term is a per-pixel loss times its weight map (from the ground-truth
    dict), averaged per example over its top-k non-zero pixels (see
    `base_loss.average_top_k_loss`), then multiplied by its config weight.

    A term whose weight is None is absent. A configured center or regression
    term is also skipped when the predictions lack its key, so a
    semantic-only model (DeepLabV3/V3+) gets only the semantic term.

    Returns (from `__call__`), like DeepLab2, a dict of **per-example** [B]
    float32 tensors, in DeepLab2's order: CENTER_LOSS, REGRESSION_LOSS,
    SEMANTIC_LOSS (those present), then TOTAL_LOSS, their sum. Each is
    already multiplied by its config weight.

    Reduction for training: DeepLab2 back-propagates, on each replica, the
    mean over the replica's batch divided by the number of replicas (a NaN
    mean becomes 0). With equal per-replica batches this is the global-batch
    mean; the trainer should compute it as sum over the replica's examples /
    global batch size and let the optimizer sum gradients across replicas.
    """

    def __init__(self, num_classes: int, ignore_label: int | None,
                 semantic_loss_weight: float | None = 1.0,
                 semantic_top_k_percent: float = 1.0,
                 center_loss_weight: float | None = None,
                 center_top_k_percent: float = 1.0,
                 center_loss_name: str = 'mse',
                 regression_loss_weight: float | None = None,
                 regression_top_k_percent: float = 1.0,
                 regression_loss_name: str = 'l1'):
        for field, value in (('semantic_top_k_percent', semantic_top_k_percent),
                             ('center_top_k_percent', center_top_k_percent),
                             ('regression_top_k_percent',
                              regression_top_k_percent)):
            base_loss.check_top_k_percent(value, field)
        for field, name in (('center_loss_name', center_loss_name),
                            ('regression_loss_name', regression_loss_name)):
            if name not in REGRESSION_ERRORS:
                raise ValueError(f'{field} must be one of '
                                 f'{sorted(REGRESSION_ERRORS)}, got {name!r}.')
        if (semantic_loss_weight is None and center_loss_weight is None
                and regression_loss_weight is None):
            raise ValueError('PanopticDeepLabLoss needs at least one term.')
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.semantic_loss_weight = semantic_loss_weight
        self.semantic_top_k_percent = semantic_top_k_percent
        self.center_loss_weight = center_loss_weight
        self.center_top_k_percent = center_top_k_percent
        self.center_loss_name = center_loss_name
        self.regression_loss_weight = regression_loss_weight
        self.regression_top_k_percent = regression_top_k_percent
        self.regression_loss_name = regression_loss_name

    def loss_names(self) -> list[str]:
        """The keys `__call__` returns when every prediction is present."""
        names = [name for name, weight in (
            (common.CENTER_LOSS, self.center_loss_weight),
            (common.REGRESSION_LOSS, self.regression_loss_weight),
            (common.SEMANTIC_LOSS, self.semantic_loss_weight))
                 if weight is not None]
        return names + [common.TOTAL_LOSS]

    def __call__(self, ground_truth: dict, predictions: dict) -> dict:
        """Args: ground_truth with the GT_* and *_LOSS_WEIGHT_KEY tensors
        ([B,H,W], offsets [B,H,W,2]); predictions with semantic_logits
        [B,H,W,C], center_heatmap [B,H,W], offset_map [B,H,W,2], all at the
        ground truth's resolution. Returns {term: [B]} (see the class)."""
        terms = {}
        if (self.center_loss_weight is not None
                and common.PRED_CENTER_HEATMAP_KEY in predictions):
            terms[common.CENTER_LOSS] = self.center_loss_weight * _regression(
                REGRESSION_ERRORS[self.center_loss_name], ground_truth,
                predictions, common.GT_INSTANCE_CENTER_KEY,
                common.PRED_CENTER_HEATMAP_KEY, common.CENTER_LOSS_WEIGHT_KEY,
                self.center_top_k_percent)
        if (self.regression_loss_weight is not None
                and common.PRED_OFFSET_MAP_KEY in predictions):
            terms[common.REGRESSION_LOSS] = (
                self.regression_loss_weight * _regression(
                    REGRESSION_ERRORS[self.regression_loss_name], ground_truth,
                    predictions, common.GT_INSTANCE_REGRESSION_KEY,
                    common.PRED_OFFSET_MAP_KEY,
                    common.REGRESSION_LOSS_WEIGHT_KEY,
                    self.regression_top_k_percent))
        if self.semantic_loss_weight is not None:
            terms[common.SEMANTIC_LOSS] = (
                self.semantic_loss_weight * self._semantic(ground_truth,
                                                           predictions))
        if not terms:
            raise KeyError('No loss term applies: the predictions hold none '
                           f'of the configured terms ({self.loss_names()}); '
                           f'got keys {sorted(predictions)}.')
        terms[common.TOTAL_LOSS] = tf.add_n(list(terms.values()))
        return terms

    def _semantic(self, ground_truth, predictions):
        labels, weights = _get(ground_truth, common.GT_SEMANTIC_KEY,
                               common.SEMANTIC_LOSS_WEIGHT_KEY)
        logits = _get(predictions, common.PRED_SEMANTIC_LOGITS_KEY)[0]
        _check_spatial(labels, logits, common.PRED_SEMANTIC_LOGITS_KEY)
        if logits.shape[-1] is not None and logits.shape[-1] != self.num_classes:
            raise ValueError(
                f'{common.PRED_SEMANTIC_LOGITS_KEY} has {logits.shape[-1]} '
                f'channels but the loss expects num_classes={self.num_classes}.')
        weighted = base_loss.softmax_cross_entropy(
            labels, logits, weights, self.num_classes, self.ignore_label)
        return base_loss.average_top_k_loss(weighted,
                                            self.semantic_top_k_percent)


def _regression(error_fn, ground_truth, predictions, gt_key, pred_key,
                weight_key, top_k_percent):
    target, weights = _get(ground_truth, gt_key, weight_key)
    prediction = _get(predictions, pred_key)[0]
    if prediction.shape.rank != target.shape.rank:
        raise ValueError(f'{pred_key} has shape {prediction.shape} but '
                         f'{gt_key} has shape {target.shape}; ranks must agree '
                         '(the center heatmap is [B,H,W]).')
    _check_spatial(target, prediction, pred_key)
    weighted = base_loss.weighted_regression_loss(error_fn, target,
                                                  prediction, weights)
    return base_loss.average_top_k_loss(weighted, top_k_percent)


def _get(tensors: dict, *keys):
    missing = [key for key in keys if key not in tensors]
    if missing:
        raise KeyError(f'The loss needs {missing}, missing from the dict with '
                       f'keys {sorted(tensors)}.')
    return [tensors[key] for key in keys]


def _check_spatial(target, prediction, pred_key):
    target_hw = target.shape[1:3]
    prediction_hw = prediction.shape[1:3]
    if (target_hw.is_fully_defined() and prediction_hw.is_fully_defined()
            and target_hw != prediction_hw):
        raise ValueError(f'{pred_key} is {prediction_hw.as_list()} but the '
                         f'ground truth is {target_hw.as_list()}: resize the '
                         'predictions to the ground-truth size first.')
