"""ASPP: its branches, the 1x1-only variant, global image pooling."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.decoder import aspp

FEATURES = tf.random.normal([2, 5, 7, 12], seed=3)  # res5 of 65x97, OS 16


def test_aspp_harness(layer_harness):
    layer = aspp.ASPP(8, [1, 2, 3], name='aspp')
    layer_harness(layer, FEATURES, (2, 5, 7, 8))


def test_aspp_only_1x1(layer_harness):
    layer = aspp.ASPP(8, [], aspp_use_only_1x1_proj_conv=True, name='aspp')
    layer_harness(layer, FEATURES, (2, 5, 7, 8))
    assert len(layer.weights) == 5  # one conv kernel + 4 batch norm vectors


def test_aspp_rejects_wrong_number_of_rates():
    with pytest.raises(ValueError, match=r'exactly 3 atrous_rates, got \[6, 12\]'):
        aspp.ASPP(8, [6, 12], name='aspp')


def test_aspp_pooling_at_the_crop_size_equals_deeplab2_tiled_pooling():
    """DeepLab2 average-pools with a crop-derived window; at the crop size
    that window is the whole map, so its VALID average pool is our global
    mean."""
    pool = aspp.ASPPPool(4, pool_size=(5, 7), name='pool')
    x = FEATURES
    ours = pool(x)
    window = tf.nn.avg_pool2d(x, ksize=(5, 7), strides=(5, 7), padding='VALID')
    reference = tf.broadcast_to(pool._conv_bn_act(window), ours.shape)
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-5)


def test_aspp_branch_harnesses(layer_harness):
    layer_harness(aspp.ASPPConv(4, 2, name='conv'), FEATURES,
                  (2, 5, 7, 4))
    layer_harness(aspp.ASPPPool(4, pool_size=(5, 7), name='pool'),
                  FEATURES, (2, 5, 7, 4))


def test_image_pooling_by_hand():
    """One channel [[1, 2], [3, 6]] has mean 3; a 1x1 kernel of 1 and batch
    norm at its initial statistics (mean 0, variance 1, epsilon 1e-3) give
    relu(3 / sqrt(1.001)) at every position."""
    pool = aspp.ASPPPool(1, name='pool')
    x = tf.constant([[[[1.0], [2.0]], [[3.0], [6.0]]]])
    pool(x)
    pool._conv_bn_act._conv.kernel.assign([[[[1.0]]]])
    np.testing.assert_allclose(pool(x).numpy(),
                               np.full([1, 2, 2, 1], 3 / np.sqrt(1.001)),
                               rtol=1e-6)
