"""Shared test helpers: where the repository and the reference fixtures are.

The fixtures written by the original DeepLab2 live outside the repository at
`<repo>/../shared/fixtures`. Tests that need them take the `fixtures_dir`
fixture, which skips (with the reason) when the folder is absent, as in a
user's clone; `.ci/run` checks that it is present, so CI never skips them.
"""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES_DIR = REPO_ROOT.parent / 'shared' / 'fixtures'


@pytest.fixture(scope='session')
def fixtures_dir() -> pathlib.Path:
    if not FIXTURES_DIR.is_dir():
        message = f'reference fixtures not found at {FIXTURES_DIR}'
        if os.environ.get('DEEPLAB2_REQUIRE_FIXTURES'):
            pytest.fail(message)  # CI: a skip would hide missing parity
        pytest.skip(message)
    return FIXTURES_DIR


@pytest.fixture
def repo_root() -> pathlib.Path:
    return REPO_ROOT


def _op_types(graph) -> set:
    ops = {op.type for op in graph.get_operations()}
    for function in graph._functions.values():
        ops |= {node.op for node in function.definition.node_def}
    return ops


@pytest.fixture
def traced_op_types():
    """fn(graph) -> the op types of a traced tf.function's graph, those of
    the functions it holds (custom gradients, loops) included."""
    return _op_types
