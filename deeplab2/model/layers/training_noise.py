"""Random numbers for training-time noise (ASPP dropout, drop path).

They come from TensorFlow's global `tf.random.Generator`, whose state is a
variable: the trainer seeds it and saves it in its checkpoints, so a run
resumed after an interruption draws exactly the masks the uninterrupted run
would have drawn. (Stateful ops such as tf.random.uniform restart their
sequence in every new process.) The generator lives outside the model's
variables, so DeepLab2's checkpoint layout is unchanged.
"""

import tensorflow as tf


def uniform(shape, dtype=tf.float32):
    """U[0, 1) samples of `shape` from the global generator."""
    return tf.random.get_global_generator().uniform(shape, dtype=dtype)


def dropout(inputs, rate: float):
    """Inverted dropout: zeroes each element with probability `rate` and
    scales the rest by 1 / (1 - rate), as tf.nn.dropout does."""
    keep = uniform(tf.shape(inputs), inputs.dtype) >= rate
    return tf.where(keep, inputs / (1.0 - rate), tf.zeros_like(inputs))


def create_generator(seed: int | None) -> tf.random.Generator:
    """A generator from `seed` (or from OS entropy), made the global one.

    Call it inside the strategy's scope: replicas then draw different
    streams from one checkpointable state.
    """
    generator = (tf.random.Generator.from_seed(seed) if seed is not None
                 else tf.random.Generator.from_non_deterministic_state())
    tf.random.set_global_generator(generator)
    return generator
