"""The tf.data pipeline: batches of samples from TFRecords, eval keeps raw
labels, seeds make it deterministic, sharding per input context, errors."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2.data import demo
from deeplab2.data import input_pipeline


@pytest.fixture(scope='module')
def demo_shards(tmp_path_factory):
    cache = tmp_path_factory.mktemp('cache')
    return demo.materialize_demo_dataset(cache_dir=str(cache), num_train=4,
                                         num_val=2)


def _options(file_pattern, **fields):
    text = (f'dataset: "demo" file_pattern: "{file_pattern}" '
            'crop_size: 129 crop_size: 257 batch_size: 2')
    options = config_lib.ExperimentOptions().train_dataset_options
    config_lib.text_format.Parse(text, options)
    for name, value in fields.items():
        setattr(options, name, value)
    return options


def test_training_batches_have_targets(demo_shards):
    options = _options(f'{demo_shards}/train-*')
    options.augmentations.min_scale_factor = 0.5
    options.augmentations.max_scale_factor = 2.0
    options.augmentations.scale_factor_step_size = 0.25
    batch = next(iter(input_pipeline.build_dataset(options, is_training=True,
                                                   seed=3)))
    assert batch[common.IMAGE].shape == (2, 129, 257, 3)
    assert batch[common.GT_SEMANTIC_KEY].shape == (2, 129, 257)
    assert batch[common.GT_INSTANCE_CENTER_KEY].shape == (2, 129, 257)
    assert batch[common.GT_INSTANCE_REGRESSION_KEY].shape == (2, 129, 257, 2)
    for key in (common.SEMANTIC_LOSS_WEIGHT_KEY, common.CENTER_LOSS_WEIGHT_KEY,
                common.REGRESSION_LOSS_WEIGHT_KEY):
        assert batch[key].shape == (2, 129, 257)
    semantic = batch[common.GT_SEMANTIC_KEY].numpy()
    assert set(np.unique(semantic)) <= set(range(19)) | {255}


def test_seed_makes_training_order_and_augmentation_repeatable(demo_shards):
    options = _options(f'{demo_shards}/train-*')
    options.augmentations.min_scale_factor = 0.5
    options.augmentations.max_scale_factor = 2.0

    def first_two(seed):
        dataset = input_pipeline.build_dataset(options, True, seed=seed)
        return [b[common.IMAGE].numpy() for b in dataset.take(2)]

    a, b, c = first_two(7), first_two(7), first_two(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))


def test_eval_is_one_ordered_pass_with_raw_labels(demo_shards):
    options = _options(f'{demo_shards}/val-*', batch_size=1)
    options.ClearField('crop_size')
    options.crop_size.extend([257, 513])
    batches = list(input_pipeline.build_dataset(options, is_training=False,
                                                field='eval_dataset_options'))
    assert len(batches) == 2
    for batch in batches:
        assert batch[common.GT_PANOPTIC_RAW].shape[1:3] == (256, 512)
        assert batch[common.IMAGE].shape == (1, 257, 513, 3)
        assert batch[common.IMAGE_NAME].dtype == tf.string
    names = [b[common.IMAGE_NAME].numpy()[0] for b in batches]
    assert names == sorted(names)


def test_empty_demo_pattern_materializes_the_cache(demo_shards, monkeypatch):
    calls = []
    monkeypatch.setattr(demo, 'materialize_demo_dataset',
                        lambda: calls.append(1) or demo_shards)
    files = input_pipeline.resolve_files(_options(''), is_training=False)
    assert calls == [1] and all('/val-' in f for f in files)


def test_input_context_shards_files_and_batch(demo_shards):
    options = _options(f'{demo_shards}/train-*', batch_size=4)
    context = tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    batch = next(iter(input_pipeline.build_dataset(
        options, True, input_context=context, seed=1)))
    assert batch[common.IMAGE].shape[0] == 2


def test_errors_name_the_pattern_and_the_field(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        input_pipeline.resolve_files(_options(f'{tmp_path}/none-*'))
    options = _options('${TRAIN_SET}')
    with pytest.raises(config_lib.UnresolvedPlaceholderError,
                       match='train_dataset_options.file_pattern'):
        input_pipeline.resolve_files(options)
    options = _options('')
    options.dataset = 'cityscapes_panoptic'
    with pytest.raises(config_lib.ConfigError,
                       match='train_dataset_options.file_pattern is empty'):
        input_pipeline.resolve_files(options)


def test_truncated_tfrecord_is_named(demo_shards, tmp_path):
    import glob
    import shutil
    shards = sorted(p for p in glob.glob(f'{demo_shards}/train-*')
                    if tf.io.gfile.stat(p).length > 0)
    broken = tmp_path / 'train-broken.tfrecord'
    shutil.copy(shards[0], broken)
    data = broken.read_bytes()
    broken.write_bytes(data[:len(data) // 2])
    found = input_pipeline.find_corrupt_files([shards[0], str(broken)])
    assert [path for path, _ in found] == [str(broken)]


def test_iterating_a_truncated_shard_names_it(demo_shards, tmp_path):
    import glob
    shard = next(p for p in sorted(glob.glob(f'{demo_shards}/val-*'))
                 if tf.io.gfile.stat(p).length > 0)
    broken = tmp_path / 'val-00000-of-00001.tfrecord'
    data = open(shard, 'rb').read()
    broken.write_bytes(data[:len(data) - 100])
    options = _options(str(broken), batch_size=1)
    files = input_pipeline.resolve_files(options)
    dataset = input_pipeline.build_dataset(options, is_training=False)
    with pytest.raises(input_pipeline.CorruptDataError, match=str(broken)):
        list(input_pipeline.iterate(dataset, files))


def test_skip_batches_continues_a_seeded_stream(demo_shards):
    options = _options(f'{demo_shards}/train-*')
    full = input_pipeline.build_dataset(options, True, seed=4)
    resumed = input_pipeline.build_dataset(options, True, seed=4,
                                           skip_batches=2)
    expected = [b[common.IMAGE].numpy() for b in full.take(3)][2]
    got = next(iter(resumed))[common.IMAGE].numpy()
    np.testing.assert_array_equal(got, expected)


def _write_records(path, drop_key=None, count=1):
    """`count` tiny labeled examples, without `drop_key` if given."""
    from deeplab2.data import tfrecord
    image = np.full((9, 11, 3), 90, np.uint8)
    encoded = tf.io.encode_png(image).numpy()
    with tf.io.TFRecordWriter(str(path)) as writer:
        for index in range(count):
            example = tfrecord.encode_example(
                encoded, f'img{index}', 'png', 9, 11,
                np.zeros((9, 11), np.int32), verify_image=False)
            if drop_key:
                del example.features.feature[drop_key]
            writer.write(example.SerializeToString())
    return str(path)


@pytest.mark.parametrize('is_training', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('key', [common.KEY_ENCODED_IMAGE,
                                 common.KEY_ENCODED_LABEL])
def test_record_without_a_required_key_names_the_file_and_key(
        tmp_path, key, is_training):
    good = _write_records(tmp_path / 'a-good.tfrecord', count=2)
    bad = _write_records(tmp_path / 'b-bad.tfrecord', drop_key=key, count=2)
    options = _options(f'{tmp_path}/*.tfrecord', batch_size=1)
    options.crop_size[:] = [17, 17]
    files = input_pipeline.resolve_files(options)
    dataset = input_pipeline.build_dataset(options, is_training, seed=1)
    with pytest.raises(input_pipeline.MissingFeatureError) as error:
        for _ in zip(range(20), input_pipeline.iterate(dataset, files)):
            pass
    message = str(error.value)
    assert f"lack the feature '{key}'" in message
    assert f'{bad}: record 0' in message
    assert good not in message
    assert isinstance(error.value, input_pipeline.CorruptDataError)
    assert ('decode_groundtruth_label' in message) == (
        key == common.KEY_ENCODED_LABEL)


def test_unlabeled_records_read_when_labels_are_not_decoded(tmp_path):
    path = _write_records(tmp_path / 'test.tfrecord',
                          drop_key=common.KEY_ENCODED_LABEL)
    options = _options(path, batch_size=1,
                       decode_groundtruth_label=False)
    options.crop_size[:] = [17, 17]
    batches = list(input_pipeline.iterate(
        input_pipeline.build_dataset(options, is_training=False), [path]))
    assert len(batches) == 1


def test_read_errors_inside_a_tf_function_name_the_file(tmp_path):
    """Training iterates inside a tf.function: the runner wraps it in
    explained_read_errors, which names the file there too."""
    bad = _write_records(tmp_path / 'bad.tfrecord',
                         drop_key=common.KEY_ENCODED_IMAGE)
    options = _options(str(bad), batch_size=1)
    options.crop_size[:] = [17, 17]
    iterator = iter(input_pipeline.build_dataset(options, True, seed=1))
    step = tf.function(lambda iterator: next(iterator))
    with pytest.raises(input_pipeline.MissingFeatureError,
                       match=f"{bad}: record 0"):
        with input_pipeline.explained_read_errors([str(bad)]):
            step(iterator)
    # Errors that are not about the records pass unchanged.
    with pytest.raises(tf.errors.InvalidArgumentError, match='not records'):
        with input_pipeline.explained_read_errors([str(bad)]):
            raise tf.errors.InvalidArgumentError(None, None, 'not records')


def _demo_spec(tmp_path, demo_shards, splits=('train', 'val')):
    """A spec of the demo records (Cityscapes' label space, classes
    renamed), its patterns absolute."""
    from deeplab2.data import dataset_spec
    spec = {'name': 'demo_as_spec', 'panoptic_label_divisor': 1000,
            'classes': [{'name': f'c{label}', 'thing': label >= 11}
                        for label in range(19)],
            'splits': {split: {'file_pattern': f'{demo_shards}/{split}-*',
                               'num_examples': 1} for split in splits}}
    path = str(tmp_path / 'dataset.json')
    dataset_spec.write_spec(path, spec)
    return path


def test_spec_dataset_without_file_pattern_reads_its_splits(
        demo_shards, tmp_path):
    import glob
    options = _options('', dataset=_demo_spec(tmp_path, demo_shards))
    assert input_pipeline.resolve_files(options) == sorted(
        glob.glob(f'{demo_shards}/train-*'))
    assert input_pipeline.resolve_files(options, is_training=False) == (
        sorted(glob.glob(f'{demo_shards}/val-*')))


def test_spec_dataset_without_the_split_asks_for_file_pattern(
        demo_shards, tmp_path):
    options = _options('', dataset=_demo_spec(tmp_path, demo_shards,
                                              splits=('train',)))
    with pytest.raises(config_lib.ConfigError) as error:
        input_pipeline.resolve_files(options, 'eval_dataset_options',
                                     is_training=False)
    assert str(error.value).startswith(
        "eval_dataset_options.file_pattern is empty and the dataset spec "
        "'demo_as_spec' has no 'val' split to read instead (its splits: "
        'train)')


def test_given_descriptor_is_used_without_a_lookup(demo_shards, tmp_path,
                                                   monkeypatch):
    from deeplab2.data import datasets
    path = _demo_spec(tmp_path, demo_shards)
    descriptor = datasets.get_dataset_descriptor(path)
    options = _options('', dataset=path)

    def no_lookup(name):
        raise AssertionError(f'looked up {name} again')

    monkeypatch.setattr(datasets, 'get_dataset_descriptor', no_lookup)
    batch = next(iter(input_pipeline.build_dataset(
        options, is_training=False, descriptor=descriptor)))
    assert batch[common.IMAGE].shape[0] == 2
