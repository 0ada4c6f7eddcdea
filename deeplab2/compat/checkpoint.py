"""Restore DeepLab2 checkpoints, or ours, into a model from build_model.

Both optimizer layouts DeepLab2 writes (positional `optimizer/_variables/N`
from TF >= 2.11, per-variable `.OPTIMIZER_SLOT` from older releases) are
read; optimizer state and counters are ignored, as they are when loading for
inference or fine-tuning. Nothing is loaded partially by accident: a model
variable without a source, a shape mismatch or an unexplained checkpoint
variable raises one error listing all of them. The planned exceptions are
for fine-tuning: an initial checkpoint's last layers follow DeepLab2's
restore_*_last_layer flags (`last_layers`), so a classifier for another
number of classes is kept, and named in the summary; and its parts that the
model lacks altogether (a semantic-only model from a panoptic checkpoint)
are ignored. Every model variable still needs a value. A truncated or corrupt
checkpoint (or archive) raises one CorruptCheckpointError naming it, before
any variable is assigned.
"""

import dataclasses
import os
import pathlib

import tensorflow as tf

from deeplab2 import config as config_lib
from deeplab2 import files
from deeplab2 import private_api
from deeplab2.compat import checkpoint_files
from deeplab2.compat import last_layers
from deeplab2.compat import naming
from deeplab2.model import builder

ENCODER_ITEM = 'encoder'
_OBJECT_GRAPH_KEY = '_CHECKPOINTABLE_OBJECT_GRAPH'
_COUNTER_ITEMS = ('optimizer', 'global_step', 'save_counter',
                  'training_noise', _OBJECT_GRAPH_KEY)
_MAX_LISTED = 20


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the model: names every offending key."""


@dataclasses.dataclass
class RestoreSummary:
    """What restore_checkpoint did.

    Attributes:
      checkpoint: the checkpoint prefix that was read.
      source_format: 'deeplab2' (tf.keras names) or 'deeplab2_keras3' (ours).
      restored: model variable keys (our spelling) that were assigned.
      skipped: model variable key -> why it kept its current value.
      ignored: checkpoint key -> why it was not used.
      shape_differences: skipped model variable key -> its shape in the
        checkpoint and in the model, where they differ.

    Its text (what the trainer logs) counts each reason and names the
    skipped model variables, which is how a fine-tuning run shows that its
    classifier was left freshly initialized.
    """
    checkpoint: str
    source_format: str
    restored: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    ignored: dict[str, str] = dataclasses.field(default_factory=dict)
    shape_differences: dict[str, str] = dataclasses.field(
        default_factory=dict)

    def __str__(self):
        lines = [f'Checkpoint {self.checkpoint} ({self.source_format}): '
                 f'{len(self.restored)} variables restored, '
                 f'{len(self.skipped)} model variables skipped, '
                 f'{len(self.ignored)} checkpoint entries ignored.']
        for title, entries in (('skipped', self.skipped),
                               ('ignored', self.ignored)):
            by_reason = {}
            for key, reason in entries.items():
                by_reason.setdefault(reason, []).append(key)
            for reason, keys in sorted(by_reason.items()):
                lines.append(f'  {title} {len(keys)}: {reason}')
                if title == 'skipped':
                    lines += _listed([
                        f'{key} ({self.shape_differences[key]})'
                        if key in self.shape_differences else key
                        for key in keys], indent='    ')
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
    return _restore(model, path, last_layers.from_flags(
        restore_semantic_last_layer, restore_instance_last_layer), expected)


def _restore(model, path, rules: list[last_layers.Rule], expected: str,
             allow_absent_parts: bool = False) -> RestoreSummary:
    """restore_checkpoint, with the last layers restored as `rules` say;
    `allow_absent_parts` ignores checkpoint items the model has no part for
    (e.g. the instance branch, for a semantic-only model)."""
    with checkpoint_files.checkpoint_prefix(path) as prefix:
        with checkpoint_files.unreadable_is_corrupt(prefix):
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
        summary, plan = _plan_restore(prefix, shapes, variables, rules,
                                      expected, allow_absent_parts)
        # Every value is read before any is assigned, so that a file cut
        # short half-way leaves the model as it was, not half restored.
        with checkpoint_files.unreadable_is_corrupt(prefix):
            values = [reader.get_tensor(stored_as.get(source, source))
                      for source, _ in plan]
    for (_, our_key), value in zip(plan, values):
        variable = variables[our_key]
        variable.assign(tf.cast(value, variable.dtype))
        summary.restored.append(our_key)
    return summary


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


def _plan_restore(prefix, shapes, variables, rules, expected,
                  allow_absent_parts=False):
    """Matches model variables to checkpoint keys; raises on any mismatch
    that `rules` do not allow."""
    ours = any('/_kernel/' in key for key in shapes)
    source_key = (lambda key: key) if ours else naming.deeplab2_key
    summary = RestoreSummary(prefix, 'deeplab2_keras3' if ours else 'deeplab2')
    differences = {}  # our key -> 'checkpoint [..], model [..]'
    for our_key, variable in variables.items():
        source = source_key(our_key)
        if source in shapes and list(shapes[source]) != list(variable.shape):
            differences[our_key] = (f'checkpoint {list(shapes[source])}, '
                                    f'model {list(variable.shape)}')
    item_differences = {}  # item -> its variables' differences, as listed
    for our_key, difference in differences.items():
        item_differences.setdefault(_item(our_key), []).append(
            f'{source_key(our_key)}: {difference}')
    skip = _items_to_skip(shapes, variables, rules, item_differences,
                          allow_absent_parts)
    plan, missing, mismatched = [], [], []
    for our_key in variables:
        item = _item(our_key)
        source = source_key(our_key)
        if item in skip:
            summary.skipped[our_key] = skip[item]
            if our_key in differences:
                summary.shape_differences[our_key] = differences[our_key]
        elif source not in shapes:
            missing.append(source)
        elif our_key in differences:
            mismatched.append(f'{source}: {differences[our_key]}')
        else:
            plan.append((source, our_key))
    planned = {source for source, _ in plan}
    mis_shaped = {source_key(our_key) for our_key in differences}
    unexpected = []
    for key in sorted(set(shapes) - planned):
        reason = _ignore_reason(key, skip)
        if reason:
            summary.ignored[key] = reason
        elif key not in mis_shaped:  # those are listed as mismatches
            unexpected.append(key)
    if missing or mismatched or unexpected:
        # A layer the config insists on restoring: say which flag insists.
        notes = [rule.forced_restore_note(item, item_differences[item])
                 for rule in rules if rule.from_config
                 and rule.mode is last_layers.Mode.RESTORE
                 for item in rule.items if item in item_differences]
        raise CheckpointMismatchError(_mismatch_message(
            prefix, expected, missing, mismatched, unexpected, notes))
    return summary, plan


def _item(key: str) -> str:
    """The checkpoint item (`encoder`, `semantic_last_layer`, ...) a key
    belongs to."""
    return key.split('/', 1)[0]


def _items_to_skip(shapes, variables, rules, item_differences,
                   allow_absent_parts) -> dict[str, str]:
    """Checkpoint items not to restore, with the reason."""
    checkpoint_items = {_item(key) for key in shapes} - set(_COUNTER_ITEMS)
    model_items = {_item(key) for key in variables}
    skip = {}
    if allow_absent_parts:
        skip.update({item: f'{item} is not a part of this model'
                     for item in checkpoint_items - model_items})
    if checkpoint_items == {ENCODER_ITEM}:
        skip.update({item: 'backbone-only checkpoint'
                     for item in model_items - {ENCODER_ITEM}})
    for rule in rules:
        for item in rule.items:
            if rule.mode is last_layers.Mode.KEEP:
                skip[item] = rule.keep_reason()
            elif (rule.mode is last_layers.Mode.IF_SHAPES_MATCH
                  and item in item_differences and item not in skip):
                # The whole layer, so a bias never restores without its
                # kernel.
                skip[item] = rule.shape_reason(item)
    return skip


def _ignore_reason(key: str, skip: dict[str, str]) -> str | None:
    item = _item(key)
    if '.OPTIMIZER_SLOT' in key or item == 'optimizer':
        return 'optimizer state'
    if item in _COUNTER_ITEMS:
        return 'counter or object graph'
    if item in skip:
        return skip[item]
    return None


def _listed(keys: list[str], indent: str) -> list[str]:
    """Lines naming `keys`, at most _MAX_LISTED of them."""
    lines = [indent + key for key in keys[:_MAX_LISTED]]
    if len(keys) > _MAX_LISTED:
        lines.append(f'{indent}... and {len(keys) - _MAX_LISTED} more')
    return lines


def _mismatch_message(prefix, expected, missing, mismatched, unexpected,
                      notes):
    def listing(title, keys):
        return '\n'.join([f'  {title} ({len(keys)}):']
                         + _listed(keys, indent='    '))
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
    parts += notes
    parts.append('Check that the config (backbone, multipliers, decoder and '
                 'head channels, classes) is the one the checkpoint was '
                 'trained with.')
    return '\n'.join(parts)


# ---------------------------------------------------------------- paths


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
    restore flags (see `last_layers`: a flag left unset restores its layers
    when their shapes fit, so a classifier for another number of classes
    keeps its initialization and is named in the summary); returns None
    when no initial checkpoint is set. Checkpoint items the model has no
    part for (the instance branch, for a semantic-only model) are ignored,
    and counted in the summary.

    Raises:
      CheckpointMismatchError: as restore_checkpoint, also when a flag set
        to true asks for a layer whose shape differs (naming the flag).
    """
    path = config_lib.resolved_field(model_options, 'initial_checkpoint',
                                     message_path='model_options')
    if not path:
        return None
    # As in DeepLab2, a model with fewer parts than the checkpoint's (e.g. a
    # semantic-only model from a panoptic checkpoint) takes those it has.
    return _restore(model, path, last_layers.from_model_options(model_options),
                    expected, allow_absent_parts=True)


def convert_checkpoint(config, input_path, output_prefix,
                       expected: str = '') -> RestoreSummary:
    """Builds the config's model, restores `input_path` (DeepLab2's or
    ours) into it and writes it as our checkpoint at `output_prefix`."""
    model = builder.build_model(config)
    summary = restore_checkpoint(model, input_path, expected=expected)
    save_model_checkpoint(model, output_prefix)
    return summary
