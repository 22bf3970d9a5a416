"""Layer-wise lr decay over timm-named ViT parameters."""
import pytest
import torch
import torch.nn as nn

from extrema.engine.layer_decay import LayerDecayOptimWrapperConstructor, layer_id
from extrema.models import ViTTrunk

DEPTH = 3
DECAY = 0.65


class _Segmentor(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = ViTTrunk(dict(embed_dim=32, depth=DEPTH, num_heads=2), img_size=16,
                                 patch_size=8, use_rel_pos_bias=True)
        self.backbone.cls_token = nn.Parameter(torch.zeros(1, 1, 32))
        self.decode_head = nn.Sequential(nn.Conv2d(32, 8, 1), nn.BatchNorm2d(8))


def _build(paramwise_cfg, lr=1e-3, wd=0.05):
    return LayerDecayOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=lr, weight_decay=wd)),
        paramwise_cfg)


def test_layer_id_contract():
    assert layer_id('backbone.patch_embed.proj.weight', 12) == 0
    assert layer_id('backbone.cls_token', 12) == 0
    assert layer_id('model.backbone.pos_embed', 12) == 0
    assert layer_id('backbone.blocks.0.attn.qkv.weight', 12) == 1
    assert layer_id('backbone.blocks.11.mlp.fc2.bias', 12) == 12
    assert layer_id('blocks.4.norm1.weight', 12) == 5
    assert layer_id('backbone.norm.weight', 12) == 13
    assert layer_id('neck.convs.0.weight', 12) == 13
    assert layer_id('decode_head.blocks.2.weight', 12) == 13


def test_groups_hold_lr_scale_per_block_and_weight_decay_exclusions():
    model = _Segmentor()
    model.backbone.blocks[0].mlp.fc1.weight.requires_grad_(False)
    optimizer = _build(dict(num_layers=DEPTH, decay_rate=DECAY))(model).optimizer
    seen = {}
    for group in optimizer.param_groups:
        for name, param in zip(group['param_names'], group['params']):
            seen[name] = (group['lr'], group['weight_decay'])
            expected_scale = DECAY ** (DEPTH + 1 - layer_id(name, DEPTH))
            assert group['lr'] == pytest.approx(1e-3 * expected_scale), name
            excluded = (param.ndim <= 1 or name.endswith(('.bias', 'cls_token',
                                                          'relative_position_bias_table')))
            assert group['weight_decay'] == (0. if excluded else 0.05), name
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(seen) == trainable
    assert 'backbone.blocks.0.mlp.fc1.weight' not in seen
    assert seen['backbone.blocks.2.attn.relative_position_bias_table'] == (
        pytest.approx(1e-3 * DECAY), 0.)
    assert seen['backbone.cls_token'] == (pytest.approx(1e-3 * DECAY ** 4), 0.)
    assert seen['backbone.blocks.1.attn.qkv.weight'] == (pytest.approx(1e-3 * DECAY ** 2), 0.05)
    assert seen['decode_head.0.weight'] == (pytest.approx(1e-3), 0.05)


def test_missing_paramwise_keys_are_named():
    with pytest.raises(ValueError, match=r"\['decay_rate'\]"):
        _build(dict(num_layers=12))
    with pytest.raises(ValueError, match='num_layers'):
        _build(None)


def test_depth_mismatch_is_reported():
    with pytest.raises(ValueError, match=r'num_layers=12 but the model has blocks \[0, 1, 2\]'):
        _build(dict(num_layers=12, decay_rate=DECAY))(_Segmentor())
