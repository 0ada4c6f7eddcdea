"""The command-line flags every dataset conversion script shares.

A script (`scripts/build_<dataset>_data.py`) defines its dataset's root
flag and defaults through `define_flags`, adds flags only its converter
has, and hands its converter to `run` in `main`; a script whose input is
not one root folder (`build_dataset.py`) takes `define_output_flags` and
`define_crowd_flag` alone. Only absl here: spawned worker processes
re-import the script, and must not load TensorFlow.
"""

import dataclasses
from typing import Callable, Optional, Sequence

from absl import flags


@dataclasses.dataclass(frozen=True)
class ConversionFlags:
    """The shared flags' holders, read once absl has parsed argv."""
    root: flags.FlagHolder
    output_dir: flags.FlagHolder
    splits: flags.FlagHolder
    treat_crowd_as_ignore: flags.FlagHolder
    num_shards: flags.FlagHolder
    num_workers: flags.FlagHolder


def define_flags(root_flag: str, root_help: str, void_label: int,
                 num_shards: int, num_shards_help: str,
                 splits: Optional[Sequence[str]],
                 splits_help: str) -> ConversionFlags:
    """Defines the shared flags with one dataset's names and defaults.

    Args:
      root_flag: name of the raw dataset's folder flag ('coco_root').
      root_help: what that folder holds.
      void_label: the panoptic id crowd regions get when ignored (named in
        the help of --treat_crowd_as_ignore).
      num_shards: default shards per split.
      num_shards_help: help of --num_shards.
      splits: default --splits (None: the converter's own choice).
      splits_help: help of --splits.
    """
    output_dir, num_shards_flag, num_workers = define_output_flags(
        num_shards, num_shards_help)
    return ConversionFlags(
        root=flags.DEFINE_string(root_flag, None, root_help, required=True),
        output_dir=output_dir,
        splits=flags.DEFINE_list('splits', splits, splits_help),
        treat_crowd_as_ignore=define_crowd_flag(
            f'Crowd regions become void ({void_label}).'),
        num_shards=num_shards_flag,
        num_workers=num_workers)


def define_output_flags(num_shards: int, num_shards_help: str) -> tuple[
        flags.FlagHolder, flags.FlagHolder, flags.FlagHolder]:
    """--output_dir, --num_shards and --num_workers: the flags of every
    script that writes shards (also `scripts/build_dataset.py`, whose
    inputs are not one root folder)."""
    return (flags.DEFINE_string('output_dir', None,
                                'Where to write the shards.', required=True),
            flags.DEFINE_integer('num_shards', num_shards, num_shards_help),
            flags.DEFINE_integer(
                'num_workers', None,
                'Worker processes; default: one per CPU.'))


def define_crowd_flag(help_text: str) -> flags.FlagHolder:
    """--treat_crowd_as_ignore, true by default as in DeepLab2."""
    return flags.DEFINE_boolean('treat_crowd_as_ignore', True, help_text)


def run(convert: Callable[..., dict], shared: ConversionFlags,
        **options) -> int:
    """Calls `convert(root, output_dir, ...)` with the shared flags' values
    and `options`, prints each split's shard count; the exit status."""
    output_dir = shared.output_dir.value
    shard_paths = convert(
        shared.root.value, output_dir, splits=shared.splits.value,
        treat_crowd_as_ignore=shared.treat_crowd_as_ignore.value,
        num_shards=shared.num_shards.value,
        num_workers=shared.num_workers.value, **options)
    for split, paths in shard_paths.items():
        print(f'{split}: {len(paths)} shards in {output_dir}')
    return 0
