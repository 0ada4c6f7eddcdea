"""Panoptic-DeepLab losses: top-k softmax cross-entropy, MSE and L1.

Names load on first use (they import TensorFlow).
"""

from deeplab2 import lazy_exports

_EXPORTS = {
    'PanopticDeepLabLoss': 'deeplab2.loss.panoptic_deeplab',
    'average_top_k_loss': 'deeplab2.loss.base_loss',
    'build_loss': 'deeplab2.loss.builder',
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports.attach(__name__, _EXPORTS)
