"""The serve benchmark exports, reloads and times a SavedModel (tiny size)."""

from deeplab2 import benchmark


def test_serve_latency_times_the_exported_model(repo_root):
    config = (repo_root / 'configs/demo/'
              'panoptic_deeplab_mobilenet_v3_small_os16.textproto')
    result = benchmark.serve_latency(str(config), 65, 97, runs=1, warmup=1)
    assert result['input_shape'] == [1, 65, 97, 3]
    assert result['export_s'] > 0
    assert result['latency']['median_s'] > 0 and result['latency']['runs'] == 1
    assert result['network_latency']['median_s'] > 0
    assert result['instances'] >= 0
