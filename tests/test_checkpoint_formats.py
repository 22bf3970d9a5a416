"""One checkpoint layer for every target: mmpretrain ViTs, carried pixel statistics, fp16
backbone files, and tools/test.py refusing a checkpoint that is not the segmentor's."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

import extrema
from extrema.analysis import load_encoder
from extrema.checkpoint import EncoderWeights, load_file
from extrema.evaluation.frozen import FrozenEncoder
from extrema.models import ExtreMAViT
from extrema.models.classifier import ExtreMAClassifier

from test_checkpoint_security import SEG_CONFIG, _tool, fashion_ade  # noqa: F401  (fixture)
MMPRETRAIN_ARCH = dict(embed_dims=32, num_layers=2, num_heads=4, feedforward_channels=128)
OUR_ARCH = dict(embed_dim=32, depth=2, num_heads=4)
STATS = dict(mean=[10., 20., 30.], std=[40., 50., 60.])


def _build_mmpretrain(cfg: dict):
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # 'MAE' is also an mmseg backbone
        return MMPRETRAIN_MODELS.build(cfg)


def _save_as_mmengine(model_cfg: dict, model, path: str, **top_level) -> str:
    """What mmengine's CheckpointHook writes: the state dict and the config text in meta."""
    cfg = Config(dict(model=model_cfg, **top_level))
    torch.save(dict(state_dict=model.state_dict(), meta=dict(cfg=cfg.pretty_text, epoch=1)), path)
    return path


@pytest.fixture(scope='module')
def mmpretrain_mae(tmp_path_factory):
    """A real (tiny) mmpretrain 1.2 MAE, saved as its Runner would; 4 heads of 8 dims, so the
    64-d-head guess (1 head) would be wrong."""
    torch.manual_seed(0)
    cfg = dict(type='MAE', backbone=dict(type='MAEViT', arch=MMPRETRAIN_ARCH, img_size=32, patch_size=8,
                                         mask_ratio=0.75),
               neck=dict(type='MAEPretrainDecoder', num_patches=16, patch_size=8, in_chans=3, embed_dim=32,
                         decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2),
               head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=8,
                         loss=dict(type='PixelReconstructionLoss', criterion='L2')))
    model = _build_mmpretrain(cfg)
    model.init_weights()
    path = str(tmp_path_factory.mktemp('mmpretrain') / 'mae.pth')
    return _save_as_mmengine(cfg, model, path, data_preprocessor=dict(**STATS, to_rgb=True)), model.eval()


def _mmpretrain_patch_tokens(backbone, images):
    """mmpretrain's own layers on the patch tokens (no [cls] token, as the ExtreMA trunk)."""
    tokens = backbone.patch_embed(images)[0] + backbone.pos_embed[:, 1:]
    for layer in backbone.layers:
        tokens = layer(tokens)
    return tokens


def test_mmpretrain_mae_loads_in_every_target(mmpretrain_mae, tmp_path):
    path, mae = mmpretrain_mae
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = _mmpretrain_patch_tokens(mae.backbone, images)
    weights = EncoderWeights.read(path)
    assert weights.format == 'mmpretrain' and weights.config['arch'] == OUR_ARCH  # heads from the stored cfg
    assert (weights.mean, weights.std) == (tuple(STATS['mean']), tuple(STATS['std']))

    analysis = load_encoder(path)
    frozen = FrozenEncoder(path)
    with torch.no_grad():
        torch.testing.assert_close(analysis.encoder.forward_tokens(images)[-1], expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(frozen.embed(images, 'mean_tokens'), expected.mean(1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no class-attention blocks.*mean_tokens"):
        frozen.check_feature('instance')

    backbone = ExtreMAViT(arch=OUR_ARCH, img_size=32, patch_size=8, out_indices=(1,), drop_path_rate=0.,
                          init_cfg=dict(type='Pretrained', checkpoint=path, strict=True))
    backbone.init_weights()
    with torch.no_grad():
        maps = backbone.eval()(images)[0]
    torch.testing.assert_close(maps, expected.transpose(1, 2).reshape(2, 32, 4, 4), rtol=1e-5, atol=1e-5)

    classifier = ExtreMAClassifier(num_classes=10, arch=OUR_ARCH, img_size=32, patch_size=8, pretrained=path)
    classifier.init_weights()  # strict: every trunk tensor loads
    torch.testing.assert_close(classifier.backbone.blocks[1].mlp.fc1.weight,
                               mae.backbone.layers[1].ffn.layers[0][0].weight)

    out = str(tmp_path / 'backbone.pth')
    _tool('tools', 'convert_checkpoint.py').main([path, out, '--to', 'backbone', '--strict'])
    meta = load_file(out)['meta']
    assert meta['extrema_config']['arch'] == OUR_ARCH and meta['source_format'] == 'mmpretrain'
    assert meta['data_preprocessor'] == STATS


def test_mmpretrain_mocov3_teacher_is_the_momentum_encoder(tmp_path):
    torch.manual_seed(0)
    cfg = dict(type='MoCoV3', base_momentum=0.01,
               backbone=dict(type='MoCoV3ViT', arch=MMPRETRAIN_ARCH, img_size=32, patch_size=8),
               neck=dict(type='NonLinearNeck', in_channels=32, hid_channels=16, out_channels=8, num_layers=2,
                         with_avg_pool=False, norm_cfg=dict(type='BN1d')),
               head=dict(type='MoCoV3Head', temperature=0.2, loss=dict(type='CrossEntropyLoss', loss_weight=2.),
                         predictor=dict(type='NonLinearNeck', in_channels=8, hid_channels=16, out_channels=8,
                                        num_layers=2, with_avg_pool=False, norm_cfg=dict(type='BN1d'))))
    model = _build_mmpretrain(cfg)
    with torch.no_grad():
        for param in model.momentum_encoder.parameters():
            param.add_(1.)
    path = _save_as_mmengine(cfg, model, str(tmp_path / 'mocov3.pth'))
    student, teacher = (EncoderWeights.read(path, branch) for branch in ('student', 'teacher'))
    qkv = 'blocks.0.attn.qkv.weight'
    assert torch.equal(student.state[qkv], model.backbone.layers[0].attn.qkv.weight)
    assert torch.equal(teacher.state[qkv], model.momentum_encoder.module[0].layers[0].attn.qkv.weight)


def _ours_with_stats(model, path):
    text = Config(dict(model=dict(type='ExtreMA', data_preprocessor=dict(type='TwoViewDataPreprocessor',
                                                                         **STATS)))).pretty_text
    torch.save(dict(state_dict=model.state_dict(), meta=dict(extrema_config=model.config, cfg=text)), path)
    return path


def test_converted_files_carry_the_pixel_statistics(tiny_extrema, tmp_path):
    """A backbone file is evaluated with its pretraining's mean/std, not ImageNet's."""
    source = _ours_with_stats(tiny_extrema, str(tmp_path / 'ours.pth'))
    convert = _tool('tools', 'convert_checkpoint.py')
    backbone, full = str(tmp_path / 'backbone.pth'), str(tmp_path / 'full.pth')
    convert.main([source, backbone, '--to', 'backbone', '--branch', 'teacher'])
    convert.main([source, full, '--to', 'extrema'])
    expected = (tuple(STATS['mean']), tuple(STATS['std']))
    assert FrozenEncoder(backbone).normalisation == expected
    loaded = load_encoder(backbone)
    assert (loaded.mean, loaded.std) == expected
    assert extrema.load_pretrained(full).data_preprocessor.std.flatten().tolist() == STATS['std']


def test_float16_backbone_loads_everywhere(tiny_extrema, tmp_path):
    source = _ours_with_stats(tiny_extrema, str(tmp_path / 'ours.pth'))
    half, full = str(tmp_path / 'half.pth'), str(tmp_path / 'full.pth')
    convert = _tool('tools', 'convert_checkpoint.py')
    convert.main([source, half, '--to', 'backbone', '--branch', 'teacher', '--dtype', 'float16'])
    convert.main([source, full, '--to', 'backbone', '--branch', 'teacher'])
    stored = load_file(half)
    assert {v.dtype for v in stored['state_dict'].values()} == {torch.float16}
    assert osp.getsize(half) < 0.6 * osp.getsize(full)
    teacher = tiny_extrema.teacher
    expected = teacher.blocks[1].attn.qkv.weight.detach().half().float()
    frozen = FrozenEncoder(half)
    backbone = ExtreMAViT(arch=tiny_extrema.config['arch'], img_size=32, patch_size=8, out_indices=(1,),
                          init_cfg=dict(type='Pretrained', checkpoint=half, strict=True))
    backbone.init_weights()
    classifier = ExtreMAClassifier(num_classes=10, arch=tiny_extrema.config['arch'], img_size=32, patch_size=8,
                                   pretrained=half)
    classifier.init_weights()
    pretrained = extrema.load_pretrained(half)  # the encoder as both branches, predictor missing
    for model in (frozen.model, load_encoder(half).encoder, backbone, classifier.backbone, pretrained.teacher,
                  pretrained.student):
        qkv = model.blocks[1].attn.qkv.weight
        assert qkv.dtype == torch.float32 and torch.equal(qkv, expected)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(frozen.embed(images, 'instance'), FrozenEncoder(full).embed(images, 'instance'),
                                   rtol=1e-2, atol=1e-2)


def test_tools_test_refuses_a_checkpoint_that_is_not_the_segmentor(fashion_ade, tiny_extrema, tmp_path):
    """A pretraining checkpoint holds no segmentor tensor: an mIoU of the random segmentor means nothing."""
    path = str(tmp_path / 'pretraining.pth')
    torch.save(dict(state_dict=tiny_extrema.state_dict(), meta=dict(extrema_config=tiny_extrema.config)), path)
    argv = [SEG_CONFIG, path, '--work-dir', str(tmp_path / 'test'), '--cfg-options',
            f'test_dataloader.dataset.data_root={fashion_ade}', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False']
    with pytest.raises(ValueError, match=r"is an ExtreMA pretraining checkpoint \(format 'extrema'\), not a "
                                         r"checkpoint of this segmentor: it misses \d+ of the \d+ tensors"):
        _tool('tools', 'test.py').main(argv)


def test_mmpretrain_head_count_from_an_arch_name(tmp_path):
    """mmpretrain's 'small' ViT has 8 heads of 96 dims; the 64-d guess would say 12."""
    width = 768
    state = {'backbone.patch_embed.projection.weight': torch.zeros(width, 3, 2, 2),
             'backbone.pos_embed': torch.zeros(1, 5, width),
             'backbone.layers.0.ln1.weight': torch.ones(width),
             'backbone.layers.0.ffn.layers.0.0.weight': torch.zeros(width, width)}
    text = Config(dict(model=dict(type='ImageClassifier', backbone=dict(type='VisionTransformer', arch='small')))
                  ).pretty_text
    path = str(tmp_path / 'vit_small.pth')
    torch.save(dict(state_dict=state, meta=dict(cfg=text)), path)
    weights = EncoderWeights.read(path)
    assert weights.heads_stated and weights.config['arch'] == dict(embed_dim=width, depth=1, num_heads=8)
    assert (weights.config['img_size'], weights.config['patch_size']) == (4, 2)  # [cls] slot dropped
