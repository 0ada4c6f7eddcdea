"""Converting one split of your own dataset: what both input formats of
`scripts/build_dataset.py` share.

A format (`coco_panoptic_dataset.py`, `label_folders.py`) reads its class
table and lists the split's images as a `SplitListing`; `convert_split`
then decides the label space of the records, checks the dataset.json it
will write, writes the shards (`conversion.convert_splits`: sharded,
resumable, with progress) and only then writes or updates
`<output_dir>/dataset.json` (`dataset_spec.py`). A failure before the end
leaves no spec, and no shard of the failing image (shards finished before
it are kept, so a rerun resumes).

The label space of the records:

* train id = the class's position in the source's class table; the
  source's own id is kept as the spec's `eval_id`;
* ignore label: 255, as Cityscapes, unless 255 is a train id (more than
  255 classes): then the number of classes, the smallest id that is not a
  train id;
* panoptic label divisor (datasets with instances): that of an existing
  dataset.json when the split's instances fit it, else the one asked for,
  else 256 when every instance number of the split is below 256, else 1000
  (DeepLab2's two values), else the smallest power of ten above the
  largest; labels are `train_id * divisor + instance`, int32;
* semantic-only datasets store 8-bit PNG labels of train ids (DeepLab2's
  'png' label format), so they hold at most 255 classes.

TensorFlow-free: the label space travels to the worker processes.
"""

import dataclasses
import functools
import json
import os
from typing import Callable, Mapping, Optional, Sequence

from deeplab2.data import conversion
from deeplab2.data import dataset_spec

# The ignore label of the records when 255 is not a train id (Cityscapes').
DEFAULT_IGNORE_LABEL = 255
# Semantic-only labels are 8-bit PNGs: train ids and ignore fit one byte.
MAX_PNG_LABEL = 255
# The divisors tried in order before powers of ten: COCO's, Cityscapes'.
_DIVISORS = (256, 1000)


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """How a source's class ids become record labels; handed (pickled) to
    every worker with its jobs.

    Attributes:
      train_ids: source class id -> train id.
      thing_train_ids: train ids of classes with instances.
      ignore_label: the records' void label.
      divisor: panoptic label divisor; None for a semantic-only dataset.
      source_ignore_id: the void id in the source's labels (label folders).
    """
    train_ids: Mapping[int, int]
    thing_train_ids: frozenset
    ignore_label: int
    divisor: Optional[int]
    source_ignore_id: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class SplitListing:
    """What a format found before anything is written.

    Attributes:
      source: the file holding the class table (named in errors).
      classes: the spec's class entries in train-id order: name, eval_id
        (the source's id), thing, and color when the source has one.
      eval_void_id: void's id in the source's ids.
      jobs: the split's jobs, in record order.
      has_instances: panoptic (True) or semantic-only records.
      max_instances: the largest instance number of one class in one
        image (0 when semantic-only).
      source_ignore_id: see `LabelSpace`.
    """
    source: str
    classes: Sequence[dict]
    eval_void_id: int
    jobs: Sequence[conversion.ImageJob]
    has_instances: bool
    max_instances: int = 0
    source_ignore_id: Optional[int] = None


def ignore_label_for(num_classes: int) -> int:
    """255 unless it is a train id, else the first id that is not."""
    return (DEFAULT_IGNORE_LABEL if num_classes <= DEFAULT_IGNORE_LABEL
            else num_classes)


def choose_divisor(max_instances: int, existing: Optional[int] = None,
                   requested: Optional[int] = None,
                   spec_path: str = '') -> int:
    """The panoptic label divisor for a split whose largest instance
    number is `max_instances` (see the module docstring).

    Raises:
      ValueError: when the instances do not fit a divisor that is already
        fixed (by `existing`, the divisor of the dataset.json at
        `spec_path`, or `requested`), or the two disagree.
    """
    if existing is not None:
        if requested is not None and requested != existing:
            raise ValueError(
                f'--label_divisor={requested} differs from '
                f'panoptic_label_divisor {existing} of {spec_path}, which '
                'its other splits were written with.')
        if max_instances >= existing:
            raise ValueError(
                f'This split numbers up to {max_instances} instances of one '
                f'class in an image, too many for panoptic_label_divisor '
                f'{existing} of {spec_path}, which its other splits were '
                'written with: convert every split again into a new '
                f'--output_dir with --label_divisor above {max_instances}.')
        return existing
    if requested is not None:
        if max_instances >= requested:
            raise ValueError(
                f'--label_divisor={requested} is too small: this split '
                f'numbers up to {max_instances} instances of one class in '
                'an image.')
        return requested
    for divisor in _DIVISORS:
        if max_instances < divisor:
            return divisor
    return 10 ** len(str(max_instances))


def spec_path_of(output_dir: str) -> str:
    return os.path.join(output_dir, dataset_spec.SPEC_FILE_NAME)


def shard_pattern(split: str, num_shards: int) -> str:
    """The split's shards (`sharded_writer.shard_name`) and no others: not
    those of a split whose name starts with it, nor of another shard
    count."""
    return f'{split}-?????-of-{num_shards:05d}.tfrecord'


def _read_existing_spec(path: str) -> Optional[dict]:
    """The dataset.json already in the output folder, checked, or None."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            spec = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise dataset_spec.DatasetSpecError(
            f'{path}: not a JSON dataset spec: {error}') from None
    dataset_spec.descriptor_from_spec(spec, path)
    return spec


def _check_same_classes(listing: SplitListing, ignore_label: int,
                        existing: dict, spec_path: str) -> None:
    """Raises ValueError naming both files at the first difference."""
    differs = f'The class table of {listing.source} differs from that of ' \
        f'{spec_path}, which its other splits were written with'
    old_classes = existing['classes']
    if len(old_classes) != len(listing.classes):
        raise ValueError(f'{differs}: {len(listing.classes)} classes here, '
                         f'{len(old_classes)} there.')
    for index, (new, old) in enumerate(zip(listing.classes, old_classes)):
        if new != old:
            raise ValueError(f'{differs}: class {index} is {new} here, {old} '
                             'there.')
    old_panoptic = existing.get('panoptic_label_divisor') is not None
    if old_panoptic != listing.has_instances:
        kinds = {True: 'with instances', False: 'semantic-only'}
        raise ValueError(f'{differs}: the dataset is '
                         f'{kinds[listing.has_instances]} here, '
                         f'{kinds[old_panoptic]} there.')
    for key, value in (('ignore_label', ignore_label),
                       ('eval_void_id', listing.eval_void_id)):
        if existing.get(key) != value:
            raise ValueError(f'{differs}: {key} is {value} here, '
                             f'{existing.get(key)} there.')


def plan_spec(listing: SplitListing, split: str, output_dir: str,
              num_shards: int, dataset_name: Optional[str] = None,
              label_divisor: Optional[int] = None) -> tuple[dict, LabelSpace]:
    """The dataset.json to write once the split is converted (checked
    now) and the label space to convert with.

    Raises:
      ValueError: naming the file, for a class table that differs from an
        existing dataset.json's or does not fit the records' format.
      DatasetSpecError: naming the existing spec or the key, for a spec
        that would be invalid.
    """
    spec_path = spec_path_of(output_dir)
    num_classes = len(listing.classes)
    ignore_label = ignore_label_for(num_classes)
    if not listing.has_instances and num_classes > MAX_PNG_LABEL:
        raise ValueError(
            f'{listing.source}: {num_classes} classes; a semantic-only '
            f'dataset stores 8-bit PNG labels and holds at most '
            f'{MAX_PNG_LABEL} (give instances to store int32 labels).')
    existing = _read_existing_spec(spec_path)
    divisor = None
    if existing is not None:
        _check_same_classes(listing, ignore_label, existing, spec_path)
    if listing.has_instances:
        divisor = choose_divisor(
            listing.max_instances,
            existing and existing.get('panoptic_label_divisor'),
            label_divisor, spec_path)
    if existing is not None:
        spec = dict(existing)
    else:
        spec = {'name': None, 'classes': list(listing.classes),
                'ignore_label': ignore_label,
                'eval_void_id': listing.eval_void_id}
        if divisor is not None:
            spec['panoptic_label_divisor'] = divisor
    spec['name'] = (dataset_name or spec['name'] or
                    os.path.basename(os.path.abspath(output_dir)))
    spec = dataset_spec.with_split(spec, split,
                                   shard_pattern(split, num_shards),
                                   len(listing.jobs), listing.max_instances)
    dataset_spec.descriptor_from_spec(spec, os.path.abspath(spec_path))
    label_space = LabelSpace(
        train_ids={entry['eval_id']: train_id
                   for train_id, entry in enumerate(listing.classes)},
        thing_train_ids=frozenset(
            train_id for train_id, entry in enumerate(listing.classes)
            if entry['thing']),
        ignore_label=ignore_label, divisor=divisor,
        source_ignore_id=listing.source_ignore_id)
    return spec, label_space


def convert_split(listing: SplitListing,
                  prepare: Callable[[LabelSpace, conversion.ImageJob],
                                    conversion.PreparedExample],
                  split: str,
                  output_dir: str,
                  num_shards: int = 10,
                  num_workers: Optional[int] = None,
                  dataset_name: Optional[str] = None,
                  label_divisor: Optional[int] = None,
                  show_progress: bool = True) -> tuple[list[str], str]:
    """Writes the split's shards, then the dataset.json; returns (shard
    paths, spec path).

    Args:
      listing: the split, as its format listed it.
      prepare: the format's worker function (module level, TensorFlow-free),
        given the label space and one job.
      split: the split's name (shard names and the spec's key).
      output_dir: where shards and dataset.json go.
      num_shards, num_workers, show_progress: see
        `conversion.convert_splits`.
      dataset_name: the spec's name; default: the existing spec's, else
        the output folder's name.
      label_divisor: the panoptic label divisor; default: chosen (see the
        module docstring).
    """
    if num_shards < 1:
        raise ValueError(f'num_shards must be positive, got {num_shards}.')
    spec, label_space = plan_spec(listing, split, output_dir, num_shards,
                                  dataset_name, label_divisor)
    shard_paths = conversion.convert_splits(
        [split], lambda _: listing.jobs,
        functools.partial(prepare, label_space), output_dir, num_shards,
        num_workers=num_workers, show_progress=show_progress)[split]
    spec_path = spec_path_of(output_dir)
    dataset_spec.write_spec(spec_path, spec)
    return shard_paths, spec_path
