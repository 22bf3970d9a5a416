"""tools/dist_*.sh and slurm_*.sh run from a plain shell: no activated venv, no `torchrun` on PATH."""
import os
import shutil
import subprocess
import sys
import textwrap

from extrema.checkpoint import load_file

from conftest import ROOT, TINY_BASE

PLAIN_PATH = '/usr/bin:/bin'  # what a login shell has before any venv is activated


def plain_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'PYTHON', 'PYTHONPATH')}
    return dict(env, PATH=PLAIN_PATH, **extra)


def test_dist_train_runs_two_processes_without_torchrun_on_path(tmp_path, fashion_mnist_folder):
    assert shutil.which('torchrun', path=PLAIN_PATH) is None
    config = tmp_path / 'tiny.py'
    config.write_text(textwrap.dedent(f"""
        _base_ = ['{TINY_BASE}']
        model = dict(arch=dict(embed_dim=32, depth=1, num_heads=2, _delete_=True), img_size=32, patch_size=8,
                     proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32, mask_ratio=0.75, num_masks=4)
        train_dataloader = dict(batch_size=50, num_workers=0, persistent_workers=False,
                                dataset=dict(data_root='{fashion_mnist_folder}'))
        warmup_epochs = 0
        max_epochs = 1
        param_scheduler = []
        train_cfg = dict(max_epochs=1)
        """))
    # the interpreter of the venv the tests run in, named the way an activated venv names it
    env = plain_env(VIRTUAL_ENV=sys.prefix, PORT='29547')
    result = subprocess.run(['bash', os.path.join(ROOT, 'tools/dist_train.sh'), str(config), '2',
                             '--work-dir', str(tmp_path / 'work')],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    checkpoint = load_file(str(tmp_path / 'work/epoch_1.pth'))
    assert len(checkpoint['rng_states']) == 2  # both ranks ran


def fake_checkout(tmp_path, script):
    """A copy of the launcher in a checkout whose .venv is the test interpreter, and an `srun` that
    records its command line instead of scheduling it."""
    (tmp_path / 'repo/tools').mkdir(parents=True)
    for name in (script, 'python_env.sh'):
        shutil.copy(os.path.join(ROOT, 'tools', name), tmp_path / 'repo/tools' / name)
    (tmp_path / 'repo/.venv/bin').mkdir(parents=True)
    python = tmp_path / 'repo/.venv/bin/python'
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # a symlink would lose the venv
    python.chmod(0o755)
    (tmp_path / 'bin').mkdir()
    srun = tmp_path / 'bin/srun'
    srun.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$SRUN_LOG"\n')
    srun.chmod(0o755)
    return tmp_path / 'repo/tools' / script


def test_slurm_train_uses_the_checkouts_venv(tmp_path):
    script = fake_checkout(tmp_path, 'slurm_train.sh')
    log = tmp_path / 'srun.log'
    env = plain_env(SRUN_LOG=str(log), GPUS='16')
    env['PATH'] = f'{tmp_path}/bin:{PLAIN_PATH}'
    result = subprocess.run(['bash', str(script), 'gpu', 'job', 'cfg.py', '--amp'], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    args = log.read_text().split('\n')
    command = args[args.index('--kill-on-bad-exit=1') + 1:]
    assert command[:3] == [str(tmp_path / 'repo/.venv/bin/python'), '-u', 'tools/train.py']
    assert command[3:7] == ['cfg.py', '--launcher', 'slurm', '--amp']
    assert '--ntasks=16' in args


def test_launcher_without_torch_names_the_fix(tmp_path):
    script = fake_checkout(tmp_path, 'dist_test.sh')
    env = plain_env(PYTHON='/bin/false')
    result = subprocess.run(['bash', str(script), 'cfg.py', 'ckpt.pth', '2'], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert 'cannot import torch' in result.stderr and 'tools/setup.sh' in result.stderr
