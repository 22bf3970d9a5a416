"""ExtreMAViT: checkpoint loading, parity with the pretraining model, full-size configs."""
import logging
import os.path as osp

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS as MMSEG_MODELS
from mmseg.structures import SegDataSample

import extrema
from extrema.engine.launch import setup_config
from extrema.engine.layer_decay import layer_id
from extrema.models import ExtreMA, ExtreMAViT

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(ROOT, 'mmseg_configs')


def _save_ours(model: ExtreMA, path: str) -> str:
    torch.save(dict(state_dict=model.state_dict(), meta=dict(extrema_config=model.config)), path)
    return path


def _save_official(model: ExtreMA, path: str) -> str:
    renames = (('student.', 'module.base_encoder.'), ('teacher.', 'module.momentum_encoder.'),
               ('predictor.', 'module.predictor.'))
    state = {}
    for key, value in model.state_dict().items():
        for ours, official in renames:
            if key.startswith(ours):
                state[official + key[len(ours):]] = value
    torch.save(dict(state_dict=state, epoch=1), path)
    return path


def _backbone(kwargs, checkpoint=None, **overrides):
    options = dict(arch=kwargs['arch'], img_size=kwargs['img_size'], patch_size=kwargs['patch_size'],
                   drop_path_rate=0., out_indices=(0, 1))
    options.update(overrides)
    if checkpoint is not None:
        options['init_cfg'] = dict(type='Pretrained', checkpoint=checkpoint, **options.pop('load', {}))
    return ExtreMAViT(**options)


def _as_maps(tokens, indices, grid):
    batch, _, dim = tokens[0].shape
    return [tokens[i].transpose(1, 2).reshape(batch, dim, *grid) for i in indices]


@pytest.mark.parametrize('img_size, rel_pos', [(32, False), (48, True)])
def test_features_equal_pretraining_tokens(tmp_path, tiny_extrema, tiny_extrema_kwargs, img_size, rel_pos):
    path = _save_ours(tiny_extrema, str(tmp_path / 'ours.pth'))
    backbone = _backbone(tiny_extrema_kwargs, path, img_size=img_size, use_rel_pos_bias=rel_pos)
    backbone.init_weights()
    backbone.eval()
    reference = extrema.load_pretrained(path)
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        features = backbone(x)
        grid = (img_size // 8, img_size // 8)
        expected = _as_maps(reference.forward_features(x)['tokens'], (0, 1), grid)
    assert [f.shape for f in features] == [(2, 64, *grid)] * 2
    for got, want in zip(features, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_official_checkpoint_branch_is_selectable(tmp_path, tiny_extrema, tiny_extrema_kwargs):
    with torch.no_grad():
        for param in tiny_extrema.teacher.parameters():
            param.add_(0.05 * torch.randn_like(param))
    path = _save_official(tiny_extrema, str(tmp_path / 'official.pth'))
    reference = extrema.load_pretrained(path, num_heads=2)
    x = torch.randn(1, 3, 32, 32)
    outputs = {}
    for branch in ('student', 'teacher'):
        backbone = _backbone(tiny_extrema_kwargs, path, load=dict(branch=branch))
        backbone.init_weights()
        with torch.no_grad():
            outputs[branch] = backbone.eval()(x)[-1]
            expected = _as_maps(reference.forward_features(x, branch)['tokens'], (1,), (4, 4))[0]
        torch.testing.assert_close(outputs[branch], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(outputs['student'], outputs['teacher'], atol=1e-3)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_backbone_file_loads_and_instance_branch_is_reported(tmp_path, tiny_extrema, tiny_extrema_kwargs):
    encoder = {k[len('student.'):]: v for k, v in tiny_extrema.state_dict().items()
               if k.startswith('student.')}
    path = str(tmp_path / 'backbone.pth')
    torch.save(dict(state_dict=encoder, meta=dict(branch='student')), path)
    backbone = _backbone(tiny_extrema_kwargs, path, load=dict(strict=True), use_rel_pos_bias=True)
    records = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        backbone.init_weights()
    finally:
        logger.removeHandler(records)
    torch.testing.assert_close(backbone.blocks[1].mlp.fc2.weight, tiny_extrema.student.blocks[1].mlp.fc2.weight)
    log = '\n'.join(records.lines)
    assert 'ignored on purpose' in log and 'blocks_token.0' in log
    assert 'relative position bias tables are new' in log


def test_architecture_mismatch_names_both_shapes(tmp_path, tiny_extrema, tiny_extrema_kwargs):
    path = _save_ours(tiny_extrema, str(tmp_path / 'ours.pth'))
    for overrides, fragment in [(dict(arch=dict(embed_dim=32, depth=2, num_heads=2)), 'embed_dim 64'),
                                (dict(arch=dict(embed_dim=64, depth=3, num_heads=2)), 'depth 2'),
                                (dict(patch_size=4), 'patch_size 8')]:
        backbone = _backbone(tiny_extrema_kwargs, path, **overrides)
        with pytest.raises(ValueError, match=fragment) as error:
            backbone.init_weights()
        assert '(64, 3, 8, 8) in the checkpoint' in str(error.value)


def test_loading_never_fails_silently(tmp_path, tiny_extrema, tiny_extrema_kwargs):
    path = _save_ours(tiny_extrema, str(tmp_path / 'ours.pth'))
    with pytest.raises(ValueError, match='no checkpoint is set'):
        ExtreMAViT(arch=tiny_extrema_kwargs['arch'], img_size=32, patch_size=8, out_indices=(1,),
                   init_cfg=dict(type='Pretrained')).init_weights()
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        _backbone(tiny_extrema_kwargs, str(tmp_path / 'missing.pth')).init_weights()
    state = tiny_extrema.student.state_dict()
    state['blocks.0.extra'] = torch.zeros(1)
    extra = str(tmp_path / 'extra.pth')
    torch.save(dict(state_dict=state), extra)
    _backbone(tiny_extrema_kwargs, extra).init_weights()  # non-strict: reported, not fatal
    with pytest.raises(KeyError, match='blocks.0.extra'):
        _backbone(tiny_extrema_kwargs, extra, load=dict(strict=True)).init_weights()
    with pytest.raises(ValueError, match='unknown keys'):
        _backbone(tiny_extrema_kwargs, path, load=dict(prefix='backbone.')).init_weights()


def test_pretrained_shorthand_and_out_indices():
    backbone = ExtreMAViT(arch=dict(embed_dim=64, depth=2, num_heads=2), img_size=32, patch_size=8,
                          out_indices=(1,), pretrained='x.pth')
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint='x.pth')
    with pytest.raises(ValueError, match=r'out_indices must be increasing block indices in \[0, 2\)'):
        ExtreMAViT(arch=dict(embed_dim=64, depth=2, num_heads=2), img_size=32, patch_size=8,
                   out_indices=(1, 2))
    backbone = ExtreMAViT(arch=dict(embed_dim=64, depth=2, num_heads=2), img_size=32, patch_size=8,
                          out_indices=(1,), use_rel_pos_bias=True)
    with pytest.raises(ValueError, match='Use slide inference'):
        backbone(torch.randn(1, 3, 40, 32))


def _build(config: str, **cfg_options):
    cfg = setup_config(osp.join(CONFIGS, config), cfg_options=cfg_options)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MMSEG_MODELS.build(cfg.model)
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    return cfg, model, optim_wrapper


def test_full_size_b_config_predicts_512_and_decays_per_block():
    cfg, model, optim_wrapper = _build('upernet_extrema_b.py')
    backbone = model.backbone
    assert (backbone.embed_dim, backbone.depth, backbone.grid_size) == (768, 12, (32, 32))
    assert backbone.pos_embed.shape == (1, 1024, 768)
    assert model.decode_head.num_classes == 150 and model.decode_head.channels == 768
    assert type(model.neck.upsample_4x[1]).__name__ == 'BatchNorm2d'  # SyncBN reverted on CPU

    base_lr = cfg.optim_wrapper.optimizer.lr
    names = dict(model.named_parameters())
    for group in optim_wrapper.optimizer.param_groups:
        for name in group['param_names']:
            assert group['lr'] == pytest.approx(base_lr * 0.65 ** (13 - layer_id(name, 12))), name
            excluded = names[name].ndim <= 1 or name.endswith(('pos_embed', 'relative_position_bias_table'))
            assert group['weight_decay'] == (0. if excluded else 0.05), name
    lrs = {name: group['lr'] for group in optim_wrapper.optimizer.param_groups for name in group['param_names']}
    assert lrs['backbone.blocks.11.attn.qkv.weight'] == pytest.approx(base_lr * 0.65)
    assert lrs['backbone.blocks.0.attn.qkv.weight'] == pytest.approx(base_lr * 0.65 ** 12)
    assert lrs['backbone.pos_embed'] == pytest.approx(base_lr * 0.65 ** 13)
    assert lrs['decode_head.fpn_bottleneck.conv.weight'] == pytest.approx(base_lr)

    model.eval()
    image = torch.randint(0, 256, (3, 512, 512), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=(512, 512), ori_shape=(512, 512)))
    with torch.no_grad():
        result = model.test_step(dict(inputs=[image], data_samples=[sample]))[0]
    assert result.pred_sem_seg.data.shape == (1, 512, 512)
    assert result.seg_logits.data.shape == (150, 512, 512)
    assert 0 <= int(result.pred_sem_seg.data.min()) and int(result.pred_sem_seg.data.max()) < 150


@pytest.mark.parametrize('config, width, depth', [
    ('upernet_extrema-s_8xb2-160k_ade20k-512x512.py', 384, 12),
    ('upernet_extrema-l_8xb2-160k_ade20k-512x512.py', 1024, 24),
])
def test_full_size_s_and_l_configs_build_and_run(config, width, depth):
    # Full widths and depths; the forward uses a 128 crop to keep the test short.
    crop = 128
    _, model, optim_wrapper = _build(config, **{
        'model.backbone.img_size': crop, 'model.test_cfg.crop_size': (crop, crop),
        'model.data_preprocessor.test_cfg.size': (crop, crop)})
    assert (model.backbone.embed_dim, model.backbone.depth) == (width, depth)
    assert max(group['layer_id'] for group in optim_wrapper.optimizer.param_groups) == depth + 1
    model.eval()
    image = torch.randint(0, 256, (3, crop, crop), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=(crop, crop), ori_shape=(crop, crop)))
    with torch.no_grad():
        result = model.test_step(dict(inputs=[image], data_samples=[sample]))[0]
    assert result.seg_logits.data.shape == (150, crop, crop)


def test_configs_without_a_released_checkpoint_fail_clearly(tmp_path):
    cfg = setup_config(osp.join(CONFIGS, 'upernet_extrema-s_8xb2-160k_ade20k-512x512.py'))
    assert cfg.model.pretrained is None
    with DefaultScope.overwrite_default_scope('mmseg'):
        backbone = MMSEG_MODELS.build(cfg.model).backbone
    with pytest.raises(ValueError, match=r'model.pretrained=PATH \(or model.backbone.init_cfg'):
        backbone.init_weights()
    backbone.init_cfg['checkpoint'] = str(tmp_path / 'not_downloaded.pth')
    with pytest.raises(FileNotFoundError, match='not_downloaded.pth'):
        backbone.init_weights()
