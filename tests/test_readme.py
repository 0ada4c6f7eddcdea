"""The README's two commands stay true."""

import pathlib
import re
import shlex
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (REPO_ROOT / 'README.md').read_text()
    assert text.startswith('# '), 'README opens with its title'
    return [block.strip() for block in re.findall(
        r'^```bash\n(.*?)^```', text, re.MULTILINE | re.DOTALL)]


def test_readme_opens_with_setup_and_test_commands():
    setup, test = _readme_commands()[:2]
    assert '\n' not in setup and '\n' not in test
    assert 'pip install -e ".[dev]"' in setup
    assert re.search(r'python -m pytest$', test)


def test_readme_main_job_runs():
    """Runs the part of the first command after installation, in this
    interpreter (the one the install produced)."""
    setup = _readme_commands()[0]
    main_job = shlex.split(setup.split('&&')[-1])
    assert main_job[0].endswith('python'), main_job
    result = subprocess.run([sys.executable, *main_job[1:]], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'OK (0 placeholders left)' in result.stderr
