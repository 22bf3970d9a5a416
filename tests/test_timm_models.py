"""timm.create_model of the ExtreMA encoders, loading our checkpoint formats."""
import pytest
import timm
from timm.optim import param_groups_layer_decay
import torch

from extrema.checkpoint import atomic_save
from extrema.models.timm_models import ExtreMATimmViT

SMALL = dict(embed_dim=64, depth=2, num_heads=2, patch_size=8, img_size=32)


@pytest.fixture
def pretraining_checkpoint(tmp_path, tiny_extrema, tiny_extrema_kwargs):
    """One of our pretraining checkpoints (the format the Runner writes), of the conftest tiny model."""
    with torch.no_grad():  # teacher and student differ, as after training
        for p in tiny_extrema.teacher.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = str(tmp_path / 'epoch_1.pth')
    config = {k: v for k, v in tiny_extrema_kwargs.items()}
    atomic_save(dict(state_dict=tiny_extrema.state_dict(), meta=dict(extrema_config=config)), path)
    return path


@pytest.mark.parametrize('branch', ['student', 'teacher'])
def test_create_model_loads_our_checkpoint(pretraining_checkpoint, tiny_extrema, branch):
    model = timm.create_model('extrema_vit_small_patch16', pretrained=True, num_classes=5,
                              pretrained_cfg_overlay=dict(file=pretraining_checkpoint),
                              pretrained_branch=branch, **SMALL).eval()
    assert isinstance(model, ExtreMATimmViT) and model.pretrained_cfg['file'] == pretraining_checkpoint
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        tokens = model.forward_features(x)
        expected = tiny_extrema.forward_features(x, branch)
        assert tokens.shape == (3, 16, 64)
        torch.testing.assert_close(tokens, expected['tokens'][-1])
        torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), expected['instance'])
        assert model(x).shape == (3, 5)
    assert model.pos_embed.requires_grad  # learnable, as in the official fine-tuning
    # the preprocessing of the pretraining travels with the model (ImageNet's when none is stored)
    config = timm.data.resolve_data_config({}, model=model)
    assert config['input_size'] == (3, 32, 32) and config['mean'] == pytest.approx((0.485, 0.456, 0.406), abs=1e-3)


def test_timm_classifier_api():
    model = timm.create_model('extrema_vit_tiny_patch4_32', global_pool='avg', **dict(SMALL, num_classes=3))
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 3) and model.get_classifier().out_features == 3
    model.reset_classifier(0, global_pool='token')
    assert model(x).shape == (2, 64) and model.num_features == 64
    assert 'pos_embed' in model.no_weight_decay()
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.5)
    names = {id(p): n for n, p in model.named_parameters()}
    scales = {names[id(p)]: g['lr_scale'] for g in groups for p in g['params']}
    assert scales['cls_token'] == scales['blocks_token.0.attn.q.weight'] == 1.0
    # the same depths as LayerDecayOptimWrapperConstructor: embeddings 0, block i at i + 1, the rest on top
    assert scales['patch_embed.proj.weight'] == scales['pos_embed'] == pytest.approx(0.5 ** 3)
    assert scales['blocks.1.attn.qkv.weight'] == pytest.approx(0.5) and scales['norm.weight'] == 1.0


def test_wrong_size_and_missing_file_are_clear_errors(pretraining_checkpoint):
    with pytest.raises(ValueError, match='embed_dim 64 \\(checkpoint\\) vs 384'):
        timm.create_model('extrema_vit_small_patch16', pretrained=True, img_size=32, patch_size=8,
                          pretrained_cfg_overlay=dict(file=pretraining_checkpoint))
    with pytest.raises(ValueError, match='pretrained_cfg_overlay=dict\\(file=PATH\\)'):
        timm.create_model('extrema_vit_base_patch16', pretrained=True)
    assert {'extrema_vit_tiny_patch4_32', 'extrema_vit_small_patch16', 'extrema_vit_base_patch16',
            'extrema_vit_large_patch16'} <= set(timm.list_models('extrema_*'))
