"""The dict keys docs/architecture.md promises are the values in
deeplab2.common."""

import pathlib
import re

from deeplab2 import common


def _values():
    return {value for name, value in vars(common).items()
            if name.isupper() and isinstance(value, str)}


_ARCHITECTURE = pathlib.Path(__file__).parents[1] / 'docs' / 'architecture.md'


def test_documented_keys_are_defined():
    design = _ARCHITECTURE.read_text()
    section = design.split('**Tensor dict keys**', 1)[1].split('\n- ', 1)[0]
    promised = set(re.findall(r'`(\w+)`', section)) - {'common'}
    assert len(promised) >= 15
    assert promised <= _values(), promised - _values()


def test_tfrecord_keys_match_the_design_contract():
    expected = {'image/encoded', 'image/filename', 'image/format',
                'image/height', 'image/width', 'image/channels',
                'image/segmentation/class/encoded',
                'image/segmentation/class/format'}
    keys = {value for name, value in vars(common).items()
            if name.startswith('KEY_')}
    assert keys == expected


def test_values_are_unique():
    names = [name for name in vars(common) if name.isupper()]
    values = [getattr(common, name) for name in names]
    assert len(set(values)) == len(values)
