"""Each point's nearest center, at a cost that does not grow with the
number of centers: a grid of cells, each with the short list of centers
that can be nearest to a point in it.

The answer is the brute-force one (`brute_force`): the float32 distance
sqrt(dy * dy + dx * dx) of DeepLab2, its argmin, the first center on ties.

Why the short lists lose nothing. Points are binned into square cells of
`cell_size` pixels (points outside the image go to the border cells). For
each cell, from the bounding box of the points that fell in it:
- its reach: the least, over centers, of the distance to the box's
  farthest corner. Every point of the cell has a center within the reach.
- its candidates: the centers whose distance to the box is at most the
  reach, plus a margin. A center outside that list is farther from every
  point of the cell, by more than the margin, than the point's nearest
  center is; the margin (1e-4 relative + 1e-3 absolute) is orders of
  magnitude above float32 rounding of these distances (~3e-7 relative),
  so its float distance is strictly larger too.
Candidates are listed in ascending center index, so the argmin over them
takes, among the centers at the least float distance, the first: the
brute-force tie rule.

The cost: one pass over the points for the boxes, cells x centers for
the lists (small: cells are coarse), and points x (longest list) for the
distances. The longest list depends on how centers crowd around a cell,
not on how many there are.
"""

import tensorflow as tf

CELL_SIZE = 32
# Distance kernels see points in blocks of this many (bounded memory, few
# compiled shapes) and candidate lists padded to a power of two >= 8.
POINT_BLOCK = 1 << 14
_LIST_WIDTHS = [8 << shift for shift in range(20)]
_RELATIVE_MARGIN = 1e-4
_ABSOLUTE_MARGIN = 1e-3


def brute_force(points, centers_yx, valid):
    """[P, 2] points, [K, 2] centers, [K] valid -> [P] int32 index of the
    nearest valid center (first on ties).

    The float operations are DeepLab2's (tf.norm of center - point), so the
    same pixels tie and break the same way.
    """
    delta_y = centers_yx[None, :, 0] - points[:, 0:1]
    delta_x = centers_yx[None, :, 1] - points[:, 1:2]
    distance = tf.sqrt(delta_y * delta_y + delta_x * delta_x)
    distance = tf.where(valid[None, :], distance, float('inf'))
    return tf.argmin(distance, axis=1, output_type=tf.int32)


def _nearest_candidate(points, cells, candidates, centers_yx):
    """brute_force restricted to each point's cell's candidate list.

    points [P, 2]; cells [P] int32; candidates [G, M] int32 center indices,
    ascending, padded with K (a center at infinity, appended here);
    centers_yx [K, 2]. Returns [P] int32 center indices.
    """
    padded = tf.concat([centers_yx, tf.fill([1, 2], float('inf'))], 0)
    listed = tf.gather(candidates, cells)                        # [P, M]
    listed_yx = tf.gather(padded, listed)                        # [P, M, 2]
    delta_y = listed_yx[..., 0] - points[:, 0:1]
    delta_x = listed_yx[..., 1] - points[:, 1:2]
    distance = tf.sqrt(delta_y * delta_y + delta_x * delta_x)
    best = tf.argmin(distance, axis=1, output_type=tf.int32)
    return tf.gather(listed, best, batch_dims=1)


# One fused XLA loop per block (unfused, the gathers and the distance make
# several passes over the points x candidates block).
_nearest_candidate_fused = tf.function(
    _nearest_candidate, jit_compile=True, reduce_retracing=True)


def _cell_of(points, grid_height, grid_width, cell_size):
    """[P] int32 cell of each point, row-major; outside points (and
    non-finite ones) clamped to the border cells."""
    cell = tf.math.floor(points / cell_size)
    cell = tf.where(tf.math.is_finite(cell), cell, 0.0)
    row = tf.cast(tf.clip_by_value(cell[:, 0], 0.0,
                                   tf.cast(grid_height - 1, tf.float32)),
                  tf.int32)
    col = tf.cast(tf.clip_by_value(cell[:, 1], 0.0,
                                   tf.cast(grid_width - 1, tf.float32)),
                  tf.int32)
    return row * grid_width + col


def candidate_lists(points, cells, num_cells, centers_yx):
    """[G, M] int32 candidate centers of each cell (see the module doc),
    ascending, padded with K = len(centers_yx); M is the longest list of
    a cell holding points, rounded up to a power of two >= 8 (few shapes
    to compile), at most K."""
    # Boxes of the finite points (a negative segment id drops a point).
    finite = tf.reduce_all(tf.math.is_finite(points), axis=1)
    cells = tf.where(finite, cells, -1)
    low_y = tf.math.unsorted_segment_min(points[:, 0], cells, num_cells)
    high_y = tf.math.unsorted_segment_max(points[:, 0], cells, num_cells)
    low_x = tf.math.unsorted_segment_min(points[:, 1], cells, num_cells)
    high_x = tf.math.unsorted_segment_max(points[:, 1], cells, num_cells)
    occupied = low_y <= high_y                                   # [G]
    box_low = tf.stack([low_y, low_x], -1)[:, None, :]           # [G, 1, 2]
    box_high = tf.stack([high_y, high_x], -1)[:, None, :]
    center = centers_yx[None, :, :]                              # [1, K, 2]
    farthest = tf.maximum(tf.abs(center - box_low),
                          tf.abs(center - box_high))
    reach = tf.reduce_min(tf.norm(farthest, axis=-1), axis=1)    # [G]
    outside = tf.maximum(tf.maximum(box_low - center, center - box_high),
                         0.0)
    gap = tf.norm(outside, axis=-1)                              # [G, K]
    bound = reach * (1 + _RELATIVE_MARGIN) + _ABSOLUTE_MARGIN
    is_candidate = (gap <= bound[:, None]) & occupied[:, None]
    num_centers = tf.shape(centers_yx)[0]
    longest = tf.reduce_max(tf.reduce_sum(tf.cast(is_candidate, tf.int32),
                                          axis=1))
    widths = tf.constant(_LIST_WIDTHS)
    width = tf.gather(widths, tf.searchsorted(widths, longest[None])[0])
    width = tf.minimum(width, num_centers)
    # The smallest indices first: top_k of the negated index, candidates
    # (keys > -K) ahead of the others (keys <= -K - 1).
    index = tf.range(num_centers)[None, :]
    key = tf.where(is_candidate, -index, -num_centers - 1 - index)
    top, _ = tf.math.top_k(key, width)
    return tf.where(top > -num_centers, -top, num_centers)


def nearest(points, centers_yx, image_height, image_width,
            cell_size: int = CELL_SIZE, fused: bool = True):
    """[P, 2] float32 points, [K, 2] centers (K >= 1, every one valid) ->
    [P] int32 index of each point's nearest center, first on ties (equal
    to brute_force for finite points). The grid covers an image_height x
    image_width image. fused: compile the distance kernel with XLA."""
    grid_height = -(-image_height // cell_size)
    grid_width = -(-image_width // cell_size)
    cells = _cell_of(points, grid_height, grid_width, cell_size)
    candidates = candidate_lists(points, cells, grid_height * grid_width,
                                 centers_yx)
    count = tf.shape(points)[0]
    padding = (-count) % POINT_BLOCK
    blocks = (tf.reshape(tf.pad(points, [[0, padding], [0, 0]]),
                         [-1, POINT_BLOCK, 2]),
              tf.reshape(tf.pad(cells, [[0, padding]]), [-1, POINT_BLOCK]))
    kernel = _nearest_candidate_fused if fused else _nearest_candidate
    found = tf.map_fn(
        lambda block: kernel(block[0], block[1], candidates, centers_yx),
        blocks, fn_output_signature=tf.int32)
    # A non-finite point has no nearest center; it gets a valid index all
    # the same (the padding's K never leaks out).
    return tf.minimum(tf.reshape(found, [-1])[:count],
                      tf.shape(centers_yx)[0] - 1)
