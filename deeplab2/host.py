"""The machine this runs on: the CPU model and which bfloat16 instructions
it has (`avx512_bf16`, `amx_bf16`). Benchmarks write it beside their
figures, so that figures from different hosts are never compared blindly;
--precision=bfloat16 warns when the flags are missing. Read from Linux's
/proc/cpuinfo; elsewhere the model comes from `platform` and the flags are
unknown (None)."""

import os
import platform

# The CPU flags that make bfloat16 matmuls and convolutions fast.
BF16_FLAGS = ('avx512_bf16', 'amx_bf16')


def _cpuinfo_fields(text: str) -> dict:
    """The first processor's 'name: value' lines of /proc/cpuinfo."""
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the end of the first processor's block
        name, _, value = line.partition(':')
        fields[name.strip()] = value.strip()
    return fields


def describe(cpuinfo_path: str = '/proc/cpuinfo') -> dict:
    """{'cpu_model', 'cpu_flags_bf16' (those of BF16_FLAGS present, or None
    when unknown), 'cpu_count'}."""
    try:
        with open(cpuinfo_path) as f:
            fields = _cpuinfo_fields(f.read())
    except OSError:
        fields = {}
    flags = fields.get('flags')
    return {
        'cpu_model': (fields.get('model name') or platform.processor()
                      or 'unknown'),
        'cpu_flags_bf16': (None if flags is None else
                           [flag for flag in BF16_FLAGS
                            if flag in flags.split()]),
        'cpu_count': os.cpu_count(),
    }
