"""Decoders: ASPP, DeepLabV3, DeepLabV3+, Panoptic-DeepLab and its heads."""
