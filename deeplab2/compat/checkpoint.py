"""Restore DeepLab2 checkpoints, or ours, into a model from build_model.

Both optimizer layouts DeepLab2 writes (positional `optimizer/_variables/N`
from TF >= 2.11, per-variable `.OPTIMIZER_SLOT` from older releases) are
read; optimizer state and counters are ignored, as they are when loading for
inference or fine-tuning. Nothing is loaded partially by accident: a model
variable without a source, a shape mismatch or an unexplained checkpoint
variable raises one error listing all of them; a truncated or corrupt
checkpoint (or archive) raises one CorruptCheckpointError naming it, before
any variable is assigned.
"""

import contextlib
import dataclasses
import gzip
import os
import pathlib
import shutil
import tarfile
import tempfile
import zlib

from google.protobuf import message as message_lib
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2 import files
from deeplab2 import private_api
from deeplab2.compat import naming
from deeplab2.model import builder

ENCODER_ITEM = 'encoder'
_OBJECT_GRAPH_KEY = '_CHECKPOINTABLE_OBJECT_GRAPH'
_COUNTER_ITEMS = ('optimizer', 'global_step', 'save_counter',
                  'training_noise', _OBJECT_GRAPH_KEY)
_INSTANCE_LAST_LAYERS = (common.CKPT_INSTANCE_CENTER_HEAD_LAST_LAYER,
                         common.CKPT_INSTANCE_REGRESSION_HEAD_LAST_LAYER)
_MAX_LISTED = 20


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the model: names every offending key."""


class CorruptCheckpointError(ValueError):
    """The checkpoint's files (or its archive) cannot be read: truncated,
    damaged or partly missing. Names the checkpoint."""


@dataclasses.dataclass
class RestoreSummary:
    """What restore_checkpoint did.

    Attributes:
      checkpoint: the checkpoint prefix that was read.
      source_format: 'deeplab2' (tf.keras names) or 'deeplab2_keras3' (ours).
      restored: model variable keys (our spelling) that were assigned.
      skipped: model variable key -> why it kept its current value.
      ignored: checkpoint key -> why it was not used.
    """
    checkpoint: str
    source_format: str
    restored: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    ignored: dict[str, str] = dataclasses.field(default_factory=dict)

    def __str__(self):
        lines = [f'Checkpoint {self.checkpoint} ({self.source_format}): '
                 f'{len(self.restored)} variables restored, '
                 f'{len(self.skipped)} model variables skipped, '
                 f'{len(self.ignored)} checkpoint entries ignored.']
        for title, entries in (('skipped', self.skipped),
                               ('ignored', self.ignored)):
            reasons = {}
            for reason in entries.values():
                reasons[reason] = reasons.get(reason, 0) + 1
            lines += [f'  {title} {count}: {reason}'
                      for reason, count in sorted(reasons.items())]
        return '\n'.join(lines)


def restore_checkpoint(model, path, *,
                       restore_semantic_last_layer: bool = True,
                       restore_instance_last_layer: bool = True,
                       expected: str = '') -> RestoreSummary:
    """Assigns a checkpoint's weights to `model` (built, from build_model).

    Args:
      model: the DeepLab model; its `checkpoint_items` name its parts.
      path: a checkpoint prefix, a folder holding checkpoints (the latest is
        read), or a model-zoo .tar.gz.
      restore_semantic_last_layer / restore_instance_last_layer: False keeps
        the model's own last layers (e.g. for another number of classes).
      expected: what the model was built from (e.g. the config file), named
        in errors.

    A checkpoint that holds only `encoder/...` variables (an ImageNet
    backbone) restores the encoder and leaves the rest as it is.

    Raises:
      FileNotFoundError: nothing checkpoint-like at `path`.
      CheckpointMismatchError: listing missing, mis-shaped and unexpected
        variables together.
      CorruptCheckpointError: the files cannot be read (e.g. a truncated
        `.data-*` or a damaged `.index`); the model is left unchanged.
    """
    with _checkpoint_prefix(path) as prefix:
        with unreadable_is_corrupt(prefix):
            reader = tf.train.load_checkpoint(prefix)
            shapes = reader.get_variable_to_shape_map()
            variables = naming.variable_keys(model.checkpoint_items)
            # Our trainer's checkpoints keep model weights under the
            # optimizer's path: list them under the model's keys instead.
            stored_as = _stored_keys(reader, shapes, variables)
        moved = set(stored_as.values())
        shapes = {**{key: value for key, value in shapes.items()
                     if key not in moved},
                  **{key: shapes[stored] for key, stored in stored_as.items()}}
        summary, plan = _plan_restore(
            prefix, shapes, variables, restore_semantic_last_layer,
            restore_instance_last_layer, expected)
        # Every value is read before any is assigned, so that a file cut
        # short half-way leaves the model as it was, not half restored.
        with unreadable_is_corrupt(prefix):
            values = [reader.get_tensor(stored_as.get(source, source))
                      for source, _ in plan]
    for (_, our_key), value in zip(plan, values):
        variable = variables[our_key]
        variable.assign(tf.cast(value, variable.dtype))
        summary.restored.append(our_key)
    return summary


@contextlib.contextmanager
def unreadable_is_corrupt(prefix: str):
    """Turns what TF's checkpoint reader raises for damaged files (an
    OpError such as DataLossError or NotFoundError, IndexError "Read less
    bytes than requested" for a cut `.data-*`, DecodeError for a damaged
    object graph) into one CorruptCheckpointError naming `prefix`."""
    try:
        yield
    except (tf.errors.OpError, IndexError,
            message_lib.DecodeError) as error:
        detail = getattr(error, 'message', None) or str(error)
        prefix_path = pathlib.Path(prefix)
        files = sorted(path.name for path in
                       prefix_path.parent.glob(prefix_path.name + '.*'))
        raise CorruptCheckpointError(
            f'Checkpoint {prefix} cannot be read: its files are truncated, '
            f'corrupt or incomplete ({detail.strip()}). Files present: '
            f'{", ".join(files) or "none"}. Copy or download the '
            'checkpoint again.') from None


def _stored_keys(reader, shapes, variables) -> dict[str, str]:
    """{model variable key: the key its value is stored under}, where the
    two differ.

    TF stores each variable once, under the shortest path to it. Next to a
    Keras 3 optimizer (our trainer's checkpoints) that is
    `optimizer/_trainable_variables/N`, not the model's path; the object
    graph still records the model's path, so follow it. (Our keys' path
    names hold no '.' or '/', so no unescaping is needed.)
    """
    if _OBJECT_GRAPH_KEY not in shapes:
        return {}
    graph = private_api.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))
    children = [{child.local_name: child.node_id for child in node.children}
                for node in graph.nodes]
    stored = {}
    for key in variables:
        path, _, attribute = key.partition('/.ATTRIBUTES/')
        node = 0
        for name in path.split('/'):
            node = children[node].get(name)
            if node is None:
                break
        else:
            for saved in graph.nodes[node].attributes:
                if saved.name == attribute and saved.checkpoint_key != key:
                    stored[key] = saved.checkpoint_key
    return stored


def _plan_restore(prefix, shapes, variables, restore_semantic_last_layer,
                  restore_instance_last_layer, expected):
    """Matches model variables to checkpoint keys; raises on any mismatch."""
    ours = any('/_kernel/' in key for key in shapes)
    source_key = (lambda key: key) if ours else naming.deeplab2_key
    summary = RestoreSummary(prefix, 'deeplab2_keras3' if ours else 'deeplab2')
    skip = _items_to_skip(shapes, variables, restore_semantic_last_layer,
                          restore_instance_last_layer)
    plan, missing, mismatched = [], [], []
    for our_key, variable in variables.items():
        item = our_key.split('/', 1)[0]
        if item in skip:
            summary.skipped[our_key] = skip[item]
            continue
        source = source_key(our_key)
        if source not in shapes:
            missing.append(source)
        elif list(shapes[source]) != list(variable.shape):
            mismatched.append(f'{source}: checkpoint {list(shapes[source])}, '
                              f'model {list(variable.shape)}')
        else:
            plan.append((source, our_key))
    used = {source for source, _ in plan}
    unexpected = []
    for key in sorted(set(shapes) - used):
        reason = _ignore_reason(key, skip)
        if reason:
            summary.ignored[key] = reason
        else:
            unexpected.append(key)
    if missing or mismatched or unexpected:
        raise CheckpointMismatchError(_mismatch_message(
            prefix, expected, missing, mismatched, unexpected))
    return summary, plan


def _items_to_skip(shapes, variables, restore_semantic_last_layer,
                   restore_instance_last_layer) -> dict[str, str]:
    """Model checkpoint items not to restore, with the reason."""
    checkpoint_items = {key.split('/', 1)[0] for key in shapes} - set(
        _COUNTER_ITEMS)
    model_items = {key.split('/', 1)[0] for key in variables}
    skip = {}
    if checkpoint_items == {ENCODER_ITEM}:
        skip.update({item: 'backbone-only checkpoint'
                     for item in model_items - {ENCODER_ITEM}})
    if not restore_semantic_last_layer:
        skip[common.CKPT_SEMANTIC_LAST_LAYER] = (
            'restore_semantic_last_layer_from_initial_checkpoint is false')
    if not restore_instance_last_layer:
        skip.update({item: 'restore_instance_last_layer_from_initial_'
                     'checkpoint is false' for item in _INSTANCE_LAST_LAYERS})
    return skip


def _ignore_reason(key: str, skip: dict[str, str]) -> str | None:
    item = key.split('/', 1)[0]
    if '.OPTIMIZER_SLOT' in key or item == 'optimizer':
        return 'optimizer state'
    if item in _COUNTER_ITEMS:
        return 'counter or object graph'
    if item in skip:
        return skip[item]
    return None


def _mismatch_message(prefix, expected, missing, mismatched, unexpected):
    def listing(title, keys):
        shown = '\n'.join(f'    {key}' for key in keys[:_MAX_LISTED])
        more = (f'\n    ... and {len(keys) - _MAX_LISTED} more'
                if len(keys) > _MAX_LISTED else '')
        return f'  {title} ({len(keys)}):\n{shown}{more}'
    parts = [f'Checkpoint {prefix} does not fit the model'
             + (f' built from {expected}' if expected else '') + ':']
    if missing:
        parts.append(listing('model variables with no value in the '
                             'checkpoint', missing))
    if mismatched:
        parts.append(listing('shape mismatches', mismatched))
    if unexpected:
        parts.append(listing('checkpoint variables the model does not have',
                             unexpected))
    parts.append('Check that the config (backbone, multipliers, decoder and '
                 'head channels, classes) is the one the checkpoint was '
                 'trained with.')
    return '\n'.join(parts)


# ---------------------------------------------------------------- paths


class _checkpoint_prefix:
    """Context manager: the checkpoint prefix behind `path`, extracting a
    .tar.gz into a temporary folder that is removed afterwards."""

    def __init__(self, path):
        self._path = pathlib.Path(path)
        self._tmp = None

    def __enter__(self) -> str:
        path = self._path
        if path.name.endswith(('.tar.gz', '.tgz', '.tar')):
            if not path.is_file():
                raise FileNotFoundError(f'Checkpoint archive not found: {path}')
            self._tmp = tempfile.mkdtemp(prefix='deeplab2_ckpt_')
            _extract(path, self._tmp)
            path = pathlib.Path(self._tmp)
        return _find_prefix(path, original=self._path)

    def __exit__(self, *exc):
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def _extract(archive: pathlib.Path, folder: str) -> None:
    """Extracts `archive` into `folder`, which is removed again on failure
    (__exit__ does not run when __enter__ raises)."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter='data')
    except (tarfile.TarError, EOFError, zlib.error,
            gzip.BadGzipFile) as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise CorruptCheckpointError(
            f'Checkpoint archive {archive} is truncated or corrupt '
            f'({str(error).strip()}). Download it again.') from None


def _find_prefix(path: pathlib.Path, original: pathlib.Path) -> str:
    if pathlib.Path(f'{path}.index').is_file():
        return str(path)
    if path.is_dir():
        latest = tf.train.latest_checkpoint(str(path))
        if latest:
            return latest
        indexes = sorted(path.rglob('*.index'))
        if len(indexes) == 1:
            return str(indexes[0])[:-len('.index')]
        if indexes:
            raise FileNotFoundError(
                f'{original} holds several checkpoints and no `checkpoint` '
                f'file naming the latest: {[str(i) for i in indexes]}; pass '
                'the prefix of one.')
    raise FileNotFoundError(
        f'No checkpoint at {original}: expected a prefix (with .index and '
        '.data-* files), a folder holding one, or a .tar.gz.')


def save_model_checkpoint(model, prefix) -> str:
    """Writes the model's weights as our checkpoint (tf.train.Checkpoint of
    `model.checkpoint_items`, readable without conversion code).

    The files are written in a staging folder beside `prefix` (named as
    deeplab2.files names staging siblings, so remove_stale_siblings finds
    one a killed writer left) and then moved next to it, so a failure leaves
    no half-written checkpoint at `prefix`. Returns the prefix.
    """
    prefix = pathlib.Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = files.sibling_path(prefix, 'staging')
    staging.mkdir()
    try:
        tf.train.Checkpoint(**model.checkpoint_items).write(
            str(staging / prefix.name))
        # Sorted: the .data files before the .index that makes them visible.
        for file in sorted(staging.iterdir()):
            os.replace(file, prefix.parent / file.name)
    finally:
        files.remove(staging)
    return str(prefix)


def restore_initial_checkpoint(model, model_options,
                               expected: str = '') -> RestoreSummary | None:
    """Applies `model_options.initial_checkpoint` with DeepLab2's partial
    restore flags; returns None when no initial checkpoint is set."""
    path = config_lib.resolved_field(model_options, 'initial_checkpoint',
                                     message_path='model_options')
    if not path:
        return None
    return restore_checkpoint(
        model, path,
        restore_semantic_last_layer=(
            model_options.restore_semantic_last_layer_from_initial_checkpoint),
        restore_instance_last_layer=(
            model_options.restore_instance_last_layer_from_initial_checkpoint),
        expected=expected)


def convert_checkpoint(config, input_path, output_prefix,
                       expected: str = '') -> RestoreSummary:
    """Builds the config's model, restores `input_path` (DeepLab2's or
    ours) into it and writes it as our checkpoint at `output_prefix`."""
    model = builder.build_model(config)
    summary = restore_checkpoint(model, input_path, expected=expected)
    save_model_checkpoint(model, output_prefix)
    return summary
