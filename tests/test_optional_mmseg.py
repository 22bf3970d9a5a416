"""mmseg is needed by the segmentation side only: ``import extrema`` and a pretraining run work
without it, and with it ``import extrema`` registers the mmseg side (``extrema.seg``)."""
import os
import subprocess
import sys
import textwrap

from conftest import ROOT, TINY_BASE


def test_pretraining_runs_with_mmseg_unimportable(tmp_path, fashion_mnist_folder):
    config = tmp_path / 'tiny.py'
    config.write_text(textwrap.dedent(f"""
        _base_ = ['{TINY_BASE}']
        model = dict(arch=dict(embed_dim=32, depth=1, num_heads=2, _delete_=True), img_size=32, patch_size=8,
                     proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32, mask_ratio=0.75, num_masks=4)
        train_dataloader = dict(batch_size=50, num_workers=0, persistent_workers=False,
                                dataset=dict(data_root='{fashion_mnist_folder}'))
        param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=True, begin=0, end=1)]
        train_cfg = dict(max_epochs=1)
        default_hooks = dict(checkpoint=dict(interval=1))
        """))
    script = textwrap.dedent(f"""
        import sys
        sys.modules['mmseg'] = None  # 'import mmseg' now raises ImportError, as where it is not installed
        import extrema
        from extrema.engine.launch import build_runner, setup_config
        runner = build_runner(setup_config({str(config)!r}, work_dir={str(tmp_path / 'work')!r}))
        runner.train()
        loaded = sorted(m for m in sys.modules if m.startswith(('mmseg.', 'extrema.seg')))
        print('iters', runner.iter, 'loaded', loaded)
        """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'iters 4 loaded []' in done.stdout
    assert os.path.isfile(tmp_path / 'work' / 'epoch_1.pth')


def test_import_extrema_registers_the_mmseg_side_when_mmseg_is_installed():
    from mmseg.registry import DATASETS, HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS

    import extrema.seg
    assert MODELS.get('ExtreMAViT') is extrema.seg.ExtreMAViT
    assert DATASETS.get('FashionADEDataset') is extrema.seg.FashionADEDataset
    assert OPTIM_WRAPPER_CONSTRUCTORS.get('LayerDecayOptimWrapperConstructor') is \
        extrema.seg.LayerDecayOptimWrapperConstructor
    assert HOOKS.get('SegDataCheckHook') is not None
