"""The experiment schema (`ExperimentOptions`) and the words errors use for
its fields.

Loading (`config`) and the override language (`config_overrides`) both
raise `ConfigError`s that name a field, its type, or the closest valid name;
this module is what they share, so neither has to import the other.
"""

import difflib

from google.protobuf import descriptor as descriptor_lib

try:
    from deeplab2 import config_pb2
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        'deeplab2.config_pb2 is missing: it is generated from protos/ when '
        'the package is installed. Run `pip install -e .` in the repository '
        'root.') from error

ExperimentOptions = config_pb2.ExperimentOptions
FieldDescriptor = descriptor_lib.FieldDescriptor


class ConfigError(ValueError):
    """A config file, override or field value is invalid."""


class UnresolvedPlaceholderError(ConfigError):
    """A field still holds a `${...}` placeholder when its value is needed."""


class NotSupportedError(ConfigError):
    """The config asks for something the schema has but we do not build."""


def message_type(full_name: str) -> descriptor_lib.Descriptor:
    """The descriptor of a message of the schema, by its full proto name."""
    return config_pb2.DESCRIPTOR.pool.FindMessageTypeByName(full_name)


def suggest(name: str, descriptor: descriptor_lib.Descriptor) -> str:
    """'Did you mean ...?' for a misspelt field, else the valid names."""
    valid = sorted(descriptor.fields_by_name)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if close:
        return f'Did you mean {close[0]!r}?'
    return f'Valid fields: {", ".join(valid)}.'


def is_repeated(field: FieldDescriptor) -> bool:
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


def type_name(field: FieldDescriptor) -> str:
    """'a float', 'an int32', 'a list of int32', ... for error messages."""
    name = _TYPE_NAMES.get(field.type, f'type {field.type}')
    if is_repeated(field):
        return f'a list of {name}'
    return f'{"an" if name[0] in "aeiou" else "a"} {name}'
