"""One evaluation pass: inference on the eval pipeline under the strategy,
predictions gathered to the host, cropped back to each image's size and fed
to the streaming metrics named in `METRICS` (PQ, mIoU, AP^Mask).

A metric is a plug-in: one `METRICS` entry saying how to build it from the
dataset descriptor and which ground truth and predictions it reads. The
evaluator builds those whose predictions the model outputs (a semantic-only
model gets mIoU alone) and whose ground truth the dataset has (a
semantic-only dataset has no panoptic labels: mIoU alone, PQ and AP are
not claimed) and merges their `result()` dicts, in table order.
`per_class_by_name` keys the per-class values by the dataset's class names
(what eval_results.json shows).
"""

import dataclasses
from typing import Callable

from absl import logging
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data import datasets
from deeplab2.evaluation import InstanceAP
from deeplab2.evaluation import MeanIoU
from deeplab2.evaluation import PanopticQuality


@dataclasses.dataclass(frozen=True)
class MetricPlugin:
    """How the evaluator builds and feeds one streaming metric.

    Attributes:
      build: descriptor -> a metric with `update_state(groundtruth,
        *predictions, image_name=...)` and `result() -> dict`.
      label_key: the ground-truth map it reads (at the raw image size).
      prediction_keys: the predictions it reads, in `update_state`'s order,
        among the per-image maps (`_PER_IMAGE_KEYS`); the metric is used
        only when the model outputs all of them (and the dataset has
        `label_key`).
    """
    build: Callable[[datasets.DatasetDescriptor], object]
    label_key: str
    prediction_keys: tuple[str, ...]

    def applies_to(self, predictions, labels=None) -> bool:
        """Whether the model's `predictions` and the dataset's `labels`
        (keys or dicts; None: not checked) hold what the metric reads."""
        return (all(key in predictions for key in self.prediction_keys)
                and (labels is None or self.label_key in labels))

    def update(self, metric, image_name: str, predictions: dict,
               labels: dict) -> None:
        metric.update_state(labels[self.label_key],
                            *(predictions[key]
                              for key in self.prediction_keys),
                            image_name=image_name)


def _mean_iou(descriptor):
    return MeanIoU(descriptor.num_classes, descriptor.ignore_label)


def _on_panoptic_maps(metric_class):
    """The factory of a metric of panoptic maps: they all take the classes,
    the void label, the label divisor and the thing classes."""
    def build(descriptor):
        return metric_class(
            num_classes=descriptor.num_classes,
            ignore_label=descriptor.ignore_label,
            label_divisor=descriptor.panoptic_label_divisor,
            thing_class_ids=descriptor.class_has_instances_list)
    return build


# name -> plug-in; adding a metric is adding an entry.
METRICS = {
    'miou': MetricPlugin(_mean_iou, common.GT_SEMANTIC_RAW,
                         (common.PRED_SEMANTIC_KEY,)),
    'pq': MetricPlugin(_on_panoptic_maps(PanopticQuality),
                       common.GT_PANOPTIC_RAW, (common.PRED_PANOPTIC_KEY,)),
    'ap': MetricPlugin(_on_panoptic_maps(InstanceAP), common.GT_PANOPTIC_RAW,
                       (common.PRED_PANOPTIC_KEY,
                        common.PRED_INSTANCE_SCORES_KEY)),
}


def build_metrics(descriptor: datasets.DatasetDescriptor,
                  predictions, labels=None) -> dict:
    """{name: new metric} for each `METRICS` entry whose predictions are
    all among `predictions` (prediction keys, or a prediction dict) and,
    when `labels` (ground-truth keys or dict) is given, whose ground truth
    is among them."""
    metrics = {}
    for name, plugin in METRICS.items():
        if not plugin.applies_to(predictions):
            continue
        if not plugin.applies_to(predictions, labels):
            logging.info('%s not computed: the eval data of %r has no %s '
                         '(a semantic-only dataset has no panoptic labels).',
                         name, descriptor.name, plugin.label_key)
            continue
        metrics[name] = plugin.build(descriptor)
    return metrics


# Per-class result arrays (indexed by semantic label) -> the name each value
# has per class in `per_class_by_name`.
PER_CLASS_KEYS = {'per_class_iou': 'iou', 'per_class_pq': 'pq',
                  'per_class_sq': 'sq', 'per_class_rq': 'rq',
                  'per_class_ap': 'ap'}


def per_class_by_name(results: dict,
                      descriptor: datasets.DatasetDescriptor) -> dict:
    """{class name: {'iou', 'pq', 'sq', 'rq', 'ap': value}} from the
    per-class arrays among `results` (an `evaluate` result), keyed by the
    descriptor's class names (the label as text where it has none).

    Only defined values appear: a class no metric could score (absent from
    ground truth and predictions, or the void label) is left out, and so
    is a metric the model's outputs did not allow (a semantic-only model
    has IoU alone). Plain floats: ready for JSON.
    """
    names = descriptor.class_names or tuple(
        str(label) for label in range(descriptor.num_classes))
    by_name = {}
    for key, short in PER_CLASS_KEYS.items():
        if key not in results:
            continue
        for label, value in enumerate(np.asarray(results[key],
                                                 np.float64)):
            if label < len(names) and np.isfinite(value):
                by_name.setdefault(names[label], {})[short] = float(value)
    return by_name


def restore_size(prediction: np.ndarray, resized_size, raw_size):
    """[H, W(, C)] map on the padded crop -> [h, w(, C)] on the raw image.

    The eval pipeline pads at the bottom/right, so the image occupies the
    top-left `resized_size`; a resized image maps back by nearest neighbour.
    """
    height, width = int(resized_size[0]), int(resized_size[1])
    prediction = prediction[:height, :width]
    raw = (int(raw_size[0]), int(raw_size[1]))
    if (height, width) == raw:
        return prediction
    flat = prediction.ndim == 2
    resized = tf.image.resize(prediction[..., None] if flat else prediction,
                              raw, method='nearest').numpy()
    return resized[..., 0] if flat else resized


def _drop_channel(value: np.ndarray) -> np.ndarray:
    """[H, W, 1] -> [H, W] (the center heatmap); other maps unchanged."""
    return value[..., 0] if value.ndim == 3 and value.shape[-1] == 1 else value


class Evaluator:
    """Args:
      strategy: the tf.distribute strategy.
      inference: callable images -> predictions (deeplab2.model.inference).
      descriptor: the eval dataset's descriptor.
      on_host: `inference` is a numpy function (float32 [B, H, W, 3]
        images in [0, 255] -> dict of numpy maps), run eagerly outside the
        strategy: an exported model's runtime (deeplab2.evaluate_export).
    """

    def __init__(self, strategy, inference, descriptor,
                 on_host: bool = False):
        self.strategy = strategy
        self.descriptor = descriptor
        if on_host:
            self._predict = lambda images: inference(np.asarray(images))
        else:
            self._predict = tf.function(
                lambda images: strategy.run(inference, args=(images,)))

    def evaluate(self, dataset: tf.data.Dataset, eval_steps: int = -1,
                 on_image=None) -> dict:
        """Runs one pass (or eval_steps batches); returns the metric values.

        on_image(name, image, predictions, labels) is called with each
        image's maps at its own size (e.g. image summaries and a
        PredictionWriter's `write`).
        """
        metrics = None
        distributed = self.strategy.experimental_distribute_dataset(
            _pad_for_replicas(dataset, self.strategy.num_replicas_in_sync))
        for step, inputs in enumerate(distributed):
            if 0 <= eval_steps <= step:
                break
            predictions = _to_host(self.strategy, self._predict(
                inputs[common.IMAGE]))
            inputs = _to_host(self.strategy, inputs)
            real = inputs.pop(_REAL_EXAMPLE, None)
            if real is not None:
                inputs = {key: value[real] for key, value in inputs.items()}
                predictions = {key: value[real]
                               for key, value in predictions.items()}
            if metrics is None:
                metrics = build_metrics(self.descriptor, [
                    key for key in _PER_IMAGE_KEYS if key in predictions],
                    [key for key in _LABEL_KEYS if key in inputs])
            for name, image, restored, labels in _images(inputs,
                                                         predictions):
                _update(metrics, name, restored, labels)
                if on_image is not None:
                    on_image(name, image, restored, labels)
        if metrics is None:
            raise ValueError('The eval dataset produced no batch.')
        results = {}
        for metric in metrics.values():
            results.update(metric.result())
        return results


_REAL_EXAMPLE = 'is_real_example'


def _pad_for_replicas(dataset: tf.data.Dataset, replicas: int):
    """Pads each batch to a multiple of the replica count by repeating its
    last example, marked unreal, so no replica gets an empty batch (a
    partial last batch would otherwise leave one empty, and convolutions
    reject empty inputs); the evaluator drops the padding on the host."""
    if replicas == 1:
        return dataset

    def pad(batch):
        size = tf.shape(batch[common.IMAGE])[0]
        missing = (replicas - size % replicas) % replicas
        padded = {key: tf.concat([value, tf.repeat(value[-1:], missing, 0)],
                                 axis=0)
                  for key, value in batch.items()}
        padded[_REAL_EXAMPLE] = tf.range(size + missing) < size
        return padded

    return dataset.map(pad)


# Per-pixel predictions carried to the image's own size (the others, such
# as logits, stay on the padded crop and are not needed per image).
_PER_IMAGE_KEYS = (common.PRED_SEMANTIC_KEY, common.PRED_PANOPTIC_KEY,
                   common.PRED_INSTANCE_KEY, common.PRED_INSTANCE_SCORES_KEY,
                   common.PRED_CENTER_HEATMAP_KEY)


# The raw ground-truth maps metrics read (a semantic-only dataset has the
# semantic one alone).
_LABEL_KEYS = (common.GT_SEMANTIC_RAW, common.GT_PANOPTIC_RAW)


def _images(inputs: dict, predictions: dict):
    """Yields (name, image, predictions, labels) per image of a host batch,
    each map cropped/resized back to the raw image size."""
    for i in range(len(inputs[common.GT_SIZE_RAW])):
        name = inputs[common.IMAGE_NAME][i].decode()
        raw_size = inputs[common.GT_SIZE_RAW][i]
        resized_size = inputs[common.RESIZED_IMAGE][i].shape[:2] if (
            common.RESIZED_IMAGE in inputs) else raw_size
        restored = {key: restore_size(_drop_channel(predictions[key][i]),
                                      resized_size, raw_size)
                    for key in _PER_IMAGE_KEYS if key in predictions}
        image = restore_size(inputs[common.IMAGE][i], resized_size, raw_size)
        labels = {key: inputs[key][i] for key in _LABEL_KEYS
                  if key in inputs}
        yield name, image, restored, labels


def _update(metrics: dict, name: str, predictions: dict, labels: dict):
    for key, metric in metrics.items():
        METRICS[key].update(metric, name, predictions, labels)


def _to_host(strategy, values) -> dict:
    """Per-replica tensors -> numpy arrays concatenated over replicas."""
    def gather(value):
        parts = strategy.experimental_local_results(value)
        return np.concatenate([np.asarray(part) for part in parts], axis=0)
    return {key: gather(value) for key, value in values.items()}
