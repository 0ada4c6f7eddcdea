"""The serve benchmark exports, reloads and times a SavedModel (tiny size)."""

from deeplab2.benchmarks import serve


def test_serve_latency_times_the_exported_model(repo_root):
    config = (repo_root / 'configs/demo/'
              'panoptic_deeplab_mobilenet_v3_small_os16.textproto')
    result = serve.serve_latency(str(config), 65, 97, runs=1, warmup=1)
    assert set(result) == {'config', 'input_shape', 'jit_postprocessing',
                           'device', 'export_s', 'latency', 'network_latency',
                           'instances'}
    assert result['input_shape'] == [1, 65, 97, 3]
    assert result['jit_postprocessing'] is True
    assert 0 < result['export_s'] < 600
    for key in ('latency', 'network_latency'):
        timing = result[key]
        assert (timing['runs'], timing['warmup']) == (1, 1)
        assert 0 < timing['min_s'] <= timing['median_s'] <= timing[
            'max_s'] < 60
    # At most one instance per center slot (keep_k_centers: 400 here).
    assert isinstance(result['instances'], int)
    assert 0 <= result['instances'] <= 400
