"""The `--config_override` language: `dotted.field.path=value` edits of a
loaded config.

`apply_overrides` is what `config.load_config(path, overrides)` applies
after parsing, so a published DeepLab2 config runs without editing it; the
syntax is documented on `apply_overrides` (and in the README). Each error
names the override, the field path and what was expected.
"""

import re
from typing import Any, Iterable

from google.protobuf import message as message_lib
from google.protobuf import text_format

from deeplab2 import config_schema as schema
from deeplab2.config_schema import ConfigError

FieldDescriptor = schema.FieldDescriptor

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
    elif schema.is_repeated(field) and index is None:
        elements = [_parse_scalar(item, field, where)
                    for item in _split_list(value, field)]
        parent.ClearField(field.name)
        getattr(parent, field.name).extend(elements)
    elif schema.is_repeated(field):
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
                f'{name!r}. {schema.suggest(name, message.DESCRIPTOR)}')
        if index is not None and not schema.is_repeated(field):
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
            raise ConfigError(
                f'{name!r} in {path!r} is {schema.type_name(field)}, not a '
                'message: it must be the last segment')
        if schema.is_repeated(field):
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
                if index is not None or not schema.is_repeated(field) else
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
    elif schema.is_repeated(field):
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
    expected = f'expected {schema.type_name(field)} for {where}, got {text!r}'
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
