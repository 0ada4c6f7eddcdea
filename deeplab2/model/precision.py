"""The precision a model computes in: float32, or bfloat16 with float32
weights (Keras' 'mixed_bfloat16' policy), for CPUs with bfloat16 units
(`avx512_bf16`, `amx_bf16`) and TPUs.

In bfloat16 the encoder and decoder convolutions compute in bfloat16.
These parts stay float32 (FLOAT32_PARTS): the weights and batch-norm
statistics (Keras normalizes in float32), each head's last 1x1 conv
(`final_conv`, whose outputs are the logits, heatmap and offsets), and
everything after the network: the upsampling to the input size, the
offset scaling, the softmax, and all of post-processing (argmax, the
heatmap threshold and NMS, grouping, merging).
"""

import contextlib

import keras
from absl import logging

from deeplab2 import host

PRECISIONS = ('float32', 'bfloat16')
_POLICIES = {'float32': 'float32', 'bfloat16': 'mixed_bfloat16'}

FLOAT32_PARTS = ('weights', 'batch-norm statistics and normalization',
                 "each head's final_conv",
                 'upsampling, offset scaling and softmax (network_outputs)',
                 'post-processing')


def check(precision: str) -> str:
    """`precision` if it is one of PRECISIONS, else a ValueError naming
    the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f'Unknown precision {precision!r}; choose one of '
                         f'{", ".join(PRECISIONS)}.')
    return precision


def cpu_has_bfloat16(cpuinfo_path: str = '/proc/cpuinfo') -> bool | None:
    """Whether the CPU has bfloat16 instructions (None: unknown)."""
    flags = host.describe(cpuinfo_path)['cpu_flags_bf16']
    return None if flags is None else bool(flags)


def _accelerator_present() -> bool:
    """Whether a GPU or TPU will run the model (then the CPU's flags do
    not matter)."""
    import tensorflow as tf
    return any(tf.config.list_logical_devices(kind)
               for kind in ('GPU', 'TPU'))


@contextlib.contextmanager
def policy(precision: str | None):
    """Layers created inside compute in `precision` (None: leave the global
    Keras policy alone, e.g. the trainer's --mixed_precision). The previous
    global policy comes back on exit."""
    if precision is None:
        yield
        return
    check(precision)
    if (precision == 'bfloat16' and cpu_has_bfloat16() is False
            and not _accelerator_present()):
        logging.warning('bfloat16 requested, but this CPU (%s) has none of '
                        '%s: it will be emulated, likely slower than '
                        'float32.', host.describe()['cpu_model'],
                        ', '.join(host.BF16_FLAGS))
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(_POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def of_model(model: keras.Model) -> str:
    """The precision `model`'s layers compute in: 'bfloat16' when its
    encoder computes in bfloat16 (float32 otherwise; float16 models, from
    the trainer's --mixed_precision=float16, say 'float16')."""
    dtype = model.encoder.compute_dtype
    return {'bfloat16': 'bfloat16', 'float16': 'float16'}.get(dtype,
                                                              'float32')
