"""Benchmarks of the pieces users care about, reported as JSON by
scripts/benchmark.py: one module per benchmark (`network`, `postprocess`,
`input_pipeline`, `train`, `evaluation`, `serve`), sharing one timer
(`timing`), one memory probe (`memory`) and inputs drawn from the package's
synthetic street scenes (`scenes`).

Every figure is the median of several timed runs after warm-up runs (which
absorb tracing and allocation). Times are in seconds (keys ending `_s`),
memory in bytes (keys ending `_bytes`).
"""
