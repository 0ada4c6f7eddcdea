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


def test_readme_main_job_runs(tmp_path):
    """Runs the part of the first command after installation, in this
    interpreter (the one the install produced), on a tiny budget: the same
    command with overrides for steps and crop, into a temporary model_dir
    and demo cache."""
    import json
    import os
    setup = _readme_commands()[0]
    main_job = shlex.split(setup.split('&&')[-1])
    assert main_job[0].endswith('python'), main_job
    assert main_job[1:3] == ['-m', 'deeplab2.trainer.train']
    arguments = [a if not a.startswith('--model_dir=')
                 else f'--model_dir={tmp_path / "model"}'
                 for a in main_job[3:]]
    budget = ['trainer_options.solver_options.training_number_of_steps=2',
              'trainer_options.steps_per_loop=1',
              'trainer_options.save_checkpoints_steps=2',
              'evaluator_options.eval_interval=2',
              'evaluator_options.eval_steps=2',
              'train_dataset_options.crop_size=129,257',
              'train_dataset_options.batch_size=2']
    result = subprocess.run(
        [sys.executable, '-m', 'deeplab2.trainer.train', *arguments,
         *[f'--config_override={o}' for o in budget]],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, 'DEEPLAB2_CACHE': str(tmp_path / 'cache')})
    assert result.returncode == 0, result.stderr[-3000:]
    evaluations = (tmp_path / 'model' / 'eval_results.json').read_text()
    last = json.loads(evaluations.splitlines()[-1])
    assert last['step'] == 2 and 0.0 <= last['pq'] <= 1.0
