"""deeplab2.host: the CPU model and bfloat16 flags from a cpuinfo file."""

from deeplab2 import host

# Two processors of a Sapphire Rapids-like host, trimmed.
_CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse avx512f avx512_bf16 amx_tile amx_bf16

processor\t: 1
model name\t: Another CPU
flags\t\t: fpu
"""


def test_reads_the_first_processor(tmp_path):
    path = tmp_path / 'cpuinfo'
    path.write_text(_CPUINFO)
    described = host.describe(str(path))
    assert described['cpu_model'] == 'Intel(R) Xeon(R) Processor'
    assert described['cpu_flags_bf16'] == ['avx512_bf16', 'amx_bf16']
    assert described['cpu_count'] >= 1


def test_flags_absent_or_unknown(tmp_path):
    path = tmp_path / 'cpuinfo'
    path.write_text('model name\t: AMD EPYC\nflags\t\t: fpu avx2\n')
    assert host.describe(str(path))['cpu_flags_bf16'] == []
    missing = host.describe(str(tmp_path / 'none'))
    assert missing['cpu_flags_bf16'] is None
    assert missing['cpu_model']
