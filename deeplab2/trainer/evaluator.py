"""One evaluation pass: inference on the eval pipeline under the strategy,
predictions gathered to the host, cropped back to each image's size and fed
to the streaming metrics (PQ, mIoU, AP^Mask)."""

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data import datasets
from deeplab2.evaluation import InstanceAP
from deeplab2.evaluation import MeanIoU
from deeplab2.evaluation import PanopticQuality


def build_metrics(descriptor: datasets.DatasetDescriptor,
                  panoptic: bool = True) -> dict:
    """The metrics a dataset is evaluated with."""
    metrics = {'miou': MeanIoU(descriptor.num_classes,
                               descriptor.ignore_label)}
    if panoptic:
        metrics['pq'] = PanopticQuality(
            num_classes=descriptor.num_classes,
            ignore_label=descriptor.ignore_label,
            label_divisor=descriptor.panoptic_label_divisor,
            thing_class_ids=descriptor.class_has_instances_list)
        metrics['ap'] = InstanceAP(
            num_classes=descriptor.num_classes,
            ignore_label=descriptor.ignore_label,
            label_divisor=descriptor.panoptic_label_divisor,
            thing_class_ids=descriptor.class_has_instances_list)
    return metrics


def restore_size(prediction: np.ndarray, resized_size, raw_size):
    """[H, W] prediction on the padded crop -> [h, w] on the raw image.

    The eval pipeline pads at the bottom/right, so the image occupies the
    top-left `resized_size`; a resized image maps back by nearest neighbour.
    """
    height, width = int(resized_size[0]), int(resized_size[1])
    prediction = prediction[:height, :width]
    if (height, width) != (int(raw_size[0]), int(raw_size[1])):
        prediction = tf.image.resize(
            prediction[..., None], [int(raw_size[0]), int(raw_size[1])],
            method='nearest').numpy()[..., 0]
    return prediction


class Evaluator:
    """Args:
      strategy: the tf.distribute strategy.
      inference: callable images -> predictions (deeplab2.model.inference).
      descriptor: the eval dataset's descriptor.
    """

    def __init__(self, strategy, inference, descriptor):
        self.strategy = strategy
        self.descriptor = descriptor
        self._predict = tf.function(
            lambda images: strategy.run(inference, args=(images,)))

    def evaluate(self, dataset: tf.data.Dataset, eval_steps: int = -1,
                 on_batch=None) -> dict:
        """Runs one pass (or eval_steps batches); returns the metric values.

        on_batch(inputs, predictions) is called with host numpy dicts, e.g.
        to save visualizations.
        """
        metrics = None
        distributed = self.strategy.experimental_distribute_dataset(dataset)
        for step, inputs in enumerate(distributed):
            if 0 <= eval_steps <= step:
                break
            predictions = _to_host(self.strategy, self._predict(
                inputs[common.IMAGE]))
            inputs = _to_host(self.strategy, inputs)
            if metrics is None:
                metrics = build_metrics(
                    self.descriptor,
                    panoptic=common.PRED_PANOPTIC_KEY in predictions)
            self._update(metrics, inputs, predictions)
            if on_batch is not None:
                on_batch(inputs, predictions)
        if metrics is None:
            raise ValueError('The eval dataset produced no batch.')
        results = {}
        for metric in metrics.values():
            results.update(metric.result())
        return results

    def _update(self, metrics, inputs, predictions):
        for i in range(len(inputs[common.GT_SIZE_RAW])):
            name = inputs[common.IMAGE_NAME][i].decode()
            raw_size = inputs[common.GT_SIZE_RAW][i]
            resized_size = inputs[common.RESIZED_IMAGE][i].shape[:2] if (
                common.RESIZED_IMAGE in inputs) else raw_size

            def restore(key):
                return restore_size(predictions[key][i], resized_size,
                                    raw_size)

            metrics['miou'].update_state(
                inputs[common.GT_SEMANTIC_RAW][i],
                restore(common.PRED_SEMANTIC_KEY), image_name=name)
            if 'pq' in metrics:
                panoptic = restore(common.PRED_PANOPTIC_KEY)
                metrics['pq'].update_state(
                    inputs[common.GT_PANOPTIC_RAW][i], panoptic,
                    image_name=name)
                metrics['ap'].update_state(
                    inputs[common.GT_PANOPTIC_RAW][i], panoptic,
                    restore(common.PRED_INSTANCE_SCORES_KEY),
                    image_name=name)


def _to_host(strategy, values) -> dict:
    """Per-replica tensors -> numpy arrays concatenated over replicas."""
    def gather(value):
        parts = strategy.experimental_local_results(value)
        return np.concatenate([np.asarray(part) for part in parts], axis=0)
    return {key: gather(value) for key, value in values.items()}
