"""Bilinear resizing as DeepLab2 does it (align_corners=True), and the
matching rescaling of offset vectors."""

import tensorflow as tf


def resize_align_corners(images, size):
    """Bilinear resize of [B, h, w, C] to [B, size[0], size[1], C] with
    corner pixels aligned (tf.compat.v1 semantics, DeepLab2's choice).

    A no-op when the static size already matches."""
    if isinstance(size, (list, tuple)) and all(
            isinstance(s, int) for s in size) and tuple(
                images.shape[1:3]) == tuple(size):
        return images
    dtype = images.dtype
    resized = tf.raw_ops.ResizeBilinear(
        images=tf.cast(images, tf.float32), size=tf.cast(size, tf.int32),
        align_corners=True, half_pixel_centers=False)
    return tf.cast(resized, dtype)


def resize_and_rescale_offsets(offsets, size):
    """Resizes [B, h, w, 2] (dy, dx) offsets to `size` and scales them to
    the new pixel grid: with aligned corners, one pixel at size h spans
    (H - 1) / (h - 1) pixels at size H."""
    shape = tf.shape(offsets)
    source = tf.cast(shape[1:3], tf.float32)
    target = tf.cast(tf.stack(size), tf.float32)
    scale = (target - 1.0) / (source - 1.0)
    offsets = offsets * tf.cast(scale, offsets.dtype)
    return resize_align_corners(offsets, size)
