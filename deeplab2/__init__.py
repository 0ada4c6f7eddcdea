"""deeplab2: Panoptic-DeepLab and DeepLab2 on TensorFlow 2 / Keras 3."""

__version__ = '0.1.0'
