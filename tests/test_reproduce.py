"""tools/reproduce.py in its smallest setting, and the pieces the BYOL investigation added:
the collapse diagnostics and the per-prefix learning rate of the pretraining optimizer."""
import json
import os
import sys

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, 'tools'))
import reproduce  # noqa: E402

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
            '--lambd', '0.001', '--out', str(out)]
    reproduce.main(argv)
    stored = json.loads(out.read_text())
    assert stored['num_labelled'] == 100 and stored['num_test'] == 40
    names = [row['name'] for row in stored['rows']]
    assert names == ['raw pixels', 'random init', ZOO_WEIGHTS]
    for row in stored['rows'][1:]:
        assert set(reproduce.FEATURES) <= set(row)
        assert 1 <= row['eff_rank'] <= 192 and 0 < row['feat_std'] < 1
        assert all(0 <= row[f]['knn'] <= 100 and 0 <= row[f]['logreg'] <= 100 for f in reproduce.FEATURES)
    assert stored['rows'][0]['eff_rank'] > 1
    reproduce.main(argv)  # the rows already there are kept, not recomputed
    assert json.loads(out.read_text())['rows'] == stored['rows']
