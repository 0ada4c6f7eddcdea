"""Per-pixel losses and DeepLab2's per-image top-k averaging.

Every function here is pure TF and returns one value per example; the
caller (the trainer) reduces over the batch.
"""

import tensorflow as tf


def check_top_k_percent(top_k_percent: float, field: str = 'top_k_percent'):
    """Raises ValueError unless 0 <= top_k_percent <= 1."""
    if not 0.0 <= top_k_percent <= 1.0:
        raise ValueError(f'{field} must lie in [0, 1], got {top_k_percent}.')


def average_top_k_loss(weighted_loss: tf.Tensor,
                       top_k_percent: float) -> tf.Tensor:
    """Mean of the largest weighted pixel losses of each example.

    Args:
      weighted_loss: [B, ...] per-pixel loss already multiplied by weights.
      top_k_percent: fraction of each example's pixels kept; 1.0 keeps all.
        k = round(top_k_percent * pixels) in float32, half to even.

    Returns:
      [B]: sum of the kept values / number of non-zero kept values (0 where
      none is non-zero). The weights therefore scale the numerator only; they
      reach the denominator only by being zero.
    """
    batch = tf.shape(weighted_loss)[0]
    flat = tf.reshape(weighted_loss, tf.stack([batch, -1]))
    if top_k_percent != 1.0:
        pixels = tf.cast(tf.shape(flat)[1], tf.float32)
        k = tf.cast(tf.math.round(tf.constant(top_k_percent, tf.float32) *
                                  pixels), tf.int32)
        flat = tf.math.top_k(flat, k, sorted=False).values  # row-wise
    non_zero = tf.reduce_sum(tf.cast(tf.not_equal(flat, 0.0), tf.float32), 1)
    return tf.math.divide_no_nan(tf.reduce_sum(flat, 1), non_zero)


def squared_error(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """[B,H,W] -> [B,H,W]; [B,H,W,C] -> [B,H,W] (mean over channels)."""
    return _per_pixel(tf.square(target - prediction), prediction, 'mse')


def absolute_error(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """[B,H,W] -> [B,H,W]; [B,H,W,C] -> [B,H,W] (mean over channels)."""
    return _per_pixel(tf.abs(target - prediction), prediction, 'l1')


def _per_pixel(error, prediction, name):
    rank = prediction.shape.rank
    if rank == 3:
        return error
    if rank == 4:
        return tf.reduce_mean(error, axis=3)
    raise ValueError(f'{name} loss needs a rank 3 or 4 prediction, got shape '
                     f'{prediction.shape}.')


def softmax_cross_entropy(labels: tf.Tensor, logits: tf.Tensor,
                          weights: tf.Tensor, num_classes: int,
                          ignore_label: int | None):
    """Weighted per-pixel softmax cross-entropy.

    Args:
      labels: [B,H,W] integer class ids; `ignore_label` marks void.
      logits: [B,H,W,C] with C == num_classes.
      weights: [B,H,W] per-pixel weights.

    Returns:
      [B,H,W] cross-entropy * weights, 0 on ignore pixels (their one-hot row
      is all zeros and their weight is zeroed).
    """
    labels = tf.cast(labels, tf.int32)
    weights = tf.cast(weights, tf.float32)
    logits = tf.cast(logits, tf.float32)
    if ignore_label is not None:
        weights *= tf.cast(tf.not_equal(labels, ignore_label), tf.float32)
    # -log softmax(logits)[label] = logsumexp(logits) - logits[label]. On CPU
    # this takes 9 ms where softmax_cross_entropy_with_logits on one-hot
    # labels takes 15 (forward and gradient, 1x257x513x19, 2-core EPYC);
    # the gradient is the same softmax - one_hot. A label outside
    # [0, num_classes) (an ignore_label of 255, say) gets loss and gradient
    # 0: its one-hot row was all zeros.
    in_range = (labels >= 0) & (labels < num_classes)
    picked = tf.gather(logits, tf.where(in_range, labels, 0)[..., tf.newaxis],
                       batch_dims=labels.shape.rank)[..., 0]
    pixel_loss = tf.where(in_range,
                          tf.reduce_logsumexp(logits, axis=-1) - picked, 0.0)
    return pixel_loss * weights


def weighted_regression_loss(error_fn, target, prediction, weights):
    """error_fn(target, prediction) [B,H,W] * weights, in float32."""
    pixel_loss = error_fn(tf.cast(target, tf.float32),
                          tf.cast(prediction, tf.float32))
    return pixel_loss * tf.cast(weights, tf.float32)
