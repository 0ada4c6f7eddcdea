"""Streaming evaluation metrics on label maps (numpy, pycocotools).

Each metric is built from plain values, accumulates one image per
`update_state` call and reduces in `result()`. They do not depend on the
model: the evaluator feeds them post-processed predictions.

Names load on first use, so converters importing
`deeplab2.evaluation.coco_panoptic_format` do not pay for pycocotools.
"""

from deeplab2 import lazy_exports

_EXPORTS = {
    'InstanceAP': 'deeplab2.evaluation.instance_ap',
    'MeanIoU': 'deeplab2.evaluation.mean_iou',
    'PanopticQuality': 'deeplab2.evaluation.panoptic_quality',
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports.attach(__name__, _EXPORTS)
