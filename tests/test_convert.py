"""tools/convert_checkpoint.py: official -> ours -> backbone, verified by loading."""
import os
import sys

import pytest
import torch

import extrema
from extrema.checkpoint import encoder_state_dict, load_file, load_pretrained

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, 'tools'))
import convert_checkpoint  # noqa: E402


@pytest.fixture
def official_file(tmp_path):
    torch.manual_seed(0)
    model = extrema.ExtreMA(arch=dict(embed_dim=128, depth=2, num_heads=2), img_size=32, patch_size=8,
                            proj_hidden_dim=64, proj_dim=32, pred_hidden_dim=64, num_masks=1)
    with torch.no_grad():
        for p in model.teacher.parameters():
            p.add_(0.01)
    renames = (('student.', 'module.base_encoder.'), ('teacher.', 'module.momentum_encoder.'),
               ('predictor.', 'module.predictor.'))
    state = {new + k[len(old):].replace('projector.', 'head.', 1): v for k, v in model.state_dict().items()
             for old, new in renames if k.startswith(old)}  # the official code's projector is 'head'
    path = tmp_path / 'official.pth.tar'
    torch.save({'state_dict': state, 'arch': 'vit_custom', 'epoch': 300}, path)
    return path, model.eval()


def test_official_to_ours_roundtrip(tmp_path, official_file, capsys):
    src, model = official_file
    dst = tmp_path / 'ours.pth'
    convert_checkpoint.main([str(src), str(dst), '--to', 'extrema', '--strict'])
    assert '(verified: 0 missing, 0 unexpected keys)' in capsys.readouterr().out
    converted = torch.load(dst, weights_only=True)
    assert converted['meta']['extrema_config']['arch'] == dict(embed_dim=128, depth=2, num_heads=2)
    loaded = load_pretrained(str(dst), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for branch in ('student', 'teacher'):
            torch.testing.assert_close(loaded.forward_features(x, branch)['projection'],
                                       model.forward_features(x, branch)['projection'])


@pytest.mark.parametrize('branch', ['student', 'teacher'])
def test_backbone_export_holds_one_encoder(tmp_path, official_file, branch):
    src, model = official_file
    dst = tmp_path / f'{branch}.pth'
    convert_checkpoint.main([str(src), str(dst), '--to', 'backbone', '--branch', branch, '--strict'])
    backbone = load_file(str(dst))
    assert backbone['meta']['branch'] == branch
    encoder = getattr(model, branch).state_dict()
    assert set(backbone['state_dict']) == {k for k in encoder if not k.startswith('projector.')}
    for key, value in backbone['state_dict'].items():
        assert torch.equal(value, encoder[key])
    assert encoder_state_dict(backbone, branch).keys() == backbone['state_dict'].keys()


def test_strict_conversion_fails_on_unknown_keys(tmp_path, official_file):
    src, _ = official_file
    checkpoint = torch.load(src, weights_only=True)
    checkpoint['state_dict']['module.base_encoder.blocks.0.attn.extra'] = torch.zeros(2)
    torch.save(checkpoint, tmp_path / 'extra.pth')
    with pytest.raises(KeyError, match='Strict load'):
        convert_checkpoint.main([str(tmp_path / 'extra.pth'), str(tmp_path / 'out.pth'), '--to', 'extrema', '--strict'])
    assert not (tmp_path / 'out.pth').exists()
