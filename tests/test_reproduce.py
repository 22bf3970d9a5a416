"""tools/reproduce.py in its smallest setting, and the pieces the BYOL investigation added:
the collapse diagnostics and the per-prefix learning rate of the pretraining optimizer."""
import json
import os
import sys
from collections import Counter

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, 'tools'))
import reproduce  # noqa: E402

from extrema.data.subsets import LabelledImageFolder  # noqa: E402
from extrema.evaluation.diagnostics import effective_rank, feature_std  # noqa: E402
from extrema.registry import OPTIM_WRAPPER_CONSTRUCTORS  # noqa: E402

ZOO_WEIGHTS = os.path.join(ROOT, 'pretrain', 'zoo', 'extrema_vit-tiny-p4_mask08x5_fashion-mnist-60k-32px',
                           'teacher_backbone.pth')


def test_collapse_diagnostics_tell_spread_from_collapsed_features():
    torch.manual_seed(0)
    spread = torch.randn(4000, 64)
    assert feature_std(spread) == pytest.approx(64 ** -0.5, rel=0.02)
    assert effective_rank(spread) > 60
    line = torch.randn(4000, 1) * torch.randn(1, 64) + torch.randn(1, 64)  # one direction around a mean
    assert effective_rank(line) == pytest.approx(1, abs=1e-3)
    assert feature_std(torch.ones(10, 8) + 1e-9 * torch.randn(10, 8)) < 1e-6


def test_extrema_loss_logs_the_collapse_check_without_optimising_it(tiny_extrema):
    losses = tiny_extrema.loss([torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)])
    loss, log_vars = tiny_extrema.parse_losses(losses)
    assert torch.equal(loss, losses['loss'])
    assert 0 < log_vars['feat_std'] < 1 and 0 < log_vars['pred_std'] < 1


def test_lr_mult_gives_the_predictor_its_own_groups(tiny_extrema):
    def groups(paramwise_cfg):
        constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
            type='DecayGroupsOptimWrapperConstructor', paramwise_cfg=paramwise_cfg,
            optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1))))
        return constructor(tiny_extrema).optimizer.param_groups

    plain, boosted = groups(None), groups(dict(lr_mult={'predictor.': 10.}))
    assert [(g['lr'], g['weight_decay']) for g in plain] == [(1e-3, 0.), (1e-3, 0.1)]
    assert [(g['lr'], g['weight_decay']) for g in boosted] == [(1e-3, 0.), (1e-3, 0.1), (1e-2, 0.), (1e-2, 0.1)]
    predictor = {id(p) for p in tiny_extrema.predictor.parameters()}
    assert {id(p) for g in boosted[2:] for p in g['params']} == predictor
    assert sum(len(g['params']) for g in boosted) == sum(len(g['params']) for g in plain)


def test_curve_smallest_setting(fashion_mnist_folder, tmp_path):
    out = tmp_path / 'curve.json'
    argv = ['curve', ZOO_WEIGHTS, '--data-root', fashion_mnist_folder, '--percent', '50', '--test-per-class', '4',
            '--lambd', '0.001', '--pca', '8', '16', '--out', str(out)]
    reproduce.main(argv)
    stored = json.loads(out.read_text())
    assert stored['num_labelled'] == 100 and stored['num_test'] == 40
    names = [row['name'] for row in stored['rows']]
    assert names == ['raw pixels', 'raw pixels, PCA 8', 'raw pixels, PCA 16', 'random init', ZOO_WEIGHTS]
    # the PCA rows span as many directions as they keep: an effective rank above 1, at most DIM
    for row, dim in zip(stored['rows'][1:3], (8, 16)):
        assert 1 < row['eff_rank'] <= dim and 0 <= row['pixels']['knn'] <= 100
    (mean, projection), = reproduce.pixel_pca(fashion_mnist_folder, [4]).values()
    pixels, _ = reproduce.pixel_features(LabelledImageFolder(fashion_mnist_folder, 'train',
                                                             transform=reproduce.EVAL_TRANSFORM))
    assert torch.allclose(projection.T @ projection, torch.eye(4), atol=1e-5)
    variances = ((pixels - mean) @ projection).var(dim=0)
    assert (variances[:-1] >= variances[1:]).all()  # the components in order of the variance they keep
    assert variances[0] >= (pixels - mean).var(dim=0).sum() / pixels.shape[1]
    for row in stored['rows'][3:]:
        assert set(reproduce.FEATURES) <= set(row)
        assert 1 <= row['eff_rank'] <= 192 and 0 < row['feat_std'] < 1
        assert all(0 <= row[f]['knn'] <= 100 and 0 <= row[f]['logreg'] <= 100 for f in reproduce.FEATURES)
    assert stored['rows'][0]['eff_rank'] > 1
    reproduce.main(argv)  # the rows already there are kept, not recomputed
    assert json.loads(out.read_text())['rows'] == stored['rows']


def test_holdout_parts_are_disjoint_balanced_and_cover_the_labelled_set(fashion_mnist_folder):
    from extrema.data.subsets import LabelledImageFolder
    parts = {part: LabelledImageFolder(fashion_mnist_folder, 'train', percent=50, seed=3, holdout=0.2,
                                       holdout_part=part, transform=dict(input_size=32))
             for part in ('fit', 'heldout')}
    everything = LabelledImageFolder(fashion_mnist_folder, 'train', percent=50, seed=3, transform=dict(input_size=32))
    fit, held = (set(parts[p].samples) for p in ('fit', 'heldout'))
    assert not fit & held and fit | held == set(everything.samples)
    assert sorted(Counter(label for _, label in held).values()) == [2] * 10  # 20% of 10 per class
    with pytest.raises(ValueError, match='holdout must be in'):
        LabelledImageFolder(fashion_mnist_folder, 'train', percent=50, holdout=1.0)


def test_table_smallest_setting(fashion_mnist_folder, tmp_path):
    """Every cell of the table, with the lr chosen on the held-out part: one tiny fine-tuning
    epoch per run on the 10-image-per-class test folder."""
    out = tmp_path / 'table.json'
    argv = ['table', '--rows', f'zoo={ZOO_WEIGHTS}', '--data-root', fashion_mnist_folder, '--percent', '10',
            '--lambd', '0.001', '--ft-lrs', '1e-4', '1e-3', '--ft-epochs', '10=1', '--ft-batch', '10', '--workers', '0',
            '--work-dir', str(tmp_path / 'ft'), '--out', str(out)]
    reproduce.main(argv)
    state = json.loads(out.read_text())
    assert state['num_labelled/10'] == 20 and state['num_test'] == 100
    for name in ('random init', 'zoo'):
        for protocol in ('knn', 'logreg', 'finetune'):
            assert 0 <= state['cells'][f'{name}|{protocol}|10'] <= 100
        held = {lr: state['cells'][f'{name}|heldout lr {lr:g}|10'] for lr in (1e-4, 1e-3)}
        assert state['lr'][f'{name}|finetune|10'] == max(held, key=lambda lr: (held[lr], -lr))
    assert {'raw pixels|knn|10', 'raw pixels|logreg|10'} <= set(state['cells'])
    assert state['feature'] == {'random init': 'instance', 'zoo': 'instance'}
    assert not list((tmp_path / 'ft').rglob('*.pth'))  # scores kept, weights removed
    markdown = reproduce.table_markdown(state)
    assert markdown.splitlines()[0] == '| | k-NN 10% | logreg 10% | fine-tune 10% |'
    assert len(markdown.splitlines()) == 5
    reproduce.main(argv)  # everything is there: nothing is recomputed
    assert json.loads(out.read_text())['cells'] == state['cells']


def test_a_missing_checkpoint_stops_table_and_curve_before_any_score(fashion_mnist_folder, tmp_path):
    out = tmp_path / 'table.json'
    # 'K=1' makes the name 'ExtreMA, K' and the path '1=<zoo>', which does not exist.
    with pytest.raises(SystemExit, match=r'No such checkpoint: 1=.*NAME holds no "="'):
        reproduce.main(['table', '--rows', f'ExtreMA, K=1={ZOO_WEIGHTS}', '--data-root', fashion_mnist_folder,
                        '--percent', '10', '--protocol', 'knn', '--out', str(out)])
    with pytest.raises(SystemExit, match='No such checkpoint: .*iter_9.pth'):
        reproduce.main(['curve', ZOO_WEIGHTS, str(tmp_path / 'iter_9.pth'), '--data-root', fashion_mnist_folder,
                        '--percent', '10', '--out', str(out)])
    assert not out.exists()


def test_ablation_plot_reads_curve_files(tmp_path):
    def curve(path, steps, scores):
        rows = [dict(name='random init', step=0, feature='instance', instance=dict(knn=50., logreg=60.))]
        rows += [dict(name=f'run/iter_{s}.pth', step=s, feature='instance', instance=dict(knn=k, logreg=k + 5))
                 for s, k in zip(steps, scores)]
        path.write_text(json.dumps(dict(rows=rows)))
        return str(path)

    ratios = [f'{r}={curve(tmp_path / f"r{r}.json", [156, 312], [55., 60. + 10 * r])}' for r in (0.5, 0.9)]
    masks = [f'{k}={curve(tmp_path / f"k{k}.json", [156, 312], [55. + k, 62.])}' for k in (1, 5)]
    out = tmp_path / 'plots' / 'ablations.png'
    reproduce.main(['plot', '--mask-ratio', *ratios, '--num-masks', *masks, '--out', str(out)])
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert reproduce.checkpoint_rows(json.loads((tmp_path / 'k5.json').read_text())['rows'])[-1]['step'] == 312


def test_mae_peer_config_builds_mmpretrains_mae_and_trains_a_step(fashion_mnist_folder, tmp_path):
    from extrema.engine.launch import build_runner, setup_config
    config = os.path.join(ROOT, 'pretrain/configs/mae_vit-tiny-p4_1xb128-4e_fashion-mnist-60k-32px.py')
    cfg = setup_config(config, work_dir=str(tmp_path), cfg_options={
        'train_dataloader.dataset.data_root': fashion_mnist_folder, 'train_dataloader.batch_size': 8,
        'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
        'train_cfg.max_epochs': 1, 'log_level': 'WARNING'})
    runner = build_runner(cfg)
    assert type(runner.model).__name__ == 'MAE' and runner.model.backbone.patch_embed.projection.kernel_size == (4, 4)
    before = runner.model.backbone.layers[0].attn.qkv.weight.clone()
    runner.train()  # 200 images, batch 8: 25 steps
    assert runner.iter == 25
    assert not torch.equal(before, runner.model.backbone.layers[0].attn.qkv.weight)
    assert torch.isfinite(torch.tensor(runner.message_hub.get_scalar('train/loss').current()))
    from extrema.evaluation.frozen import FrozenEncoder  # the Runner's file, through the safe loader
    encoder = FrozenEncoder(str(tmp_path / 'iter_25.pth'))
    assert reproduce.main_feature(encoder) == 'mean_tokens'
    assert torch.equal(encoder.model.blocks[0].attn.qkv.weight, runner.model.backbone.layers[0].attn.qkv.weight)


def test_whole_reproduction_smallest_setting(fashion_mnist_folder, tmp_path):
    """`all`: the three pretraining runs, five ablation runs, their curves and plot, the table
    from the runs' last checkpoints and two seeds of both segmentation protocols, each a few
    steps long."""
    work = tmp_path / 'reproduction'
    argv = ['all', '--data-root', fashion_mnist_folder, '--work-dir', str(work), '--percent', '10',
            '--protocol', 'knn', 'logreg', '--lambd', '0.001', '--curve-lambd', '0.001', '--test-per-class', '4',
            '--pretrain-batch', '50', '--pretrain-epochs', '1', '--workers', '0',
            '--seg-images', '8', '4', '--seg-iters', '2', '--seg-seeds', '0', '1']
    reproduce.main(argv)
    state = json.loads((work / 'reproduction.json').read_text())
    for name in reproduce.PRETRAIN_ROWS:  # 200 images, batch 50: 4 steps
        assert [os.path.basename(p) for p in state[f'pretrain {name}']['result']] == ['iter_4.pth']
    assert state['pretrain ExtreMA BYOL']['result'][0].endswith(os.path.join('extrema-byol', 'iter_4.pth'))
    with open(state['table']['result']) as f:
        table = json.load(f)
    cells = table['cells']
    assert {f'{name}|{p}|10' for name in ['random init', *reproduce.PRETRAIN_ROWS, 'raw pixels']
            for p in ('knn', 'logreg')} == set(cells)
    assert table['feature'] == {'random init': 'instance', 'ExtreMA BYOL': 'instance',
                                'ExtreMA InfoNCE': 'instance', 'MAE': 'mean_tokens'}
    seg = state['segmentation']
    assert set(seg['runs']) == {f'{protocol}|{init}|{seed}' for protocol in ('fine-tuned', 'frozen trunk')
                                for init in ('pretrained', 'random init') for seed in (0, 1)}
    assert all(0 <= v <= 100 for v in seg['runs'].values()) and seg['frozen trunk|pretrained']['std'] is not None
    assert seg['checkpoint'] == state['pretrain ExtreMA InfoNCE']['result'][-1]
    assert (work / 'ablations.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    curve = json.loads((work / 'ablation_mask-0.5' / 'curve.json').read_text())
    assert [row['name'] for row in curve['rows']][:2] == ['raw pixels', 'random init']
    report = (work / 'reproduction.md').read_text()
    assert '| MAE |' in report and '| frozen trunk | random init |' in report and 'ablations.png' in report
    assert not list((work / 'segmentation').rglob('*.pth'))
    stamps = {p: p.stat().st_mtime_ns for p in work.rglob('iter_4.pth')}
    reproduce.main(argv)  # finished stages are kept, not rerun
    assert {p: p.stat().st_mtime_ns for p in work.rglob('iter_4.pth')} == stamps
