"""The grid-indexed nearest center equals a NumPy brute force (float32
distances, first center on ties) on cases built to break an index: exact
ties, points far outside the image, crowded and lonely centers."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model import nearest_center


def _brute_force(points, centers):
    """Independent reference: float32 sqrt(dy*dy + dx*dx) per pair (NumPy
    rounds each float32 op as TF does), argmin taking the first minimum."""
    delta_y = centers[None, :, 0] - points[:, None, 0]
    delta_x = centers[None, :, 1] - points[:, None, 1]
    return np.argmin(np.sqrt(delta_y * delta_y + delta_x * delta_x), axis=1)


def _check(points, centers, height, width, cell_size=nearest_center.CELL_SIZE,
           fused=True):
    points = np.asarray(points, np.float32)
    centers = np.asarray(centers, np.float32)
    found = nearest_center.nearest(tf.constant(points), tf.constant(centers),
                                   height, width, cell_size=cell_size,
                                   fused=fused).numpy()
    np.testing.assert_array_equal(found, _brute_force(points, centers))


def _pixels(height, width):
    grid = np.stack(np.meshgrid(np.arange(height), np.arange(width),
                                indexing='ij'), -1)
    return grid.reshape(-1, 2).astype(np.float32)


@pytest.mark.parametrize('cell_size', [4, 32])
def test_exact_ties_go_to_the_first_center(cell_size):
    # Centers on even coordinates and pixels between them: most pixels are
    # equidistant from 2 or 4 centers. Centers listed in a shuffled order,
    # so "first" is not the raster-first.
    rng = np.random.default_rng(0)
    centers = _pixels(16, 32)[::3] * 2
    centers = centers[rng.permutation(len(centers))]
    _check(_pixels(33, 65), centers, 33, 65, cell_size)


def test_many_centers_and_points_on_half_pixels():
    rng = np.random.default_rng(1)
    centers = np.round(rng.uniform(0, [65, 129], [400, 2]))
    points = np.round(rng.uniform(-3, [68, 132], [20000, 2]) * 2) / 2
    _check(points, centers, 65, 129)
    _check(points, centers, 65, 129, fused=False)


def test_points_outside_the_image_and_lonely_cells():
    # A dense cluster of centers in one corner, points everywhere and far
    # outside (offsets pointing off the image): border cells get long
    # candidate lists, which must still hold the nearest.
    rng = np.random.default_rng(2)
    centers = np.concatenate([rng.uniform(0, 12, [300, 2]),
                              [[60.0, 120.0], [30.5, 64.25]]])
    points = np.concatenate([rng.uniform(-500, 600, [5000, 2]),
                             rng.normal([40, 90], 30, [5000, 2])])
    _check(points, centers, 65, 129)


def test_one_center_and_points_far_from_it():
    points = np.array([[0, 0], [64, 128], [-1e4, 1e4], [3.5, 7.25]])
    _check(points, [[10.0, 20.0]], 65, 129)


def test_agrees_with_the_tensorflow_brute_force_over_a_block_boundary():
    # More points than one kernel block, centers at random floats.
    rng = np.random.default_rng(3)
    count = nearest_center.POINT_BLOCK + 5
    points = rng.uniform(0, [129, 257], [count, 2]).astype(np.float32)
    centers = rng.uniform(0, [129, 257], [37, 2]).astype(np.float32)
    found = nearest_center.nearest(tf.constant(points), tf.constant(centers),
                                   129, 257).numpy()
    expected = nearest_center.brute_force(
        tf.constant(points), tf.constant(centers), tf.ones([37], tf.bool))
    np.testing.assert_array_equal(found, expected.numpy())
