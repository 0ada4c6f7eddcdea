"""A dataset described in a JSON file instead of Python: your own data.

`scripts/build_dataset.py` writes `<output_dir>/dataset.json`; a config
names it in `train_dataset_options.dataset` / `eval_dataset_options.dataset`
(a path, relative to the config file's folder) where a built-in dataset
would have its name. The file holds what `DatasetDescriptor` holds:

    {
      "name": "my_streets",
      "classes": [                       # train id = position in this list
        {"name": "road", "eval_id": 7, "thing": false,
         "color": [128, 64, 128]},       # eval_id, thing, color optional
        {"name": "car", "eval_id": 26, "thing": true}
      ],
      "ignore_label": 255,               # optional, default 255
      "panoptic_label_divisor": 1000,    # absent or null: semantic-only
      "eval_void_id": 0,                 # optional, default 0
      "splits": {
        "train": {"file_pattern": "train-*.tfrecord",   # relative to the
                  "num_examples": 120,                  # spec's folder
                  "max_instances": 17}                  # optional
      }
    }

`eval_id` is the class's id in the original annotations (what official
evaluators and the segments JSON use); it defaults to the train id. A class
without `color` gets a deterministic one. Errors name the file and the key.
TensorFlow-free: converter processes read and write specs.
"""

import json
import os
from typing import Any, Mapping

from deeplab2 import files
from deeplab2.data import datasets

SPEC_FILE_NAME = 'dataset.json'
DEFAULT_IGNORE_LABEL = 255
# Panoptic labels are int32: semantic * divisor + instance must fit.
_MAX_PANOPTIC = 2 ** 31 - 1


class DatasetSpecError(ValueError):
    """A dataset spec that cannot be used; the message names file and key."""


def load_spec(path: str) -> datasets.DatasetDescriptor:
    """The descriptor a spec file describes; split patterns made absolute
    against the spec's folder."""
    path = os.path.abspath(path)
    spec = files.read_json_object(path, 'Dataset spec', DatasetSpecError)
    return descriptor_from_spec(spec, path)


def descriptor_from_spec(spec: Any, path: str) -> datasets.DatasetDescriptor:
    """Checks a parsed spec (from file `path`) and builds the descriptor."""
    check = _Checker(path)
    check.that(isinstance(spec, dict), '', 'must be a JSON object')
    name = check.string(spec, 'name')
    classes = check.required(spec, 'classes')
    check.that(isinstance(classes, list) and classes, 'classes',
               'must be a non-empty list')
    ignore_label = check.integer(spec, 'ignore_label', DEFAULT_IGNORE_LABEL,
                                 minimum=0)
    divisor = spec.get('panoptic_label_divisor')
    if divisor is not None:
        divisor = check.integer(spec, 'panoptic_label_divisor', minimum=2)
    names, eval_ids, things, colors = [], [], [], []
    for index, entry in enumerate(classes):
        key = f'classes[{index}]'
        check.that(isinstance(entry, dict), key, 'must be a JSON object')
        names.append(check.string(entry, 'name', key))
        eval_ids.append(check.integer(entry, 'eval_id', index, key=key))
        if entry.get('thing', False) is True:
            things.append(index)
        else:
            check.that(entry.get('thing', False) is False, f'{key}.thing',
                       'must be true or false')
        colors.append(_color(check, entry, key, index))
    _check_unique(check, names, 'name')
    _check_unique(check, eval_ids, 'eval_id')
    if ignore_label in things:
        check.fail('ignore_label', f'{ignore_label} is a thing class')
    if things and divisor is None:
        check.fail(f'classes[{things[0]}].thing',
                   f'{names[things[0]]!r} is a thing class, but the dataset '
                   'has no instances (panoptic_label_divisor is missing)')
    splits = _splits(check, spec, path, divisor)
    if divisor is not None:
        largest = max(len(classes) - 1, ignore_label) * divisor + divisor - 1
        check.that(largest <= _MAX_PANOPTIC, 'panoptic_label_divisor',
                   f'{divisor} makes panoptic labels overflow int32')
    return datasets.DatasetDescriptor(
        name=name,
        splits_to_sizes={split: size for split, (_, size) in splits.items()},
        num_classes=len(classes),
        ignore_label=ignore_label,
        panoptic_label_divisor=divisor if divisor is not None else 1,
        class_has_instances_list=tuple(things),
        colormap=datasets.SPEC_COLORMAP,
        class_names=tuple(names),
        eval_ids=tuple(eval_ids),
        eval_void_id=check.integer(spec, 'eval_void_id', 0),
        class_colors=tuple(colors),
        file_patterns={split: pattern
                       for split, (pattern, _) in splits.items()},
        has_instances=divisor is not None)


def _splits(check, spec, path, divisor) -> dict:
    splits = check.required(spec, 'splits')
    check.that(isinstance(splits, dict), 'splits', 'must be a JSON object')
    folder = os.path.dirname(path)
    result = {}
    for split, entry in splits.items():
        key = f'splits.{split}'
        check.that(isinstance(entry, dict), key, 'must be a JSON object')
        pattern = check.string(entry, 'file_pattern', key)
        size = check.integer(entry, 'num_examples', key=key, minimum=0)
        max_instances = check.integer(entry, 'max_instances', 0, key=key,
                                      minimum=0)
        if max_instances and (divisor is None or max_instances >= divisor):
            check.fail(f'{key}.max_instances',
                       f'{max_instances} instances in one class do not fit '
                       f'panoptic_label_divisor {divisor}')
        result[split] = (os.path.join(folder, pattern), size)
    return result


def _color(check, entry, key, index) -> tuple[int, int, int]:
    color = entry.get('color')
    if color is None:
        # Spread hues deterministically: neighbours get distinct colours.
        return ((index * 97 + 53) % 256, (index * 151 + 101) % 256,
                (index * 211 + 17) % 256)
    check.that(isinstance(color, list) and len(color) == 3 and all(
        isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255
        for c in color), f'{key}.color', 'must be [r, g, b] with 0..255')
    return tuple(color)


def _check_unique(check, values, field):
    seen = {}
    for index, value in enumerate(values):
        if value in seen:
            check.fail(f'classes[{index}].{field}',
                       f'{value!r} repeats classes[{seen[value]}].{field}')
        seen[value] = index


class _Checker:
    """Raises DatasetSpecError naming the file and the key path."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, key: str, problem: str):
        where = f'{self.path}: {key}' if key else self.path
        raise DatasetSpecError(f'{where}: {problem}.')

    def that(self, condition: bool, key: str, problem: str):
        if not condition:
            self.fail(key, problem)

    def required(self, mapping: Mapping, name: str, key: str = ''):
        full = f'{key}.{name}' if key else name
        if name not in mapping:
            self.fail(full, 'missing')
        return mapping[name]

    def string(self, mapping: Mapping, name: str, key: str = '') -> str:
        value = self.required(mapping, name, key)
        self.that(isinstance(value, str) and value != '',
                  f'{key}.{name}' if key else name,
                  'must be a non-empty string')
        return value

    def integer(self, mapping: Mapping, name: str, default=None, key='',
                minimum=None) -> int:
        full = f'{key}.{name}' if key else name
        value = mapping.get(name, default)
        if value is None:
            self.fail(full, 'missing')
        self.that(isinstance(value, int) and not isinstance(value, bool),
                  full, f'must be an integer, got {value!r}')
        if minimum is not None:
            self.that(value >= minimum, full, f'must be >= {minimum}, got '
                      f'{value}')
        return value


def write_spec(path: str, spec: dict) -> None:
    """Writes `spec` (checked first: a bad spec is never written) to
    `path`, whole or not at all."""
    descriptor_from_spec(spec, os.path.abspath(path))

    def write(temporary):
        with open(temporary, 'w', encoding='utf-8') as f:
            json.dump(spec, f, indent=2)
            f.write('\n')

    files.write_atomically(path, write)


def with_split(spec: dict, split: str, file_pattern: str,
               num_examples: int, max_instances: int = 0) -> dict:
    """A copy of `spec` with `split`'s entry set (added or replaced)."""
    entry = {'file_pattern': file_pattern, 'num_examples': num_examples}
    if max_instances:
        entry['max_instances'] = max_instances
    return {**spec, 'splits': {**spec.get('splits', {}), split: entry}}
