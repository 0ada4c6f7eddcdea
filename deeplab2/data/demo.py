"""The embedded demo dataset, built once and cached.

Nothing is downloaded: `materialize_demo_dataset` draws street scenes
(`synthetic_scene`), writes them as a raw Cityscapes tree
(`synthetic_cityscapes`) and converts that tree with the real Cityscapes
converter, so the demo exercises the same path a user's Cityscapes copy
takes. The result is cached under `$DEEPLAB2_CACHE` (or `~/.cache/deeplab2`)
in a folder whose name carries the generator version.
"""

import os
from typing import Optional

from deeplab2 import files
from deeplab2.data import synthetic_cityscapes

# Bump when a change to the scenes, the tree writer or the conversion
# changes the data, so that caches built by an older version are not reused.
GENERATOR_VERSION = 1

# The demo keeps crowd regions as crowd (class * 1000), so the input
# pipeline's crowd handling is exercised; void stays void.
_TREAT_CROWD_AS_IGNORE = False

# A build takes seconds: a staging folder this old belongs to a killed one.
_STALE_BUILD_SECONDS = 3600


def default_cache_dir() -> str:
    """`$DEEPLAB2_CACHE`, else `~/.cache/deeplab2`."""
    return os.environ.get('DEEPLAB2_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'deeplab2')


def demo_dataset_dir(cache_dir: Optional[str] = None, num_train: int = 64,
                     num_val: int = 16, seed: int = 0) -> str:
    """The cache folder for one version and size of the demo dataset."""
    cache_dir = cache_dir or default_cache_dir()
    return os.path.join(
        cache_dir, f'demo_v{GENERATOR_VERSION}_seed{seed}_'
        f'{num_train}train_{num_val}val')


def materialize_demo_dataset(cache_dir: Optional[str] = None,
                             num_train: int = 64, num_val: int = 16,
                             seed: int = 0,
                             num_workers: int = 1) -> str:
    """Generates and converts the demo dataset once; reuses it afterwards.

    The raw tree goes to `<dir>/cityscapes` and the shards, written by
    `deeplab2.data.cityscapes.convert_cityscapes` as
    `<split>-%05d-of-%05d.tfrecord` for splits 'train' and 'val', to
    `<dir>/tfrecord`, with `<dir>` = `demo_dataset_dir(...)`. Everything is
    built in a staging sibling folder renamed when complete
    (`files.staged_folder`), so an interrupted build never leaves a cache
    that looks finished; staging folders of a killed build are removed by a
    later build once they are an hour old, so no running build loses its
    folder. When two processes build at once, the first rename wins and the
    other's copy is dropped.

    `num_workers` is passed to the converter. One is the default: the demo
    is small, and worker processes are spawned, which needs callers'
    scripts to guard their main code.

    Returns:
      the folder holding the TFRecord shards.
    """
    final_dir = demo_dataset_dir(cache_dir, num_train, num_val, seed)
    tfrecord_dir = os.path.join(final_dir, 'tfrecord')
    if os.path.isdir(tfrecord_dir):
        return tfrecord_dir
    # Imported here: the converter pulls in TensorFlow, the generator not.
    from deeplab2.data import cityscapes
    files.remove_stale_siblings(final_dir, _STALE_BUILD_SECONDS)
    try:
        with files.staged_folder(final_dir) as build_dir:
            raw_dir = synthetic_cityscapes.generate_demo_cityscapes(
                str(build_dir / 'cityscapes'), num_train, num_val, seed)
            cityscapes.convert_cityscapes(
                raw_dir, str(build_dir / 'tfrecord'),
                splits=('train', 'val'), create_panoptic_data=True,
                treat_crowd_as_ignore=_TREAT_CROWD_AS_IGNORE,
                num_workers=num_workers, show_progress=False)
    except FileExistsError:
        if not os.path.isdir(tfrecord_dir):  # Not a lost race: a fault.
            raise
    return tfrecord_dir
