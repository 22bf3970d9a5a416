"""Transfer recipes as the official code has them, and mmpretrain's layer decay on our ViTs."""
import pytest
import torch
import torch.nn as nn
from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor

from extrema.engine.layer_decay import LayerDecayOptimWrapperConstructor
from extrema.models import ExtreMAClassifier, ExtreMAViT
from extrema.models.vit import ExtreMAEncoder

ARCH = dict(embed_dim=32, depth=2, num_heads=2)
OPTIMIZER = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
DECAY = 0.65


def classifier(pooling='mean'):
    torch.manual_seed(0)
    return ExtreMAClassifier(num_classes=10, arch=ARCH, img_size=32, patch_size=8, pooling=pooling,
                             drop_path_rate=0.)


def ours(model):
    optimizer = LayerDecayOptimWrapperConstructor(OPTIMIZER, dict(num_layers=2, decay_rate=DECAY))(model).optimizer
    return {name: (group['lr'], group['weight_decay'])
            for group in optimizer.param_groups for name in group['param_names']}


@pytest.mark.parametrize('pooling', ['mean', 'class_attention'])
def test_finetuning_pos_embed_is_a_trainable_layer_0_parameter(pooling):
    model = classifier(pooling)
    params = dict(model.named_parameters())
    assert 'backbone.pos_embed' in params and params['backbone.pos_embed'].requires_grad
    assert 'backbone.pos_embed' not in dict(model.named_buffers())
    images, labels = torch.randn(4, 3, 32, 32), torch.arange(4)
    model.loss(images, labels)['loss'].backward()
    assert params['backbone.pos_embed'].grad.abs().sum() > 0
    # official recipe: layer id 0 (lr x 0.65^(depth + 1)) and no weight decay
    assert ours(model)['backbone.pos_embed'] == (pytest.approx(1e-3 * DECAY ** 3), 0.)


def test_classifier_files_with_the_fixed_pos_embed_still_load():
    old = classifier()
    table = old.backbone.pos_embed.detach().clone() + 1.
    del old.backbone.pos_embed
    old.backbone.register_buffer('pos_embed', table)  # how older classifiers held it
    state = old.state_dict()
    new = classifier()
    new.load_state_dict(state, strict=True)
    assert torch.equal(new.backbone.pos_embed, table)
    assert isinstance(new.backbone.pos_embed, nn.Parameter)


def test_class_attention_cls_token_gets_the_depth_of_the_blocks_that_use_it():
    lrs = ours(classifier('class_attention'))
    full = pytest.approx(1e-3)
    assert lrs['backbone.cls_token'] == (full, 0.)
    assert lrs['backbone.blocks_token.0.attn.q.weight'][0] == full
    assert lrs['backbone.blocks.0.attn.qkv.weight'][0] == pytest.approx(1e-3 * DECAY ** 2)
    assert lrs['backbone.patch_embed.proj.weight'][0] == pytest.approx(1e-3 * DECAY ** 3)


def mmpretrain_lrs(model):
    constructor = LearningRateDecayOptimWrapperConstructor(OPTIMIZER, dict(layer_decay_rate=DECAY))
    groups = constructor(model).optimizer.param_groups
    return {group['param_name']: group['lr'] for group in groups}


@pytest.mark.parametrize('build', [
    lambda: ExtreMAViT(ARCH, img_size=32, patch_size=8, out_indices=(0, 1)),
    lambda: ExtreMAEncoder(ARCH, img_size=32, patch_size=8, proj_hidden_dim=16, proj_dim=8),
], ids=['ExtreMAViT', 'ExtreMAEncoder'])
def test_mmpretrain_layer_decay_constructor_matches_ours(build):
    model = build()
    theirs = mmpretrain_lrs(model)
    assert set(theirs) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert theirs == pytest.approx({name: lr for name, (lr, _) in ours(model).items()})
    assert theirs['blocks.1.mlp.fc2.weight'] == pytest.approx(1e-3 * DECAY)
    assert theirs['patch_embed.proj.weight'] == pytest.approx(1e-3 * DECAY ** 3)
    assert model.get_layer_depth('neck.convs.0.weight', prefix='backbone.') == (3, 4)


@pytest.mark.parametrize('pooling', ['mean', 'class_attention'])
def test_mmpretrain_layer_decay_constructor_on_the_classifier_matches_ours(pooling):
    model = classifier(pooling)
    theirs = mmpretrain_lrs(model)
    assert set(theirs) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert theirs == pytest.approx({name: lr for name, (lr, _) in ours(model).items()})
    assert theirs['head.weight'] == pytest.approx(1e-3)
    assert theirs['backbone.pos_embed'] == pytest.approx(1e-3 * DECAY ** 3)
