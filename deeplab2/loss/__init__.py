"""Panoptic-DeepLab losses: top-k softmax cross-entropy, MSE and L1."""

from deeplab2.loss.base_loss import average_top_k_loss
from deeplab2.loss.builder import build_loss
from deeplab2.loss.panoptic_deeplab import PanopticDeepLabLoss

__all__ = ['PanopticDeepLabLoss', 'average_top_k_loss', 'build_loss']
