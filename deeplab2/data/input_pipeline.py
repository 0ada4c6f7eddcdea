"""DatasetOptions -> tf.data pipeline: files -> decode -> preprocess ->
targets -> batches.

Shards are listed, shuffled and split per input pipeline (tf.distribute),
read interleaved, decoded (raw panoptic labels, or the PNG class ids of
a semantic-only dataset) and turned into Panoptic-DeepLab samples by
parallel maps, batched per replica and prefetched. A seed makes the order
deterministic. The record-level shuffle buffer is small on purpose: DeepLab2
shuffles 1000 serialized Cityscapes records (~11.5 MB each, >10 GB), while
shuffling the shard order plus a small buffer mixes well at a fraction of it.
"""

import contextlib
import glob
import os

import tensorflow as tf

from deeplab2 import config as config_lib
from deeplab2.data import datasets
from deeplab2.data import demo
from deeplab2.data import sample_generator
from deeplab2.data import tfrecord

# Serialized records held for shuffling in training: 32 Cityscapes records
# are ~370 MB; at 64 the training input's peak RSS was 0.7 GB higher.
_RECORD_SHUFFLE_BUFFER = 32
# Shards read at once.
_CYCLE_LENGTH = 8


# The split a dataset spec's records are read from when the config gives no
# file_pattern: the converter's usual split names.
SPEC_TRAIN_SPLIT = 'train'
SPEC_EVAL_SPLIT = 'val'


def resolve_files(dataset_options, field: str = 'train_dataset_options',
                  is_training: bool = True,
                  descriptor: datasets.DatasetDescriptor | None = None
                  ) -> list[str]:
    """The TFRecord files a DatasetOptions names.

    An empty file_pattern on the `demo` dataset materializes it (generated
    and converted once, then cached); on a dataset spec it is the spec's
    `train` split's pattern in training, its `val` split's in evaluation.
    `descriptor` is the dataset's (default: looked up from the options).

    Raises:
      UnresolvedPlaceholderError: file_pattern is still `${...}`.
      ConfigError: no pattern to read (naming the field, and the spec's
        splits for a spec dataset).
      FileNotFoundError: the patterns match no file (naming them).
    """
    patterns = [pattern for pattern in config_lib.resolved_field(
        dataset_options, 'file_pattern', message_path=field) if pattern]
    if not patterns and dataset_options.dataset == datasets.DEMO.name:
        folder = demo.materialize_demo_dataset()
        split = 'train' if is_training else 'val'
        patterns = [os.path.join(folder, f'{split}-*.tfrecord')]
    if not patterns and config_lib.is_spec_path(dataset_options.dataset):
        patterns = [_spec_split_pattern(
            descriptor or datasets.get_dataset_descriptor(
                dataset_options.dataset), field, is_training)]
    if not patterns:
        raise config_lib.ConfigError(
            f'{field}.file_pattern is empty: set it to the TFRecord shards, '
            f'e.g. --config_override={field}.file_pattern=/data/train-*.tfrecord')
    files = sorted({path for pattern in patterns
                    for path in glob.glob(os.path.expanduser(pattern))})
    if not files:
        raise FileNotFoundError(
            f'{field}.file_pattern {patterns} matches no files.')
    return files


def _spec_split_pattern(descriptor, field: str, is_training: bool) -> str:
    split = SPEC_TRAIN_SPLIT if is_training else SPEC_EVAL_SPLIT
    if split not in descriptor.file_patterns:
        known = ', '.join(sorted(descriptor.file_patterns)) or 'none'
        raise config_lib.ConfigError(
            f'{field}.file_pattern is empty and the dataset spec '
            f'{descriptor.name!r} has no {split!r} split to read instead '
            f'(its splits: {known}); set it, e.g. --config_override='
            f'{field}.file_pattern=/data/<split>-*.tfrecord')
    return descriptor.file_patterns[split]


def build_dataset(dataset_options, is_training: bool,
                  field: str = 'train_dataset_options',
                  input_context: tf.distribute.InputContext | None = None,
                  seed: int | None = None,
                  skip_batches: int = 0,
                  files: list[str] | None = None,
                  descriptor: datasets.DatasetDescriptor | None = None,
                  with_targets: bool = True) -> tf.data.Dataset:
    """The batched dataset of samples (dicts keyed by deeplab2.common).

    Args:
      dataset_options: a DatasetOptions proto.
      is_training: training (shuffled, repeated, augmented, targets) or
        evaluation (one pass in file order, raw labels kept).
      field: where the options sit in the config, for error messages.
      input_context: from tf.distribute; selects this pipeline's shards and
        the per-replica batch size.
      seed: makes shuffling and augmentation deterministic.
      skip_batches: batches already consumed (training resumed at that
        step): their serialized records are skipped before decoding, so a
        seeded run continues with the data it would have seen.
      files: the TFRecord files, when the caller has resolved them already
        (it also needs them to name a file in a read error); default:
        `resolve_files`.
      descriptor: the dataset's DatasetDescriptor, when the caller has
        resolved it once for the run; default: looked up from
        `dataset_options.dataset`.
      with_targets: at eval, False leaves the training targets out of the
        samples (see `build_eval_dataset`); training always has them.
    """
    if descriptor is None:
        descriptor = datasets.get_dataset_descriptor(dataset_options.dataset)
    options = sample_generator.SampleOptions.from_dataset_options(
        dataset_options, descriptor)
    if files is None:
        files = resolve_files(dataset_options, field, is_training, descriptor)
    batch_size = dataset_options.batch_size
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        dataset = dataset.shard(input_context.num_input_pipelines,
                                input_context.input_pipeline_id)
    if is_training:
        dataset = dataset.shuffle(len(files), seed=seed).repeat()
    dataset = dataset.interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(files), _CYCLE_LENGTH),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None
        or not is_training)
    if is_training:
        dataset = dataset.shuffle(_RECORD_SHUFFLE_BUFFER, seed=seed)
    decode_label = dataset_options.decode_groundtruth_label

    def to_sample(index, record):
        # With a seed, every example's augmentation draws from a stateless
        # seed of its own: the same stream whatever the map's parallelism.
        example_seed = None if seed is None else tf.stack(
            [tf.constant(seed, tf.int64), index])
        # A semantic-only dataset's records hold PNG class-id labels.
        return sample_generator.generate_sample(
            tfrecord.decode_example(record, decode_label=decode_label,
                                    is_panoptic=options.has_instances),
            options, is_training, seed=example_seed,
            with_targets=with_targets)

    dataset = dataset.enumerate().skip(skip_batches * batch_size).map(
        to_sample, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=seed is not None or not is_training)
    dataset = dataset.batch(batch_size, drop_remainder=is_training)
    return dataset.prefetch(tf.data.AUTOTUNE)


def build_eval_dataset(config, descriptor: datasets.DatasetDescriptor
                       ) -> tuple[list[str], tf.data.Dataset]:
    """(files, dataset) of one pass over `config.eval_dataset_options`, as
    every evaluation reads them (the runner's eval, evaluate_export); the
    files name the culprit in `explained_read_errors`.

    The samples hold what the evaluator reads: the image (padded crop and
    resized), its name and size, and the raw labels. The training targets
    that DeepLab2's eval samples also carry (heatmaps, offsets, weights at
    the crop size) are left out: nothing at eval reads them, and at
    1025x2049 they were more than half of the pipeline's CPU time."""
    dataset_options = config.eval_dataset_options
    field = 'eval_dataset_options'
    files = resolve_files(dataset_options, field, is_training=False,
                          descriptor=descriptor)
    return files, build_dataset(dataset_options, is_training=False,
                                field=field, files=files,
                                descriptor=descriptor, with_targets=False)


def find_corrupt_files(files) -> list[tuple[str, str]]:
    """(file, error) for every TFRecord file that cannot be read to the end.

    tf.data's DataLossError does not say which shard is truncated; callers
    that catch it use this to name the file.
    """
    corrupt = []
    for path in files:
        try:
            for _ in tf.data.TFRecordDataset(path):
                pass
        except tf.errors.DataLossError as error:
            corrupt.append((path, error.message))
    return corrupt


class CorruptDataError(ValueError):
    """Input TFRecords cannot be read; names the files."""


class MissingFeatureError(CorruptDataError):
    """Input records lack a feature that decoding needs; names the files
    and the feature key."""


def iterate(dataset: tf.data.Dataset, files):
    """Iterates `dataset` eagerly; a read failure is re-raised as a
    CorruptDataError naming the unreadable files among `files` (see
    `explain_read_error`)."""
    iterator = iter(dataset)
    while True:
        with explained_read_errors(files):
            try:
                element = next(iterator)
            except StopIteration:
                return
        yield element


@contextlib.contextmanager
def explained_read_errors(files):
    """Re-raises a tf.data read failure in the block (a DataLossError, or
    the InvalidArgumentError of a missing feature) as the CorruptDataError
    naming the files among `files`; other errors pass unchanged. For loops
    that iterate inside a tf.function (training, evaluation)."""
    try:
        yield
    except (tf.errors.DataLossError,
            tf.errors.InvalidArgumentError) as error:
        explained = explain_read_error(error, files)
        if explained is None:
            raise
        raise explained from error


def explain_read_error(error: tf.errors.OpError,
                       files) -> CorruptDataError | None:
    """The error naming the files among `files` behind a tf.data failure,
    or None when `error` is not about the input records (re-raise it).

    A DataLossError becomes a CorruptDataError naming the truncated files;
    TF's "Feature: ... is required but could not be found", which names
    neither file nor record, a MissingFeatureError naming both.
    """
    if isinstance(error, tf.errors.DataLossError):
        corrupt = find_corrupt_files(files) or [('?', error.message)]
        listing = '\n'.join(f'  {path}: {message}'
                            for path, message in corrupt)
        return CorruptDataError(
            f'Cannot read the input TFRecords:\n{listing}')
    key = tfrecord.missing_feature_key(error.message)
    if key is None:
        return None
    return MissingFeatureError(tfrecord.describe_missing_feature(key, files))
