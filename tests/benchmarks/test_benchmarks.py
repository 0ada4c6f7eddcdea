"""The benchmark helpers time what they say, on a tiny budget."""

import pathlib

from deeplab2 import benchmark

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_median_seconds_runs_warmup_then_timed_calls():
    calls = []
    result = benchmark.median_seconds(lambda: calls.append(1), runs=3,
                                      warmup=2)
    assert len(calls) == 5
    assert result['runs'] == 3 and result['warmup'] == 2
    assert 0 <= result['min_s'] <= result['median_s'] <= result['max_s']


def test_network_forward_reports_build_and_forward_time():
    config = (REPO_ROOT / 'configs/demo/'
              'panoptic_deeplab_mobilenet_v3_small_os16.textproto')
    result = benchmark.network_forward(str(config), 65, 97, runs=1, warmup=1)
    assert result['input_shape'] == [1, 65, 97, 3]
    assert result['build_s'] > 0 and result['parameters'] > 100_000
    assert result['forward']['median_s'] > 0


def test_synthetic_prediction_is_deterministic_with_sixty_instances():
    import numpy as np
    from deeplab2 import common
    first = benchmark.synthetic_prediction(129, 257, num_instances=6)
    second = benchmark.synthetic_prediction(129, 257, num_instances=6)
    for key in first:
        np.testing.assert_array_equal(first[key].numpy(), second[key].numpy())
    labels = first[common.PRED_SEMANTIC_PROBS_KEY].numpy().argmax(-1)
    assert set(np.unique(labels)) & {0, 1, 2, 8, 10} == {0, 1, 2, 8, 10}
    assert (labels >= 11).mean() > 0.02


def test_postprocess_benchmark_reports_time_memory_and_instances():
    config = REPO_ROOT / 'configs/cityscapes/panoptic_deeplab/resnet50_os32.textproto'
    results = benchmark.postprocess(str(config), 129, 257, batch_sizes=(1, 2),
                                    runs=1, warmup=1)
    assert [r['input_shape'] for r in results] == [[1, 129, 257],
                                                   [2, 129, 257]]
    assert all(r['timing']['median_s'] > 0 for r in results)
    assert all(r['instances'] > 10 for r in results)
    assert all('peak_extra_memory_bytes' in r for r in results)


def test_benchmark_cli_rejects_unknown_benchmark():
    import subprocess
    import sys
    result = subprocess.run([sys.executable, str(REPO_ROOT /
                                                 'scripts/benchmark.py'),
                             'training'], capture_output=True, text=True)
    assert result.returncode != 0
    assert 'network, postprocess, input, train' in result.stderr


def test_train_step_benchmark_times_a_step():
    config = (REPO_ROOT / 'configs/demo/'
              'panoptic_deeplab_mobilenet_v3_small_os16.textproto')
    result = benchmark.train_step(str(config), 65, 97, runs=1, warmup=1)
    assert result['input_shape'] == [1, 65, 97, 3]
    assert result['step']['median_s'] > 0


def test_input_benchmark_with_autoaugment(tmp_path):
    pattern = benchmark.write_synthetic_tfrecords(
        str(tmp_path), num_examples=2, height=40, width=60, num_shards=1)
    policy = 'simple_classification_policy_magnitude_scale_0.2'
    result = benchmark.input_pipeline_throughput(
        pattern, True, batch_size=2, crop=(33, 49), batches=2, warmup=1,
        autoaugment_policy=policy)
    assert result['autoaugment_policy'] == policy
    assert result['mode'] == 'train' and result['images_per_s'] > 0
