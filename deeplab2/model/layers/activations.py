"""Activation functions by name, with DeepLab2's exact formulas."""

from typing import Callable

import tensorflow as tf


def hard_sigmoid(x):
    # DeepLab2 multiplies by the rounded constant 0.16667, not 1/6; parity
    # with its checkpoints depends on it.
    return tf.nn.relu6(x + 3.0) * 0.16667


def hard_swish(x):
    return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


def identity(x):
    return x


_ACTIVATIONS: dict[str, Callable] = {
    'relu': tf.nn.relu,
    'relu6': tf.nn.relu6,
    'swish': tf.nn.silu,
    'silu': tf.nn.silu,
    'hard_swish': hard_swish,
    'hard_sigmoid': hard_sigmoid,
    'sigmoid': tf.math.sigmoid,
    'gelu': lambda x: tf.nn.gelu(x, approximate=False),
    'approximated_gelu': lambda x: tf.nn.gelu(x, approximate=True),
    'identity': identity,
    'none': identity,
    'linear': identity,
}


def get_activation(name: str | None) -> Callable:
    """The activation called `name` (None means identity).

    Raises:
      ValueError: naming the unknown activation and listing the known ones.
    """
    if name is None:
        return identity
    try:
        return _ACTIVATIONS[name.lower()]
    except KeyError:
        raise ValueError(f'Unknown activation {name!r}; known: '
                         f'{", ".join(sorted(_ACTIVATIONS))}.') from None


def is_identity(name: str | None) -> bool:
    return name is None or name.lower() in ('none', 'linear', 'identity')
