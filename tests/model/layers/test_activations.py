"""Activations by name, against their formulas."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers import activations

X = np.linspace(-5, 5, 41).astype(np.float32)


@pytest.mark.parametrize('name,formula', [
    ('relu', lambda x: np.maximum(x, 0)),
    ('relu6', lambda x: np.clip(x, 0, 6)),
    # DeepLab2's rounded 1/6.
    ('hard_sigmoid', lambda x: np.clip(x + 3, 0, 6) * 0.16667),
    ('hard_swish', lambda x: x * np.clip(x + 3, 0, 6) / 6),
    ('swish', lambda x: x / (1 + np.exp(-x))),
    ('sigmoid', lambda x: 1 / (1 + np.exp(-x))),
    ('none', lambda x: x),
    ('linear', lambda x: x),
])
def test_activation_formulas(name, formula):
    got = activations.get_activation(name)(tf.constant(X)).numpy()
    np.testing.assert_allclose(got, formula(X), rtol=1e-5, atol=1e-6)


def test_none_is_identity_and_unknown_is_named():
    assert activations.get_activation(None)(3.0) == 3.0
    assert activations.is_identity('linear') and not activations.is_identity(
        'relu')
    with pytest.raises(ValueError, match="Unknown activation 'mish'"):
        activations.get_activation('mish')
