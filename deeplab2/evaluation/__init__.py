"""Streaming evaluation metrics on label maps (numpy, pycocotools).

Each metric is built from plain values, accumulates one image per
`update_state` call and reduces in `result()`. They do not depend on the
model: the evaluator feeds them post-processed predictions.
"""

from deeplab2.evaluation.instance_ap import InstanceAP
from deeplab2.evaluation.mean_iou import MeanIoU
from deeplab2.evaluation.panoptic_quality import PanopticQuality

__all__ = ['InstanceAP', 'MeanIoU', 'PanopticQuality']
