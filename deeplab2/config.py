"""Experiment configs: DeepLab2 textprotos -> `ExperimentOptions`.

`load_config(path, overrides)` parses a textproto written for DeepLab2 (or
ours; the schema is the same) and applies `dotted.path=value` overrides, so a
published config runs without editing it. Errors name the file, line and
column, or the field path, and suggest the closest valid field name.

DeepLab2's published configs leave `${TRAIN_SET}`-style placeholders in
paths. They parse; code that reads such a field calls `resolved_field` (or
`require_resolved`), which raises an error naming the field and the override
that sets it.

A file that is empty, binary or not UTF-8 is an error naming it, and so are
numeric values that can never work (`batch_size: 0`, a negative learning
rate, ...; see `config_values`), checked after the overrides are applied.

A dataset field (`train_dataset_options.dataset`,
`eval_dataset_options.dataset`) names a built-in dataset or a dataset spec
file (a path ending in `.json`, see `data/dataset_spec.py`). Loading makes a
spec path absolute, so later stages never depend on the current directory:
a relative path written in the file is relative to the config file's folder
(the config and its dataset travel together); one given by
`--config_override` is relative to the current directory, as every other
path on a command line is. A spec file that does not exist is an error
naming the field and the path.

This module is the public face of configs: the override language lives in
`config_overrides`, the schema and its error types in `config_schema`, and
`python -m deeplab2.config` in `config_cli`; their public names are
importable from here.
"""

import os
import pathlib
import re
import sys
from typing import Any, Iterable, Sequence

from google.protobuf import message as message_lib
from google.protobuf import text_format

from deeplab2 import config_schema as schema
from deeplab2 import config_values
from deeplab2.config_overrides import apply_overrides
from deeplab2.config_schema import ConfigError
from deeplab2.config_schema import ExperimentOptions
from deeplab2.config_schema import FieldDescriptor
from deeplab2.config_schema import NotSupportedError
from deeplab2.config_schema import UnresolvedPlaceholderError

__all__ = [
    'ConfigError', 'ExperimentOptions', 'FieldDescriptor',
    'DATASET_FIELDS', 'NotSupportedError', 'PLACEHOLDER_PATTERN',
    'SUPPORTED_META_ARCHITECTURES', 'UnresolvedPlaceholderError',
    'apply_overrides', 'check_values', 'find_placeholders', 'is_spec_path',
    'load_config',
    'main', 'meta_architecture', 'parse_config_text', 'require_resolved',
    'resolved_field',
]

PLACEHOLDER_PATTERN = re.compile(r'\$\{[A-Za-z_][A-Za-z0-9_]*\}')

# Meta architectures this package builds. The schema holds the others so
# their configs parse; building one of them raises NotSupportedError.
SUPPORTED_META_ARCHITECTURES = ('panoptic_deeplab', 'deeplab_v3',
                                'deeplab_v3_plus')


def load_config(path: str | pathlib.Path,
                overrides: Iterable[str] = ()) -> ExperimentOptions:
    """Reads an ExperimentOptions textproto and applies `overrides`.

    Args:
      path: the textproto file.
      overrides: `dotted.field.path=value` strings, applied in order (see
        `apply_overrides`).

    Raises:
      FileNotFoundError: `path` does not exist.
      ConfigError: a file that is binary, not UTF-8 or sets no field; a
        parse error (with file:line:column), an unknown field (with the
        closest valid name), a bad override, or values that cannot work
        (`check_values`), or a dataset spec path that names no file.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'Config file not found: {path}')
    config = parse_config_text(_read_text(path), source=str(path))
    # Before the overrides: only the file's own values are relative to its
    # folder; what is still relative afterwards came from the command line.
    _absolute_spec_paths(config, path.absolute().parent)
    apply_overrides(config, overrides)
    _absolute_spec_paths(config, pathlib.Path.cwd())
    _check_spec_paths_exist(config, source=str(path))
    check_values(config, source=str(path))
    return config


# The fields that name a dataset: a built-in name or a spec file's path.
DATASET_FIELDS = ('train_dataset_options', 'eval_dataset_options')


def is_spec_path(dataset: str) -> bool:
    """Whether a `DatasetOptions.dataset` value is a dataset spec path
    rather than a built-in dataset's name (the one rule: config loading,
    `data.datasets.get_dataset_descriptor` and the input pipeline use it)."""
    return dataset.endswith('.json')


def _absolute_spec_paths(config: ExperimentOptions,
                         folder: pathlib.Path) -> None:
    """Makes each relative spec path in the dataset fields absolute
    against `folder` (`~` is expanded first); placeholders stay as they
    are, for `resolved_field` to report."""
    for field in DATASET_FIELDS:
        options = getattr(config, field)
        value = options.dataset
        if not is_spec_path(value) or PLACEHOLDER_PATTERN.search(value):
            continue
        options.dataset = os.path.normpath(
            os.path.join(folder, os.path.expanduser(value)))


def _check_spec_paths_exist(config: ExperimentOptions, source: str) -> None:
    for field in DATASET_FIELDS:
        value = getattr(config, field).dataset
        if (is_spec_path(value) and not PLACEHOLDER_PATTERN.search(value)
                and not os.path.isfile(value)):
            raise ConfigError(
                f'{source}: {field}.dataset names the dataset spec {value}, '
                'which does not exist (a relative path in the config file '
                "is relative to the config's folder, one in "
                '--config_override to the current directory).')


def _read_text(path: pathlib.Path) -> str:
    """The file's text; binary or non-UTF-8 content is a ConfigError.

    Text-format protos are UTF-8. A leading byte order mark (some Windows
    editors write one) is dropped rather than read as a stray character.
    """
    data = path.read_bytes()
    if b'\0' in data:
        raise ConfigError(f'{path}: this is a binary file (it holds NUL '
                          'bytes), not a textproto config (or UTF-16 text; '
                          'save it as UTF-8).')
    try:
        return data.decode('utf-8-sig')
    except UnicodeDecodeError as error:
        line = data.count(b'\n', 0, error.start) + 1
        column = error.start - data.rfind(b'\n', 0, error.start)
        raise ConfigError(
            f'{path}:{line}:{column}: not UTF-8 text (byte '
            f'0x{data[error.start]:02x}); a textproto config must be saved '
            'as UTF-8.') from None


def check_values(config: ExperimentOptions, source: str = '<config>') -> None:
    """Raises one ConfigError listing every numeric value of `config` that
    can never work (see `config_values.BOUNDS`), by field path and value.

    `load_config` calls it after the overrides; call it on a config built
    or edited in code. Strings (and so `${...}` placeholders) are not
    checked here.
    """
    problems = config_values.find_impossible_values(config)
    if problems:
        listing = '\n'.join(f'  {problem}' for problem in problems)
        raise ConfigError(f'{source}: values that cannot work:\n{listing}')


def parse_config_text(text: str, source: str = '<string>') -> ExperimentOptions:
    """Parses textproto `text`; `source` names it in error messages."""
    declared = _DECLARED_MESSAGE.search(text)
    if declared and (declared['message'].split('.')[-1] !=
                     ExperimentOptions.DESCRIPTOR.name):
        line = text.count('\n', 0, declared.start()) + 1
        raise ConfigError(
            f'{source}:{line}: this file declares proto-message: '
            f'{declared["message"]}, but an experiment config is an '
            'ExperimentOptions (a fragment cannot be run on its own).')
    config = ExperimentOptions()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ConfigError(_describe_parse_error(error, source)) from None
    if not config.ListFields():
        # Every field has a default, so an empty file would "parse" into an
        # experiment with no model and no data: almost surely a wrong file.
        raise ConfigError(
            f'{source}: the config sets no fields (the text is empty or only '
            'comments); an experiment config needs at least model_options '
            'and the dataset options.')
    return config


# The header DeepLab2's textprotos carry: `# proto-message: ExperimentOptions`.
_DECLARED_MESSAGE = re.compile(r'^#\s*proto-message:\s*(?P<message>[\w.]+)',
                               re.MULTILINE)

_UNKNOWN_FIELD = re.compile(
    r'Message type "(?P<message>[\w.]+)" has no field named "(?P<field>\w+)"')


def _describe_parse_error(error: text_format.ParseError, source: str) -> str:
    """`file:line:column: message`, with a suggestion for unknown fields."""
    line, column = error.GetLine(), error.GetColumn()
    # ParseError's text starts with "line:column : "; we print our own.
    text = re.sub(r'^\d+:\d+ : ', '', str(error))
    location = source if line is None else f'{source}:{line}:{column}'
    unknown = _UNKNOWN_FIELD.search(text)
    if unknown:
        descriptor = schema.message_type(unknown['message'])
        text = (f'unknown field {unknown["field"]!r} in '
                f'{descriptor.name}. '
                f'{schema.suggest(unknown["field"], descriptor)}')
    return f'{location}: {text}'


# ----------------------------------------------------------------------------
# Placeholders and field access.


def find_placeholders(message: message_lib.Message,
                      prefix: str = '') -> list[tuple[str, str]]:
    """Every set string field holding a `${...}` placeholder.

    Returns:
      (dotted field path, value) pairs, e.g.
      `('train_dataset_options.file_pattern[0]', '${TRAIN_SET}')`.
    """
    found = []
    for field, value in message.ListFields():
        path = f'{prefix}{field.name}'
        values = value if schema.is_repeated(field) else [value]
        for i, item in enumerate(values):
            item_path = f'{path}[{i}]' if schema.is_repeated(field) else path
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                found.extend(find_placeholders(item, item_path + '.'))
            elif isinstance(item, str) and PLACEHOLDER_PATTERN.search(item):
                found.append((item_path, item))
    return found


def resolved_field(message: message_lib.Message, path: str,
                   message_path: str = '') -> Any:
    """The value at dotted `path` in `message`, checked for placeholders.

    Args:
      message: a config message (the ExperimentOptions or a part of it).
      path: dotted field path inside `message`, e.g. `file_pattern`.
      message_path: where `message` sits in the ExperimentOptions (e.g.
        `train_dataset_options`), so that errors name the full path.

    Raises:
      UnresolvedPlaceholderError: the value still holds a placeholder; the
        message names the field and the `--config_override` that sets it.
    """
    value = message
    for name in path.split('.'):
        if name not in value.DESCRIPTOR.fields_by_name:
            raise ConfigError(f'{value.DESCRIPTOR.name} has no field {name!r}.'
                              f' {schema.suggest(name, value.DESCRIPTOR)}')
        value = getattr(value, name)
    items = [value] if isinstance(value, (str, message_lib.Message)) else value
    full_path = f'{message_path}.{path}' if message_path else path
    unresolved = []
    for item in items:
        if isinstance(item, message_lib.Message):
            unresolved += [(f'{full_path}.{p}', v)
                           for p, v in find_placeholders(item)]
        elif isinstance(item, str) and PLACEHOLDER_PATTERN.search(item):
            unresolved.append((full_path, item))
    if unresolved:
        raise UnresolvedPlaceholderError(_placeholder_message(unresolved))
    return value


def require_resolved(config: message_lib.Message, *paths: str) -> None:
    """Raises one error listing every path in `paths` left as a placeholder."""
    problems = []
    for path in paths:
        try:
            resolved_field(config, path)
        except UnresolvedPlaceholderError as error:
            problems.append(str(error))
    if problems:
        raise UnresolvedPlaceholderError('\n'.join(problems))


def _placeholder_message(unresolved: Sequence[tuple[str, str]]) -> str:
    lines = []
    for path, value in unresolved:
        settable = re.sub(r'\[\d+\]$', '', path)
        lines.append(
            f'Config field {path} is still the placeholder {value!r}: set it, '
            f'e.g. --config_override={settable}=<value> (or '
            f"load_config(..., overrides=['{settable}=<value>'])).")
    return '\n'.join(lines)


def meta_architecture(model_options: message_lib.Message) -> str:
    """Name of the meta architecture set in `model_options`.

    Raises:
      ConfigError: none is set.
      NotSupportedError: the schema has it but this package does not build it.
    """
    name = model_options.WhichOneof('meta_architecture')
    supported = ', '.join(SUPPORTED_META_ARCHITECTURES)
    if name is None:
        raise ConfigError('model_options sets no meta architecture: add one '
                          f'of {supported}.')
    if name not in SUPPORTED_META_ARCHITECTURES:
        raise NotSupportedError(
            f'model_options.{name} is not supported yet; supported meta '
            f'architectures: {supported}.')
    return name


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m deeplab2.config` (see `config_cli.main`)."""
    # Imported on use: config_cli imports this module.
    from deeplab2 import config_cli
    return config_cli.main(argv)


if __name__ == '__main__':
    sys.exit(main())
