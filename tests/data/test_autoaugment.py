"""AutoAugment against the outputs DeepLab2 wrote (uint8 equality), the
policy table against DeepLab2's, and the random draws (rule, seeding, inside
tf.data)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.data import autoaugment

# Ops whose fixture key carries the argument as written (a factor, bits or a
# threshold); the others take none.
_WITH_ARGUMENT = ('Posterize', 'Solarize', 'Color', 'Contrast', 'Brightness',
                  'Sharpness')


@pytest.fixture(scope='module')
def reference(fixtures_dir):
    folder = fixtures_dir / 'deeplab2' / 'autoaugment'
    arrays = np.load(folder / 'autoaugment.npz')
    tables = json.loads((folder / 'autoaugment.json').read_text())
    return {key: arrays[key] for key in arrays.files}, tables


def _op_cases(arrays):
    for key in sorted(arrays):
        parts = key.split('/')
        if parts[0].startswith('policy') or parts[1] == 'input':
            continue
        name = parts[1]
        argument = None
        if name in _WITH_ARGUMENT:
            text = parts[2]
            argument = float(text) if '.' in text else int(text)
        yield key, parts[0], name, argument


def test_every_op_output_equals_deeplab2s(reference):
    arrays, _ = reference
    cases = list(_op_cases(arrays))
    # 4 inputs x (3 argument-less + 4 Posterize + 4 Solarize + 4 x 8 blends).
    assert len(cases) == 4 * (3 + 4 + 4 + 32)
    apply = tf.function(autoaugment.apply_op, autograph=False,
                        reduce_retracing=False)
    mismatches = []
    for key, source, name, argument in cases:
        image = arrays[f'{source}/input']
        got = autoaugment.apply_op(image, name, argument).numpy()
        if not np.array_equal(got, arrays[key]):
            mismatches.append(key)
        if name in ('Equalize', 'Sharpness', 'AutoContrast'):
            # Graph mode too (the conds and the conv): same result.
            np.testing.assert_array_equal(
                apply(tf.constant(image), name, argument), arrays[key])
    assert not mismatches, mismatches


def test_every_sub_policy_applied_in_full_equals_deeplab2s(reference):
    arrays, tables = reference
    name = 'simple_classification_policy_magnitude_scale_0.2'
    start = tf.cast(arrays['policy_scale_0.2/float_input'], tf.uint8)
    sub_policies = autoaugment.get_policy(name)
    applied = tables['subpolicies_of_scale_0.2_applied_with_probability_1']
    assert len(sub_policies) == len(applied) == 5
    for index, sub_policy in enumerate(sub_policies):
        assert [list(op) for op in sub_policy] == applied[str(index)]
        got = autoaugment.apply_sub_policy(start, sub_policy)
        np.testing.assert_array_equal(
            got, arrays[f'policy_scale_0.2/subpolicy_{index}_all_applied'],
            err_msg=f'sub-policy {index}')


def test_policy_table_and_level_rule_equal_deeplab2s(reference):
    _, tables = reference
    assert list(autoaugment.REDUCED_OPERATIONS) == (
        tables['augmentation_reduced_operations'])
    assert autoaugment.MAX_LEVEL == tables['max_level']
    for name, expected in tables['policies'].items():
        got = autoaugment.get_policy(name)
        # Exact: levels are the same Python floats (7 * 0.2 included).
        assert [[list(op) for op in sub] for sub in got] == expected, name
    assert set(autoaugment.policy_names()) == set(tables['policies'])
    for op, by_level in tables['level_to_args'].items():
        for level_text, arguments in by_level.items():
            level = float(level_text)
            got = autoaugment.level_to_argument(op, level)
            assert ([] if got is None else [got]) == arguments, (op, level)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match='simple_classification_policy'):
        autoaugment.get_policy('imagenet_policy')
    with pytest.raises(ValueError, match='AutoContrast'):
        autoaugment.apply_op(np.zeros([2, 2, 3], np.uint8), 'Rotate')
    with pytest.raises(TypeError, match='uint8'):
        autoaugment.apply_op(np.zeros([2, 2, 3], np.float32), 'Invert')


def test_should_apply_is_floor_of_u_plus_probability():
    uniforms = tf.constant([0.0, 0.5, 0.79, 0.8, 0.999])
    np.testing.assert_array_equal(
        autoaugment._should_apply(0.2, uniforms),
        [False, False, False, True, True])
    assert not np.any(autoaugment._should_apply(0.0, uniforms))
    assert np.all(autoaugment._should_apply(1.0, uniforms))


def test_distort_draws_from_the_seed_and_runs_in_tf_data(
        autoaugment_outcomes):
    image = tf.constant(np.random.default_rng(0).integers(
        0, 256, [9, 11, 3]), tf.uint8)
    name = 'simple_classification_policy'
    seeds = [tf.constant([4, index], tf.int64) for index in range(40)]
    first = [autoaugment.distort(image, name, seed).numpy() for seed in seeds]
    again = [autoaugment.distort(image, name, seed).numpy() for seed in seeds]
    np.testing.assert_array_equal(first, again)
    # The draws vary: some seeds change the image, others leave it.
    changed = [not np.array_equal(out, image) for out in first]
    assert any(changed) and not all(changed)
    dataset = tf.data.Dataset.from_tensor_slices(tf.stack(seeds)).map(
        lambda seed: autoaugment.distort(image, name, seed))
    np.testing.assert_array_equal(list(dataset.as_numpy_iterator()), first)
    # Every output is one of the sub-policies' possible results.
    candidates = autoaugment_outcomes(image, name)
    for seed, out in zip(seeds, first):
        assert any(np.array_equal(out, c) for c in candidates), seed


def _fractional_image_with_flat_patches(height, width):
    # Fractional values (a resized image) with flat patches: in a flat patch
    # Sharpness' smoothing is an integer in exact arithmetic, where a
    # different rounding of the sum would truncate one lower.
    rng = np.random.default_rng(11)
    image = rng.uniform(0, 255, [height, width, 3]).astype(np.float32)
    image[2:9, 3:12] = 200.0
    image[10:, :6] = 13.0
    image[:, -4:] = 255.0
    return tf.constant(image)


def _windows(height, width):
    rng = np.random.default_rng(3)
    windows = [(0, 0, height, width), (0, 0, 1, 1),
               (height - 1, width - 1, height, width), (0, 4, height, 5),
               (5, 0, 6, width), (7, 8, 8, 9), (1, 1, height - 1, width - 1)]
    for _ in range(12):
        top, bottom = sorted(rng.choice(height + 1, 2, replace=False))
        left, right = sorted(rng.choice(width + 1, 2, replace=False))
        windows.append((top, left, bottom, right))
    return windows


def test_a_window_computed_alone_equals_that_window_of_the_whole():
    # `_apply_to_window` works back from the window (Sharpness one pixel
    # more per side, the whole image up to a histogram); the reference
    # applies the ops to the whole truncated image, then slices.
    height, width = 19, 26
    image = _fractional_image_with_flat_patches(height, width)
    sequences = []
    for name in ('simple_classification_policy',
                 'simple_classification_policy_magnitude_scale_0.2'):
        for sub_policy in autoaugment.get_policy(name):
            for mask in range(4):
                sequences.append([op for bit, op in enumerate(sub_policy)
                                  if mask >> bit & 1])
    sequences += [[(name, 1.0, 7)] for name in autoaugment.REDUCED_OPERATIONS]
    sequences += [[('Sharpness', 1.0, 9), ('Sharpness', 1.0, 2)],
                  [('Equalize', 1.0, 0), ('Sharpness', 1.0, 9)],
                  [('Sharpness', 1.0, 9), ('AutoContrast', 1.0, 0),
                   ('Contrast', 1.0, 3)]]
    apply = tf.function(autoaugment._apply_to_window, autograph=False)
    for sequence in sequences:
        whole = autoaugment.apply_sub_policy(tf.cast(image, tf.uint8),
                                             sequence).numpy()
        ops = [(name, autoaugment.level_to_argument(name, level))
               for name, _, level in sequence]
        for top, left, bottom, right in _windows(height, width):
            window = (tf.constant([top, left]), tf.constant([bottom, right]))
            np.testing.assert_array_equal(
                apply(image, ops, window), whole[top:bottom, left:right],
                err_msg=f'{sequence} {(top, left, bottom, right)}')


def test_distort_window_draws_as_distort_does():
    image = _fractional_image_with_flat_patches(19, 26)
    name = 'simple_classification_policy'
    distort_window = tf.function(autoaugment.distort_window)
    applied = 0
    for index in range(40):
        seed = tf.constant([9, index], tf.int64)
        whole = autoaugment.distort(tf.cast(image, tf.uint8), name, seed)
        begin, size = tf.constant([3, 5, 0]), tf.constant([12, 18, -1])
        np.testing.assert_array_equal(
            distort_window(image, name, begin, size, seed),
            tf.cast(tf.slice(whole, begin, size), tf.float32),
            err_msg=f'seed {index}')
        applied += not np.array_equal(whole, tf.cast(image, tf.uint8))
    assert 0 < applied < 40
