"""Post-processing: exact parity with DeepLab2's outputs, hand-worked cases
for every rule, batching, graph and XLA; and the same for the variants
built for TFLite and ONNX (model/portable_ops.py), run here in TensorFlow
(tests/export/test_converted.py runs them in LiteRT and ONNX Runtime)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2.model import postprocess

NARROW = ['mobilenet_v3_small_os16_narrow',
          'resnet50_os32_merge_with_pure_tf_func_narrow',
          'swidernet_sac_1_1_1_os16_narrow']
POST_KEYS = ['semantic_pred', 'instance_pred', 'panoptic_pred',
             'instance_center_pred', 'instance_scores']
# Cityscapes-like label space: things are 11..18, void 255, divisor 1000.
THINGS = tuple(range(11, 19))


# Post-processing as exported to each runtime: the ONNX variant (loop
# grouping, scatter reductions) and the int8 TFLite one (branch grouping,
# segment reductions); float TFLite mixes the two.
RUNTIMES = {
    'tensorflow': {},
    'onnx': dict(runtime='onnx', static_shapes=True, jit_dense_stages=False),
    'tflite_int8': dict(runtime='tflite_int8', static_shapes=True,
                        jit_dense_stages=False),
}


@pytest.fixture(params=list(RUNTIMES))
def runtime(request):
    """Overrides selecting each runtime's post-processing."""
    return RUNTIMES[request.param]


def _options(**overrides):
    values = dict(thing_class_ids=THINGS, label_divisor=1000, void_label=255,
                  center_score_threshold=0.1, nms_kernel=3, keep_k_centers=10,
                  stuff_area_limit=0)
    return postprocess.PostProcessOptions(**{**values, **overrides})


def _inputs(labels, heatmap, offsets=None, num_classes=19):
    """Network outputs from a label map [B, H, W], heatmap [B, H, W] and
    offsets [B, H, W, 2] (zeros by default)."""
    labels = np.asarray(labels)
    probs = np.eye(num_classes, dtype=np.float32)[labels] * 0.9 + 0.005
    offsets = (np.zeros(labels.shape + (2,), np.float32) if offsets is None
               else np.asarray(offsets, np.float32))
    return {common.PRED_SEMANTIC_PROBS_KEY: tf.constant(probs),
            common.PRED_CENTER_HEATMAP_KEY: tf.constant(
                np.asarray(heatmap, np.float32)),
            common.PRED_OFFSET_MAP_KEY: tf.constant(offsets)}


def _run(inputs, **overrides):
    outputs = postprocess.PanopticPostProcessor(_options(**overrides))(inputs)
    return {key: value.numpy() for key, value in outputs.items()}


# ------------------------------------------------------------- parity


# The int8 TFLite variant (branches over the slots, sharing the loop's
# per-slot step) unrolls 400 slots, ~20 s to trace: it is held to the
# hand-worked cases here and in tests/export/test_converted.py instead.
@pytest.mark.parametrize('mode', ['graph', 'xla', 'onnx'])
@pytest.mark.parametrize('name', NARROW)
def test_reproduces_deeplab2_exactly(fixtures_dir, name, mode):
    folder = fixtures_dir / 'deeplab2' / name
    config = config_lib.load_config(folder / f'{name}.textproto')
    processor = postprocess.build_postprocessor(
        config, static_shapes=mode != 'graph')
    if mode in RUNTIMES:
        processor = postprocess.PanopticPostProcessor(dataclasses.replace(
            processor.options, **RUNTIMES[mode]))
    processor = tf.function(processor, jit_compile=mode == 'xla')
    reference = np.load(folder / 'outputs.npz')
    for suffix in ['', '_b', '_c']:
        outputs = processor({key: tf.constant(reference[key + suffix])
                             for key in ['semantic_probs', 'center_heatmap',
                                         'offset_map']})
        for key in POST_KEYS:
            np.testing.assert_array_equal(outputs[key].numpy(),
                                          reference[key + suffix],
                                          err_msg=f'{key}{suffix}')


# ------------------------------------------------------ hand-worked cases


def test_empty_heatmap_gives_no_instances(runtime):
    labels = [[[0, 0, 11, 11], [0, 0, 11, 12]]]
    for op_rules in (False, True):
        out = _run(_inputs(labels, np.zeros([1, 2, 4])),
                   merge_with_tf_op_semantics=op_rules, **runtime)
        assert not out['instance_pred'].any()
        assert not out['instance_scores'].any()
        assert not out['instance_center_pred'].any()
        expected = ([[0, 0, 11001, 11001], [0, 0, 11001, 11001]] if op_rules
                    # Pure TF: thing pixels without an instance are void.
                    else [[0, 0, 255000, 255000], [0, 0, 255000, 255000]])
        np.testing.assert_array_equal(out['panoptic_pred'][0], expected)


def test_one_center_takes_every_thing_pixel(runtime):
    labels = np.full([1, 3, 5], 11)
    labels[0, :, 0] = 0
    heatmap = np.zeros([1, 3, 5])
    heatmap[0, 1, 3] = 0.7
    out = _run(_inputs(labels, heatmap), **runtime)
    np.testing.assert_array_equal(out['instance_pred'][0],
                                  (labels[0] == 11).astype(int))
    np.testing.assert_allclose(out['instance_scores'][0],
                               0.7 * (labels[0] == 11))
    np.testing.assert_array_equal(out['panoptic_pred'][0],
                                  np.where(labels[0] == 11, 11001, 0))
    assert out['instance_center_pred'][0, 1, 3] == pytest.approx(0.7)


def test_threshold_is_strict_and_nms_keeps_equal_neighbours():
    heatmap = np.zeros([1, 1, 9], np.float32)
    heatmap[0, 0, [1, 2]] = 0.5   # equal neighbours: both are maxima
    heatmap[0, 0, 5] = 0.1        # at the threshold: not a center
    heatmap[0, 0, 7] = 0.3
    heatmap[0, 0, 8] = 0.4        # suppresses 7 (same window)
    out = _run(_inputs(np.full([1, 1, 9], 11), heatmap))
    np.testing.assert_allclose(out['instance_center_pred'][0, 0],
                               [0, .5, .5, 0, 0, 0, 0, 0, .4])


def test_nearest_center_by_offset_and_first_center_wins_ties(runtime):
    # Centers at x=0 and x=4; pixel x=2 is equidistant: the first center
    # (raster order) wins, as in DeepLab2's argmin.
    heatmap = np.zeros([1, 1, 5])
    heatmap[0, 0, [0, 4]] = [0.5, 0.9]
    out = _run(_inputs(np.full([1, 1, 5], 12), heatmap), **runtime)
    np.testing.assert_array_equal(out['instance_pred'][0, 0],
                                  [1, 1, 1, 2, 2])
    np.testing.assert_allclose(out['instance_scores'][0, 0],
                               [.5, .5, .5, .9, .9])
    # An offset moves pixel 3 onto the first center.
    offsets = np.zeros([1, 1, 5, 2])
    offsets[0, 0, 3] = [0, -3]
    out = _run(_inputs(np.full([1, 1, 5], 12), heatmap, offsets), **runtime)
    np.testing.assert_array_equal(out['instance_pred'][0, 0],
                                  [1, 1, 1, 1, 2])


@pytest.mark.parametrize('mode', [{}, {'static_shapes': True},
                                  RUNTIMES['onnx'], RUNTIMES['tflite_int8']],
                         ids=['graph', 'static', 'onnx', 'tflite_int8'])
def test_keep_k_centers_keeps_those_above_the_kth_score(mode):
    heatmap = np.zeros([1, 1, 9])
    heatmap[0, 0, [0, 2, 4, 6, 8]] = [0.3, 0.9, 0.5, 0.5, 0.7]
    labels = np.full([1, 1, 9], 13)

    def kept(k):
        out = _run(_inputs(labels, heatmap), keep_k_centers=k, **mode)
        return sorted(set(out['instance_scores'][0, 0].round(2)))

    # 5 peaks > k: only scores strictly above the k-th largest survive, so
    # ties at the k-th value are all dropped (DeepLab2's rule).
    assert kept(3) == [0.7, 0.9]          # k-th = 0.5 (tied): both dropped
    assert kept(2) == [0.9]               # k-th = 0.7
    assert kept(5) == [0.3, 0.5, 0.7, 0.9]  # not over the limit: all kept


def test_majority_vote_ties_go_to_the_smaller_class(runtime):
    # One instance over two 12s and two 11s: class 11.
    labels = [[[12, 11, 12, 11]]]
    heatmap = np.zeros([1, 1, 4])
    heatmap[0, 0, 1] = 0.8
    for op_rules in (False, True):
        out = _run(_inputs(labels, heatmap),
                   merge_with_tf_op_semantics=op_rules, **runtime)
        np.testing.assert_array_equal(out['panoptic_pred'][0, 0],
                                      [11001] * 4)


def test_ids_restart_per_class_in_raster_order_of_first_pixels(runtime):
    labels = np.array([[[14, 14, 0, 11, 11, 0, 14, 14, 0, 11]]])
    heatmap = np.zeros([1, 1, 10])
    heatmap[0, 0, [0, 3, 6, 9]] = 0.5
    offsets = np.zeros([1, 1, 10, 2])
    offsets[0, 0, [1, 4, 7]] = [0, -1]
    out = _run(_inputs(labels, heatmap, offsets), **runtime)
    np.testing.assert_array_equal(
        out['panoptic_pred'][0, 0],
        [14001, 14001, 0, 11001, 11001, 0, 14002, 14002, 0, 11002])


@pytest.mark.parametrize('op_rules,area,kept', [
    (False, 3, True),    # pure TF: area >= limit survives
    (False, 2, False),
    (True, 3, False),    # op: area <= limit is void
    (True, 4, True),
])
def test_stuff_area_limit(op_rules, area, kept, runtime):
    labels = np.full([1, 1, 8], 1)
    labels[0, 0, :area] = 5
    out = _run(_inputs(labels, np.zeros([1, 1, 8])), stuff_area_limit=3,
               merge_with_tf_op_semantics=op_rules, **runtime)
    np.testing.assert_array_equal(out['panoptic_pred'][0, 0, :area],
                                  [5000 if kept else 255000] * area)


def test_crowd_pixels_without_an_instance():
    """Thing pixels of instance 0 (a crowd region): void in the pure-TF
    merge; one more instance of their majority class in the op's."""
    semantic = tf.constant([[[11, 11, 12, 0]]])
    instance = tf.constant([[[1, 0, 0, 0]]])
    is_thing = postprocess.thing_mask(semantic, THINGS, 19)
    for op_rules, expected in [(False, [11001, 255000, 255000, 0]),
                               (True, [11001, 11002, 11002, 0])]:
        panoptic = postprocess.merge_semantic_and_instance(
            semantic, instance, is_thing, 19, 1,
            _options(merge_with_tf_op_semantics=op_rules))
        np.testing.assert_array_equal(panoptic.numpy()[0, 0], expected)


def test_batch_of_three_equals_three_single_calls(runtime):
    rng = np.random.RandomState(0)
    labels = rng.choice([0, 1, 11, 13], size=[3, 12, 15])
    heatmap = rng.uniform(0, 1, [3, 12, 15]) ** 4
    offsets = rng.normal(0, 3, [3, 12, 15, 2])
    heatmap[1] = 0  # one image without centers
    batched = _run(_inputs(labels, heatmap, offsets), stuff_area_limit=5,
                   **runtime)
    for i in range(3):
        single = _run(_inputs(labels[i:i + 1], heatmap[i:i + 1],
                              offsets[i:i + 1]), stuff_area_limit=5,
                      **runtime)
        for key in POST_KEYS:
            np.testing.assert_array_equal(batched[key][i], single[key][0],
                                          err_msg=key)


def test_eager_graph_and_xla_agree_with_unknown_sizes():
    rng = np.random.RandomState(1)
    inputs = _inputs(rng.choice([0, 2, 11, 12, 17], size=[2, 20, 31]),
                     rng.uniform(0, 1, [2, 20, 31]) ** 3,
                     rng.normal(0, 4, [2, 20, 31, 2]))
    eager = _run(inputs)
    spec = {common.PRED_SEMANTIC_PROBS_KEY: tf.TensorSpec(
                [None, None, None, 19], tf.float32),
            common.PRED_CENTER_HEATMAP_KEY: tf.TensorSpec([None, None, None]),
            common.PRED_OFFSET_MAP_KEY: tf.TensorSpec([None, None, None, 2])}
    graph = tf.function(postprocess.PanopticPostProcessor(_options()),
                        input_signature=[spec])(inputs)
    xla = tf.function(postprocess.PanopticPostProcessor(
        _options(static_shapes=True)), jit_compile=True)(inputs)
    for key in POST_KEYS:
        np.testing.assert_array_equal(graph[key].numpy(), eager[key])
        np.testing.assert_array_equal(xla[key].numpy(), eager[key])


def test_keep_all_centers_is_refused_with_static_shapes():
    with pytest.raises(ValueError, match='keep_k_centers <= 0'):
        _run(_inputs([[[11]]], [[[0.5]]]), keep_k_centers=-1,
             static_shapes=True)
    out = _run(_inputs([[[11, 11]]], [[[0.5, 0.0]]]), keep_k_centers=-1)
    np.testing.assert_array_equal(out['instance_pred'], [[[1, 1]]])


def test_build_postprocessor_reads_evaluator_and_dataset():
    config = config_lib.parse_config_text(
        'eval_dataset_options { dataset: "coco_panoptic" } '
        'evaluator_options { nms_kernel: 41 stuff_area_limit: 4096 '
        'merge_semantic_and_instance_with_tf_op: false }')
    options = postprocess.build_postprocessor(config).options
    assert options.thing_class_ids == tuple(range(1, 81))
    assert (options.label_divisor, options.void_label) == (256, 0)
    assert (options.nms_kernel, options.stuff_area_limit,
            options.keep_k_centers) == (41, 4096, 400)
    assert options.merge_with_tf_op_semantics is False


def test_build_postprocessor_takes_the_runs_descriptor(tmp_path):
    """A descriptor handed down (a spec dataset's) wins over the config's
    dataset name; without one, a spec path in the config is read."""
    from deeplab2.data import dataset_spec
    spec = {'name': 'mine', 'ignore_label': 9, 'panoptic_label_divisor': 64,
            'classes': [{'name': 'grass'}, {'name': 'cow', 'thing': True},
                        {'name': 'wall'}, {'name': 'dog', 'thing': True}],
            'splits': {'val': {'file_pattern': 'v-*', 'num_examples': 1}}}
    path = str(tmp_path / 'dataset.json')
    dataset_spec.write_spec(path, spec)
    config = config_lib.parse_config_text(
        'eval_dataset_options { dataset: "coco_panoptic" }')
    options = postprocess.build_postprocessor(
        config, descriptor=dataset_spec.load_spec(path)).options
    assert options.thing_class_ids == (1, 3)
    assert (options.label_divisor, options.void_label) == (64, 9)
    config.eval_dataset_options.dataset = path
    options = postprocess.build_postprocessor(config).options
    assert (options.thing_class_ids, options.label_divisor,
            options.void_label) == ((1, 3), 64, 9)


def test_portable_runtimes_need_static_shapes_and_fixed_slots():
    with pytest.raises(ValueError, match='needs static shapes'):
        _options(runtime='onnx')
    with pytest.raises(ValueError, match='needs static shapes'):
        _options(runtime='tflite', static_shapes=True,
                 jit_dense_stages=False, keep_k_centers=0)
    with pytest.raises(ValueError, match='Unknown post-processing runtime'):
        _options(runtime='coreml')


def test_onnx_scatter_reductions_equal_the_segment_ops():
    """Worked by hand: segments 0..4 of [7, 3, 5, 3, 9] at ids
    [2, 0, 2, 4, 0]; segments 1 and 3 are empty (sum 0, min int32 max)."""
    from deeplab2.model import portable_ops
    values = tf.constant([7, 3, 5, 3, 9])
    ids = tf.constant([2, 0, 2, 4, 0])
    big = np.iinfo(np.int32).max
    for name, reductions in portable_ops.REDUCTIONS.items():
        np.testing.assert_array_equal(reductions.sum(values, ids, 5),
                                      [12, 0, 12, 0, 3], err_msg=name)
        np.testing.assert_array_equal(reductions.min(values, ids, 5),
                                      [3, big, 5, big, 3], err_msg=name)
