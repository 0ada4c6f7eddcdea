"""The model benchmarks (network, train step, post-processing, input
pipeline) report what they measure, on a tiny budget."""

import numpy as np

from deeplab2 import config as config_lib
from deeplab2.benchmarks import input_pipeline
from deeplab2.benchmarks import network
from deeplab2.benchmarks import postprocess
from deeplab2.benchmarks import scenes
from deeplab2.benchmarks import train
from deeplab2.model import builder

_DEMO_CONFIG = ('configs/demo/'
                'panoptic_deeplab_mobilenet_v3_small_os16.textproto')
_RESNET_CONFIG = 'configs/cityscapes/panoptic_deeplab/resnet50_os32.textproto'
_TIMING_KEYS = {'median_s', 'min_s', 'max_s', 'runs', 'warmup'}


def _check_timing(timing, runs=1, warmup=1):
    assert set(timing) == _TIMING_KEYS
    assert (timing['runs'], timing['warmup']) == (runs, warmup)
    assert 0 < timing['min_s'] <= timing['median_s'] <= timing['max_s'] < 60


def test_network_forward_reports_build_and_forward_time(repo_root):
    result = network.network_forward(str(repo_root / _DEMO_CONFIG), 65, 97,
                                     runs=1, warmup=1)
    assert set(result) == {'config', 'input_shape', 'precision', 'build_s',
                           'parameters', 'device', 'forward'}
    assert result['input_shape'] == [1, 65, 97, 3]
    assert result['precision'] == 'float32'
    assert result['device'] == 'CPU' or 'GPU' in result['device']
    assert 0 < result['build_s'] < 60
    # Counted again from the trainable weights' shapes of a second build.
    model = builder.build_model(config_lib.load_config(repo_root /
                                                       _DEMO_CONFIG))
    assert result['parameters'] == sum(
        int(np.prod(weight.shape)) for weight in model.trainable_weights)
    _check_timing(result['forward'])


def test_train_step_benchmark_times_a_bfloat16_step(repo_root):
    result = train.train_step(str(repo_root / _DEMO_CONFIG), 65, 97, runs=1,
                              warmup=1, precision='bfloat16')
    assert set(result) == {'config', 'input_shape', 'precision', 'device',
                           'step'}
    assert result['input_shape'] == [1, 65, 97, 3]
    assert result['precision'] == 'bfloat16'
    _check_timing(result['step'])


def test_postprocess_finds_every_thing_of_the_scene(repo_root):
    results = postprocess.postprocess(str(repo_root / _RESNET_CONFIG), 129,
                                      257, batch_sizes=(1, 2), runs=1,
                                      warmup=1)
    _, expected = postprocess.scene_prediction(129, 257)
    assert expected > 40  # NUM_THINGS free-standing, less the hidden ones
    assert [r['input_shape'] for r in results] == [[1, 129, 257],
                                                   [2, 129, 257]]
    for result in results:
        assert set(result) == {'config', 'input_shape', 'device', 'scene',
                               'precision', 'timing',
                               'peak_extra_memory_bytes', 'instances'}
        assert result['scene'] == 'street'
        assert result['instances'] == expected
        _check_timing(result['timing'])
        # Bytes: inputs of 129x257 need megabytes, not gigabytes.
        assert result['peak_extra_memory_bytes'] < 2**31


def test_postprocess_by_instance_count_finds_each_count(repo_root):
    results = postprocess.postprocess(str(repo_root / _RESNET_CONFIG), 129,
                                      257, batch_sizes=(1,), runs=1,
                                      warmup=0, num_instances=(3, 70))
    assert [(r['scene'], r['instances']) for r in results] == [
        ('crowded', 3), ('crowded', 70)]


def test_input_benchmark_with_autoaugment(tmp_path):
    pattern = scenes.write_tfrecords(str(tmp_path), num_examples=2,
                                     height=40, width=60, num_shards=1)
    result = input_pipeline.input_pipeline_throughput(
        pattern, True, batch_size=2, crop=(33, 49), batches=2, warmup=1,
        autoaugment_policy=input_pipeline.AUTOAUGMENT_POLICY)
    assert set(result) == {'mode', 'autoaugment_policy', 'targets',
                           'batch_size', 'crop_size', 'batches',
                           'images_per_s', 'device', 'precision',
                           'peak_rss_bytes'}
    assert result['autoaugment_policy'] == input_pipeline.AUTOAUGMENT_POLICY
    assert result['targets'] is True
    assert (result['mode'], result['batch_size'], result['crop_size'],
            result['batches']) == ('train', 2, [33, 49], 2)
    # Four 33x49 images take well under a minute and over a microsecond.
    assert 4 / 60 < result['images_per_s'] < 4e6
    assert 2**27 < result['peak_rss_bytes'] < 2**40  # TF alone: > 128 MiB
