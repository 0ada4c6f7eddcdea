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
