"""tools/setup.sh on a fresh machine, run in a scratch copy (never on the project's .venv)."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

FASHION_MNIST = '/usr/share/datasets/fashion-mnist'


def scratch_project(tmp_path):
    """tools/setup.sh beside a one-module project that needs only the pinned setuptools."""
    (tmp_path / 'tools').mkdir()
    shutil.copy(os.path.join(ROOT, 'tools/setup.sh'), tmp_path / 'tools/setup.sh')
    pins = open(os.path.join(ROOT, 'requirements.txt')).read().splitlines()
    (tmp_path / 'requirements.txt').write_text(next(p for p in pins if p.startswith('setuptools==')) + '\n')
    (tmp_path / 'pyproject.toml').write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "scratch"\nversion = "0"\n[tool.setuptools]\npy-modules = ["scratch_module"]\n')
    (tmp_path / 'scratch_module.py').write_text('VALUE = 42\n')
    return tmp_path


def fake_command(tmp_path, name, script):
    bin_dir = tmp_path / 'fakebin'
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text('#!/bin/sh\n' + script)
    path.chmod(0o755)
    return str(bin_dir)


def run_setup(project, **env):
    return subprocess.run(['bash', str(project / 'tools/setup.sh')], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **env))


def test_python_older_than_3_11_is_refused(tmp_path):
    project = scratch_project(tmp_path)
    # A python3 that reports 3.10: prints the version, fails the >= 3.11 test.
    fake = fake_command(tmp_path, 'python3', 'case "$*" in *print*) echo 3.10 ;; *) exit 1 ;; esac\n')
    result = run_setup(project, PYTHON=os.path.join(fake, 'python3'))
    assert result.returncode == 1
    assert 'Python 3.10' in result.stderr and 'needs Python 3.11 or newer' in result.stderr
    assert 'PYTHON=python3.11 bash tools/setup.sh' in result.stderr
    assert not (project / '.venv').exists()


def test_without_root_it_says_what_to_run(tmp_path):
    project = scratch_project(tmp_path)
    fake = fake_command(tmp_path, 'id', 'echo 1000\n')
    result = run_setup(project, PATH=f'{fake}:{os.environ["PATH"]}', PYTHON=sys.executable,
                       FASHION_MNIST_DIR=str(tmp_path / 'none'))
    assert result.returncode == 1
    assert 'sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist' in result.stderr
    assert 'FASHION_MNIST_DIR=' in result.stderr  # the way without root
    assert not (project / '.venv').exists()


@pytest.mark.skipif(not os.path.isfile(f'{FASHION_MNIST}/train-images-idx3-ubyte.gz'),
                    reason='needs the dataset-fashion-mnist package')
def test_a_venv_without_pip_is_rebuilt_and_the_project_installed(tmp_path):
    project = scratch_project(tmp_path)
    base_python = os.path.realpath(sys._base_executable)
    subprocess.run([base_python, '-m', 'venv', '--without-pip', str(project / '.venv')], check=True)
    result = run_setup(project, PYTHON=base_python)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Rebuilding .venv' in result.stdout
    imported = subprocess.run([str(project / '.venv/bin/python'), '-c', 'import scratch_module as m; print(m.VALUE)'],
                              cwd=str(tmp_path.parent), capture_output=True, text=True)
    assert imported.stdout.strip() == '42'  # installed: importable from outside the project
