"""Pretraining through the same Runner path as tools/train.py."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from extrema.checkpoint import load_file, load_pretrained
from extrema.engine.fileio import AtomicLocalBackend
from extrema.engine.hooks import cosine_momentum
from extrema.engine.launch import build_runner, check_inputs, find_resume_checkpoint, setup_config
from extrema.models import TwoViewDataPreprocessor

from conftest import ROOT, TINY_BASE


def write_config(tmp_path, data_root, name='tiny.py', epochs=2, extra=''):
    path = tmp_path / name
    path.write_text(textwrap.dedent(f"""
        _base_ = ['{TINY_BASE}']
        model = dict(arch=dict(embed_dim=64, depth=2, num_heads=2, _delete_=True), img_size=32, patch_size=8,
                     proj_hidden_dim=64, proj_dim=32, pred_hidden_dim=64, mask_ratio=0.75, num_masks=4)
        train_dataloader = dict(batch_size=25, num_workers=0, persistent_workers=False,
                                dataset=dict(data_root='{data_root}'))
        warmup_epochs = 1
        max_epochs = {epochs}
        param_scheduler = [
            dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
            dict(type='CosineAnnealingLR', T_max={epochs} - 1, eta_min=0., by_epoch=True, begin=1, end={epochs},
                 convert_to_iter_based=True),
        ]
        train_cfg = dict(max_epochs={epochs})
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=5))
        """) + textwrap.dedent(extra))
    return str(path)


def run_train(args, env=None, check=True):
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools/train.py'), *args], cwd=ROOT,
                            env=dict(os.environ, **(env or {})), capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(result.stdout[-3000:] + result.stderr[-3000:])
    return result


def test_tiny_pretraining_runs_and_checkpoint_loads(tmp_path, fashion_mnist_folder):
    cfg = setup_config(write_config(tmp_path, fashion_mnist_folder), work_dir=str(tmp_path / 'work'))
    runner = build_runner(cfg)
    runner.train()
    iters = runner.max_iters
    assert iters == 2 * (200 // 25)
    assert runner.message_hub.get_scalar('train/momentum').current() == pytest.approx(
        cosine_momentum(iters - 1, iters, cfg.model.base_momentum))
    model = runner.model
    moved = [not torch.equal(s, t) for s, t in zip(model.student.parameters(), model.teacher.parameters())]
    assert all(moved)  # the teacher trails the student
    checkpoint = load_file(str(tmp_path / 'work/epoch_2.pth'))
    assert checkpoint['meta']['extrema_config']['arch']['embed_dim'] == 64
    assert len(checkpoint['rng_states']) == 1
    groups = checkpoint['optimizer']['param_groups']
    assert [g['weight_decay'] for g in groups] == [0.0, 0.1]
    loaded = load_pretrained(str(tmp_path / 'work/epoch_2.pth'), strict=True)
    for a, b in zip(loaded.teacher.state_dict().values(), model.teacher.state_dict().values()):
        assert torch.equal(a, b)


KILL_HOOK = '''
import os, signal
from mmengine.hooks import Hook
from extrema.registry import HOOKS


@HOOKS.register_module()
class KillAfterEpoch(Hook):
    priority = 'LOWEST'

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def test_kill_and_resume_equals_uninterrupted(tmp_path, fashion_mnist_folder):
    """Exact with the shipped loader settings: 2 persistent workers (each item's crop is
    drawn from a seed of (seed, epoch, index), whatever worker makes it and whenever)."""
    (tmp_path / 'kill_hook.py').write_text(KILL_HOOK)
    plain = write_config(tmp_path, fashion_mnist_folder, 'plain.py', epochs=3)
    killed = write_config(tmp_path, fashion_mnist_folder, 'killed.py', epochs=3, extra="""
        custom_imports = dict(imports=['extrema', 'kill_hook'], allow_failed_imports=False)
        custom_hooks = [dict(type='MomentumUpdateHook'), dict(type='ExtreMACheckpointHook'),
                        dict(type='KillAfterEpoch', epoch=2)]
        """)
    env = dict(PYTHONPATH=str(tmp_path))
    workers = ['--cfg-options', 'train_dataloader.num_workers=2', 'train_dataloader.persistent_workers=True']
    run_train([plain, '--work-dir', str(tmp_path / 'plain'), *workers])
    crashed = run_train([killed, '--work-dir', str(tmp_path / 'resumed'), *workers], env=env, check=False)
    assert crashed.returncode == -signal.SIGKILL
    assert find_resume_checkpoint(str(tmp_path / 'resumed')).endswith('epoch_2.pth')
    resumed_cfg = write_config(tmp_path, fashion_mnist_folder, 'resumed.py', epochs=3)
    log = run_train([resumed_cfg, '--work-dir', str(tmp_path / 'resumed'), '--resume', *workers])
    assert 'resumed epoch: 2' in log.stdout + log.stderr
    expected = load_file(str(tmp_path / 'plain/epoch_3.pth'))
    actual = load_file(str(tmp_path / 'resumed/epoch_3.pth'))
    assert expected['state_dict'].keys() == actual['state_dict'].keys()
    for key, value in expected['state_dict'].items():
        torch.testing.assert_close(actual['state_dict'][key], value, rtol=0, atol=0, msg=key)
    exp_state, act_state = expected['optimizer']['state'], actual['optimizer']['state']
    for index in exp_state:
        torch.testing.assert_close(act_state[index]['exp_avg'], exp_state[index]['exp_avg'], rtol=0, atol=0)


def test_two_process_gloo_pretraining(tmp_path, fashion_mnist_folder):
    """Two ranks, with 10 unreadable files among 210: each rank reads about half of them,
    and both report the count of the whole dataset after the merge of the epoch's end."""
    import shutil
    data = tmp_path / 'data'
    shutil.copytree(os.path.join(fashion_mnist_folder, 'train'), data / 'train')
    for index in range(10):
        (data / 'train' / 'bag' / f'{index:05d}_corrupt.png').write_bytes(b'not a png')
    config = write_config(tmp_path, str(data), 'dist.py', epochs=2)
    work_dir = tmp_path / 'dist'
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29531',
         os.path.join(ROOT, 'tools/train.py'), config, '--launcher', 'pytorch', '--work-dir', str(work_dir),
         '--cfg-options', 'train_dataloader.dataset.max_bad_fraction=0.1'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    checkpoint = load_file(str(work_dir / 'epoch_2.pth'))
    assert len(checkpoint['rng_states']) == 2  # one per rank
    assert checkpoint['meta']['iter'] == 2 * 8 // 2  # 210 images, batch 25: 8 per epoch, half per rank
    assert 'Distributed training: True' in output
    assert '10 of 210 image files of RandomCropImageFolder are unreadable' in output
    rank0_skips = output.count('Skipped unreadable image')  # the console shows rank 0's warnings
    assert 0 < rank0_skips < 10  # rank 0 met only some of them itself


def test_non_finite_loss_stops_the_run(tmp_path, fashion_mnist_folder):
    cfg = setup_config(write_config(tmp_path, fashion_mnist_folder, 'nan.py'), work_dir=str(tmp_path / 'nan'),
                       cfg_options={'model.data_preprocessor.std': (0., 0., 0.)})
    runner = build_runner(cfg)
    with pytest.raises(FloatingPointError, match='last good one'):
        runner.train()
    assert not (tmp_path / 'nan/epoch_1.pth').exists()


def test_missing_data_root_is_a_clear_error(tmp_path):
    cfg = setup_config(write_config(tmp_path, str(tmp_path / 'nowhere'), 'missing.py'),
                       work_dir=str(tmp_path / 'missing'))
    with pytest.raises(FileNotFoundError, match=r'nowhere/train.*train_dataloader.dataset.data_root=DIR'):
        check_inputs(cfg)  # tools/train.py: before the Runner is built
    with pytest.raises(FileNotFoundError, match='prepare_fashion_mnist'):
        build_runner(cfg).train()


def test_bad_mask_config_fails_before_training(tmp_path, fashion_mnist_folder):
    cfg = setup_config(write_config(tmp_path, fashion_mnist_folder, 'badmask.py'), work_dir=str(tmp_path / 'bad'),
                       cfg_options={'model.num_masks': 5})
    with pytest.raises(ValueError, match='disjoint masks'):
        build_runner(cfg)


def test_views_share_the_crop_in_spatial_mode():
    torch.manual_seed(0)
    crops = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    first, second = TwoViewDataPreprocessor(color_mode='spatial')(dict(inputs=crops), True)['inputs']
    assert torch.equal(first, second)
    colored = TwoViewDataPreprocessor(color_mode='color')(dict(inputs=list(crops)), True)['inputs']
    assert not torch.equal(colored[0], colored[1])  # independent colour draws of one crop
    with pytest.raises(ValueError, match='color_mode'):
        TwoViewDataPreprocessor(color_mode='sepia')


def test_atomic_writes_never_leave_partial_files(tmp_path, monkeypatch):
    target = tmp_path / 'epoch_1.pth'
    AtomicLocalBackend().put(b'good', target)

    def fail(*args):
        raise OSError('disk full')
    monkeypatch.setattr(os, 'replace', fail)
    with pytest.raises(OSError):
        AtomicLocalBackend().put(b'partial', target)
    assert target.read_bytes() == b'good'
    assert os.listdir(tmp_path) == ['epoch_1.pth']


def test_resume_finds_newest_checkpoint_without_pointer(tmp_path):
    for name in ('epoch_2.pth', 'epoch_10.pth'):
        torch.save(dict(meta=dict(name=name)), tmp_path / name)
    (tmp_path / 'epoch_3.pth.tmp-99').write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text('')  # truncated pointer
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_10.pth')
    assert find_resume_checkpoint(str(tmp_path / 'empty')) is None


def test_amp_on_a_cpu_without_fast_bf16_trains_in_fp32(tmp_path, fashion_mnist_folder, monkeypatch):
    import extrema.engine.launch as launch
    monkeypatch.setattr(launch.torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(launch, 'cpu_bf16_speedup', lambda: 0.025)
    with pytest.warns(UserWarning, match='0.03x the speed of fp32'):
        cfg = setup_config(write_config(tmp_path, fashion_mnist_folder, 'amp.py'), amp=True)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    with pytest.raises(ValueError, match='float16 needs a GPU'):
        setup_config(write_config(tmp_path, fashion_mnist_folder, 'amp.py'), amp=True, amp_dtype='float16')


def test_amp_on_a_cpu_with_fast_bf16_trains_in_bf16(tmp_path, fashion_mnist_folder, monkeypatch):
    """Where the probe finds bf16 faster, --amp trains a CPU run under bf16 autocast
    (mmengine's AmpOptimWrapper would refuse: it asserts a GPU)."""
    import extrema.engine.launch as launch
    monkeypatch.setattr(launch.torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(launch, 'cpu_bf16_speedup', lambda: 1.7)
    cfg = setup_config(write_config(tmp_path, fashion_mnist_folder, 'amp.py'), amp=True,
                       work_dir=str(tmp_path / 'amp'))
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype) == ('extrema.AutocastOptimWrapper', 'bfloat16')
    runner = build_runner(cfg)
    seen = []
    runner.model.predictor.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    start = [p.detach().clone() for p in runner.model.student.parameters()]
    runner.train()
    assert seen and set(seen) == {torch.bfloat16}  # the forward ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in runner.model.parameters())  # fp32 master weights
    assert all(not torch.equal(a, b) for a, b in zip(start, runner.model.student.parameters()))
    assert (tmp_path / 'amp/epoch_2.pth').exists()


def test_compile_compiles_the_forward_not_the_train_step(tmp_path, fashion_mnist_folder, monkeypatch):
    """--compile: the model's forward is compiled and trains under the autocast wrapper
    (compiling mmengine's whole train_step failed in Dynamo under AmpOptimWrapper on an H100);
    the checkpoint keys are those of the plain model. aot_eager keeps the test fast."""
    import extrema.engine.launch as launch
    monkeypatch.setattr(launch.torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(launch, 'cpu_bf16_speedup', lambda: 1.7)
    cfg = setup_config(write_config(tmp_path, fashion_mnist_folder, 'compiled.py'), amp=True,
                       work_dir=str(tmp_path / 'compiled'), compile=True)
    assert cfg.compile is True
    cfg.compile = dict(backend='aot_eager')
    torch._dynamo.reset()
    runner = build_runner(cfg)
    assert runner.model._compiled_call_impl is not None
    assert not hasattr(runner.model.train_step, '_torchdynamo_orig_callable')
    start = [p.detach().clone() for p in runner.model.student.parameters()]
    runner.train()
    assert torch._dynamo.utils.counters['stats']['unique_graphs'] > 0
    assert all(not torch.equal(a, b) for a, b in zip(start, runner.model.student.parameters()))
    state = load_file(str(tmp_path / 'compiled/epoch_2.pth'))['state_dict']
    assert list(state) == list(runner.model.state_dict())
    assert not any('_orig_mod' in key for key in state)


def test_autocast_wrapper_refuses_fp16():
    from extrema.engine import AutocastOptimWrapper
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match='loss scale'):
        AutocastOptimWrapper(optimizer, dtype='float16')


def test_bf16_probe_measures_something():
    from extrema.benchmark.timing import cpu_bf16_speedup
    assert cpu_bf16_speedup(repeats=1) > 0
