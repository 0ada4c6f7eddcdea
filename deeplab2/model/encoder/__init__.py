"""Encoders (backbones): image -> dict of feature maps by stride level."""
