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
"""

import argparse
import difflib
import pathlib
import re
import sys
from typing import Any, Iterable, Sequence

from google.protobuf import descriptor as descriptor_lib
from google.protobuf import message as message_lib
from google.protobuf import text_format

from deeplab2 import config_values

try:
    from deeplab2 import config_pb2
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        'deeplab2.config_pb2 is missing: it is generated from protos/ when '
        'the package is installed. Run `pip install -e .` in the repository '
        'root.') from error

ExperimentOptions = config_pb2.ExperimentOptions
FieldDescriptor = descriptor_lib.FieldDescriptor

PLACEHOLDER_PATTERN = re.compile(r'\$\{[A-Za-z_][A-Za-z0-9_]*\}')

# Meta architectures this package builds. The schema holds the others so
# their configs parse; building one of them raises NotSupportedError.
SUPPORTED_META_ARCHITECTURES = ('panoptic_deeplab', 'deeplab_v3',
                                'deeplab_v3_plus')


class ConfigError(ValueError):
    """A config file, override or field value is invalid."""


class UnresolvedPlaceholderError(ConfigError):
    """A field still holds a `${...}` placeholder when its value is needed."""


class NotSupportedError(ConfigError):
    """The config asks for something the schema has but we do not build."""


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
        (`check_values`).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'Config file not found: {path}')
    config = parse_config_text(_read_text(path), source=str(path))
    apply_overrides(config, overrides)
    check_values(config, source=str(path))
    return config


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
        descriptor = config_pb2.DESCRIPTOR.pool.FindMessageTypeByName(
            unknown['message'])
        text = (f'unknown field {unknown["field"]!r} in '
                f'{descriptor.name}. '
                f'{_suggest(unknown["field"], descriptor)}')
    return f'{location}: {text}'


def _suggest(name: str, descriptor: descriptor_lib.Descriptor) -> str:
    valid = sorted(descriptor.fields_by_name)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if close:
        return f'Did you mean {close[0]!r}?'
    return f'Valid fields: {", ".join(valid)}.'


# ----------------------------------------------------------------------------
# Overrides.

_PATH_SEGMENT = re.compile(r'^(?P<name>\w+)(?:\[(?P<index>\d+)\])?$')


def apply_overrides(config: message_lib.Message,
                    overrides: Iterable[str]) -> None:
    """Applies `path=value` overrides to `config` in place, in order.

    A path is a dot-separated list of field names; an element of a repeated
    field is addressed as `name[i]` (`i` may equal the length, to append).
    Values:
      - scalars are written plainly: `...base_learning_rate=0.001`,
        `...use_sync_batchnorm=false`, `...file_pattern=/data/train*`
        (quotes around a string are optional); an empty string value clears
        the field.
      - repeated scalars take `[a, b, ...]`, or for numbers and bools also
        `a,b`; a bare string is a one-element list; `[]` clears.
      - messages take textproto: `model_options.backbone={name: "resnet50"
        output_stride: 16}`, and repeated messages `[{...}, {...}]`; the
        field is replaced, not merged.

    Raises:
      ConfigError: naming the override, the field path and what was expected.
    """
    for override in overrides:
        path, sep, value = override.partition('=')
        path = path.strip()
        if not sep or not path:
            raise ConfigError(
                f'Bad override {override!r}: expected dotted.field.path=value')
        try:
            _apply_one(config, path, value.strip())
        except ConfigError as error:
            raise ConfigError(f'Bad override {override!r}: {error}') from None


def _apply_one(config: message_lib.Message, path: str, value: str) -> None:
    parent, field, index = _walk_to_parent(config, path)
    where = f'{parent.DESCRIPTOR.name}.{field.name}'
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        _set_message_field(parent, field, index, value, where)
    elif _is_repeated(field) and index is None:
        elements = [_parse_scalar(item, field, where)
                    for item in _split_list(value, field)]
        parent.ClearField(field.name)
        getattr(parent, field.name).extend(elements)
    elif _is_repeated(field):
        element = _parse_scalar(value, field, where)
        container = getattr(parent, field.name)
        if index == len(container):
            container.append(element)
        else:
            container[index] = element
    elif value == '' and field.type == FieldDescriptor.TYPE_STRING:
        parent.ClearField(field.name)
    else:
        setattr(parent, field.name, _parse_scalar(value, field, where))


def _walk_to_parent(config, path):
    """Returns (message holding the last field, its descriptor, index)."""
    message = config
    segments = path.split('.')
    for depth, segment in enumerate(segments):
        match = _PATH_SEGMENT.match(segment)
        if not match:
            raise ConfigError(f'{segment!r} in {path!r} is not a field name '
                              'or name[index]')
        name = match['name']
        index = None if match['index'] is None else int(match['index'])
        field = message.DESCRIPTOR.fields_by_name.get(name)
        walked = '.'.join(segments[:depth]) or message.DESCRIPTOR.name
        if field is None:
            raise ConfigError(
                f'{walked} ({message.DESCRIPTOR.name}) has no field '
                f'{name!r}. {_suggest(name, message.DESCRIPTOR)}')
        if index is not None and not _is_repeated(field):
            raise ConfigError(f'{name!r} in {path!r} is not repeated; '
                              'remove the [index]')
        if index is not None and index > len(getattr(message, name)):
            raise ConfigError(
                f'index {index} of {name!r} in {path!r} is out of range: it '
                f'has {len(getattr(message, name))} elements (use the length '
                'to append)')
        if depth == len(segments) - 1:
            return message, field, index
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            raise ConfigError(f'{name!r} in {path!r} is {_type_name(field)}'
                              ', not a message: it must be the last segment')
        if _is_repeated(field):
            if index is None:
                raise ConfigError(f'{name!r} in {path!r} is a repeated '
                                  f'message: address one element as '
                                  f'{name}[i]')
            container = getattr(message, name)
            message = (container.add() if index == len(container)
                       else container[index])
        else:
            message = getattr(message, name)
    raise AssertionError('unreachable')


def _set_message_field(parent, field, index, value, where):
    """Replaces a message field (or one element) with textproto `value`."""
    expected = (f'a textproto message {{...}} for {where}'
                if index is not None or not _is_repeated(field) else
                f'a list of textproto messages [{{...}}, ...] for {where}')
    scratch = type(parent)()
    try:
        text_format.Parse(f'{field.name}: {value}', scratch)
    except text_format.ParseError as error:
        raise ConfigError(f'expected {expected}: {error}') from None
    parsed = getattr(scratch, field.name)
    if index is not None:
        if len(parsed) != 1:
            raise ConfigError(f'expected {expected}, got {len(parsed)}')
        container = getattr(parent, field.name)
        if index == len(container):
            container.add()
        container[index].CopyFrom(parsed[0])
    elif _is_repeated(field):
        parent.ClearField(field.name)
        getattr(parent, field.name).extend(parsed)
    else:
        getattr(parent, field.name).CopyFrom(parsed)


def _split_list(value: str, field) -> list[str]:
    if value.startswith('[') and value.endswith(']'):
        inner = value[1:-1].strip()
        return _split_respecting_quotes(inner) if inner else []
    if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return [value]
    return [item.strip() for item in value.split(',')]


def _split_respecting_quotes(text: str) -> list[str]:
    items = re.findall(r'\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[^,]*?)\s*(?:,|$)',
                       text)
    # findall yields a trailing empty match at the end of the string.
    return items[:-1] if items and items[-1] == '' else items


_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-2**31, 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-2**63, 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}


def _parse_scalar(text: str, field, where: str) -> Any:
    """Converts override text to the Python value of `field`'s type."""
    cpp_type = field.cpp_type
    expected = f'expected {_type_name(field)} for {where}, got {text!r}'
    if cpp_type == FieldDescriptor.CPPTYPE_STRING:
        text = _unquote(text)
        return text.encode() if field.type == FieldDescriptor.TYPE_BYTES \
            else text
    if cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        lowered = text.lower()
        if lowered in ('true', '1'):
            return True
        if lowered in ('false', '0'):
            return False
        raise ConfigError(expected + ' (use true or false)')
    if cpp_type in (FieldDescriptor.CPPTYPE_FLOAT,
                    FieldDescriptor.CPPTYPE_DOUBLE):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(expected) from None
    if cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        enum_value = (field.enum_type.values_by_name.get(text) or
                      (field.enum_type.values_by_number.get(int(text))
                       if re.fullmatch(r'-?\d+', text) else None))
        if enum_value is None:
            names = ', '.join(field.enum_type.values_by_name)
            raise ConfigError(f'{expected} (one of {names})')
        return enum_value.number
    low, high = _INT_RANGES[cpp_type]
    try:
        number = int(text)
    except ValueError:
        raise ConfigError(expected) from None
    if not low <= number <= high:
        raise ConfigError(f'{expected}: out of range [{low}, {high}]')
    return number


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in '"\'':
        return text[1:-1]
    return text


def _is_repeated(field) -> bool:
    # `is_repeated` is the newer spelling; `label` is deprecated there.
    if hasattr(field, 'is_repeated'):
        return field.is_repeated
    return field.label == FieldDescriptor.LABEL_REPEATED


_TYPE_NAMES = {
    FieldDescriptor.TYPE_DOUBLE: 'double', FieldDescriptor.TYPE_FLOAT: 'float',
    FieldDescriptor.TYPE_INT32: 'int32', FieldDescriptor.TYPE_INT64: 'int64',
    FieldDescriptor.TYPE_UINT32: 'uint32', FieldDescriptor.TYPE_UINT64: 'uint64',
    FieldDescriptor.TYPE_BOOL: 'bool', FieldDescriptor.TYPE_STRING: 'string',
    FieldDescriptor.TYPE_BYTES: 'bytes', FieldDescriptor.TYPE_ENUM: 'enum',
    FieldDescriptor.TYPE_MESSAGE: 'message',
}


def _type_name(field) -> str:
    """'a float', 'an int32', 'a list of int32', ... for error messages."""
    name = _TYPE_NAMES.get(field.type, f'type {field.type}')
    if _is_repeated(field):
        return f'a list of {name}'
    return f'{"an" if name[0] in "aeiou" else "a"} {name}'


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
        values = value if _is_repeated(field) else [value]
        for i, item in enumerate(values):
            item_path = f'{path}[{i}]' if _is_repeated(field) else path
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
                              f' {_suggest(name, value.DESCRIPTOR)}')
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


# ----------------------------------------------------------------------------
# Command line: check a config and print it with overrides applied.


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m deeplab2.config',
        description='Parse a DeepLab2 textproto config, apply overrides and '
        'print the result; placeholders left to set are listed.')
    parser.add_argument('--config_file', required=True)
    parser.add_argument('--config_override', action='append', default=[],
                        metavar='PATH=VALUE',
                        help='dotted.field.path=value; may repeat')
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config_file, args.config_override)
    except (ConfigError, FileNotFoundError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    text = text_format.MessageToString(config)
    print(text, end='' if text.endswith('\n') else '\n')
    placeholders = find_placeholders(config)
    for path, value in placeholders:
        print(f'note: {path} is still {value!r}; set it with '
              f'--config_override before using it.', file=sys.stderr)
    print(f'{args.config_file}: OK ({len(placeholders)} placeholders left)',
          file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
