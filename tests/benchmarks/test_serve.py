"""The serve benchmark exports the model for each runtime asked for, runs
each as a user would and times it (tiny size; the int8 export is covered by
tests/export/test_converted.py)."""

from deeplab2.benchmarks import serve


def test_serve_latency_times_each_runtime(repo_root):
    config = (repo_root / 'configs/demo/'
              'panoptic_deeplab_mobilenet_v3_small_os16.textproto')
    runtimes = ('saved_model', 'saved_model_bfloat16', 'litert_float16')
    result = serve.serve_latency(str(config), 65, 97, runs=1, warmup=1,
                                 runtimes=runtimes, num_threads=2)
    assert set(result) == {'config', 'checkpoint', 'input_shape',
                           'jit_postprocessing', 'device', 'threads',
                           'runtimes', 'network_latency'}
    assert result['input_shape'] == [1, 65, 97, 3]
    assert result['threads']['litert'] == result['threads'][
        'onnxruntime'] == 2
    assert list(result['runtimes']) == list(runtimes)
    timings = [entry['latency'] for entry in result['runtimes'].values()]
    for timing in timings + [result['network_latency']]:
        assert (timing['runs'], timing['warmup']) == (1, 1)
        assert 0 < timing['min_s'] <= timing['median_s'] <= timing['max_s']
    for entry in result['runtimes'].values():
        assert set(entry) == {'precision', 'latency', 'export_s',
                              'size_bytes', 'instances'}
        assert entry['export_s'] > 0 and entry['size_bytes'] > 0
        # At most one instance per center slot (keep_k_centers: 400 here).
        assert 0 <= entry['instances'] <= 400
    assert [entry['precision'] for entry in result['runtimes'].values()] == [
        'float32', 'bfloat16', 'float16 weights']
    sizes = {name: entry['size_bytes']
             for name, entry in result['runtimes'].items()}
    # float16 weights: the file is smaller than the float32 SavedModel.
    assert sizes['litert_float16'] < sizes['saved_model']
