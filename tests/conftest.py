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
