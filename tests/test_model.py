"""The ExtreMA model against the official implementation's math (spec §1)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import extrema
from extrema.checkpoint import load_pretrained
from extrema.engine.hooks import cosine_momentum
from extrema.models import ExtreMA, count_parameters, num_visible, sample_masks, sincos_pos_embed_2d
from extrema.models.extrema import byol_loss, infonce_loss


# ---------------------------------------------------------------------------------------------
# An independent re-statement of the official forward (vits.py / lib/builder.py) in plain ops,
# reading an official-format state dict. Used as the reference for parity.
def _ln(x, state, key, eps):
    return F.layer_norm(x, x.shape[-1:], state[f'{key}.weight'], state[f'{key}.bias'], eps)


def _linear(x, state, key):
    return F.linear(x, state[f'{key}.weight'], state[f'{key}.bias'])


def _heads(x, heads):
    batch, length, dim = x.shape
    return x.reshape(batch, length, heads, dim // heads).permute(0, 2, 1, 3)


def official_encoder(state, prefix, x, masks, heads, depth, num_ca, proj_layers=3):
    s = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    patch = s['patch_embed.proj.weight'].shape[-1]
    x = F.conv2d(x, s['patch_embed.proj.weight'], s['patch_embed.proj.bias'], stride=patch)
    x = x.flatten(2).transpose(1, 2) + s['pos_embed']
    if masks is not None:
        x = torch.cat([torch.gather(x, 1, m.view(x.shape[0], -1, 1).repeat(1, 1, x.shape[2])) for m in masks])
    cls = s['cls_token'].expand(x.shape[0], -1, -1)
    for i in range(depth):
        b = f'blocks.{i}'
        h = _ln(x, s, f'{b}.norm1', 1e-6)
        batch, length, dim = h.shape
        qkv = _linear(h, s, f'{b}.attn.qkv').reshape(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        attn = ((qkv[0] @ qkv[1].transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(-1)
        x = x + _linear((attn @ qkv[2]).transpose(1, 2).reshape(batch, length, dim), s, f'{b}.attn.proj')
        h = _ln(x, s, f'{b}.norm2', 1e-6)
        x = x + _linear(F.gelu(_linear(h, s, f'{b}.mlp.fc1')), s, f'{b}.mlp.fc2')
    for j in range(num_ca):
        b = f'blocks_token.{j}'
        u = _ln(torch.cat([cls, x], 1), s, f'{b}.norm1', 1e-6)
        dim = u.shape[-1]
        q = _heads(_linear(u[:, :1], s, f'{b}.attn.q'), heads) * (dim // heads) ** -0.5
        k, v = _heads(_linear(u, s, f'{b}.attn.k'), heads), _heads(_linear(u, s, f'{b}.attn.v'), heads)
        out = ((q @ k.transpose(-2, -1)).softmax(-1) @ v).transpose(1, 2).reshape(cls.shape)
        cls = cls + s[f'{b}.gamma_1'] * _linear(out, s, f'{b}.attn.proj')
        h = _ln(cls, s, f'{b}.norm2', 1e-6)
        cls = cls + s[f'{b}.gamma_2'] * _linear(F.gelu(_linear(h, s, f'{b}.mlp.fc1')), s, f'{b}.mlp.fc2')
    out = _ln(torch.cat([cls, x], 1), s, 'norm', 1e-6)[:, 0]
    for i in range(proj_layers):
        out = _linear(out, s, f'head.{3 * i}')
        if i < proj_layers - 1:
            out = F.gelu(_ln(out, s, f'head.{3 * i + 1}', 1e-5))
    return out


def official_loss(state, x1, x2, masks, heads, depth, num_ca):
    q = official_encoder(state, 'module.base_encoder.', x1, masks, heads, depth, num_ca)
    q = _linear(F.gelu(_ln(_linear(q, state, 'module.predictor.0'), state, 'module.predictor.1', 1e-5)),
                state, 'module.predictor.3')
    k = official_encoder(state, 'module.momentum_encoder.', x2, None, heads, depth, num_ca)
    k = F.normalize(k, dim=1)
    return sum(((F.normalize(qi, dim=1) - k) ** 2).sum(-1).mean() for qi in q.chunk(len(masks))) / len(masks)


def to_official(model):
    """The released layout, which calls the encoder's projector ``head``."""
    state = {}
    for key, value in model.state_dict().items():
        for ours, theirs in (('student.', 'module.base_encoder.'), ('teacher.', 'module.momentum_encoder.'),
                             ('predictor.', 'module.predictor.')):
            if key.startswith(ours):
                key = key[len(ours):]
                state[theirs + ('head.' + key[len('projector.'):] if key.startswith('projector.') else key)] = \
                    value.clone()
    return {'state_dict': state, 'epoch': 300, 'arch': 'vit_tiny', 'optimizer': {}, 'scaler': {}}


@pytest.fixture
def official_checkpoint(tmp_path, tiny_extrema):
    """An official-format file with non-trivial norms, LayerScale and a teacher that differs."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in tiny_extrema.named_parameters():
            if 'norm' in name or 'gamma' in name or name.startswith('predictor.1') or '.projector.1' in name:
                param.add_(torch.randn_like(param) * 0.1)
        for param in tiny_extrema.teacher.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    path = tmp_path / 'official.pth.tar'
    torch.save(to_official(tiny_extrema), path)
    return path, to_official(tiny_extrema)['state_dict']


# ---------------------------------------------------------------------------------------------
def test_vit_base_parameter_counts():
    model = ExtreMA('base', mask_ratio=0.8, num_masks=5)
    assert count_parameters(model.student.blocks[0]) == 7_087_872
    assert count_parameters(model.student.blocks_token[0]) == 7_089_408
    assert count_parameters(model.student.projector) == 20_996_352
    assert count_parameters(model.predictor) == 2_109_696
    assert count_parameters(model.student.patch_embed) == 590_592
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert abs(trainable - 122.9e6) < 0.05e6
    assert all(not p.requires_grad for p in model.teacher.parameters())
    assert model.student.pos_embed.shape == (1, 196, 768)
    assert not any(n.endswith('pos_embed') for n, _ in model.named_parameters())  # fixed, not learned


def test_sincos_layout_matches_spec():
    dim, grid = 32, 14
    table = sincos_pos_embed_2d(dim, (grid, grid))[0].double()
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4))
    for row, col in [(0, 0), (3, 11), (13, 2)]:
        n = grid * row + col
        expected = np.concatenate([np.sin(col * omega), np.cos(col * omega),
                                   np.sin(row * omega), np.cos(row * omega)])
        np.testing.assert_allclose(table[n].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize('ratio,expected', [(0.75, 49), (0.8, 39), (0.85, 29), (0.9, 19), (0.95, 9)])
def test_visible_token_counts(ratio, expected):
    assert num_visible(196, ratio) == expected


def test_masks_are_disjoint_and_sized():
    torch.manual_seed(0)
    ids = sample_masks(batch=6, num_tokens=196, mask_ratio=0.8, num_masks=5)
    assert ids.shape == (5, 6, 39) and ids.dtype == torch.long
    for b in range(6):
        flat = ids[:, b].reshape(-1)
        assert flat.unique().numel() == 5 * 39  # disjoint across the K views
        assert flat.min() >= 0 and flat.max() < 196
    assert not torch.equal(ids[:, 0], ids[:, 1])  # drawn per image
    overlapping = sample_masks(6, 196, 0.9, 12, disjoint=False)
    assert overlapping.shape == (12, 6, 19)
    assert all(overlapping[k, b].unique().numel() == 19 for k in range(12) for b in range(6))


@pytest.mark.parametrize('ratio,masks,message', [(1.0, 1, 'mask_ratio'), (-0.1, 1, 'mask_ratio'),
                                                 (0.8, 6, 'disjoint masks'), (0.8, 0, 'num_masks')])
def test_bad_mask_config_fails_at_construction(ratio, masks, message):
    with pytest.raises(ValueError, match=message):
        ExtreMA(arch=dict(embed_dim=32, depth=1, num_heads=2), img_size=224, mask_ratio=ratio, num_masks=masks)


def test_bad_image_size_is_rejected(tiny_extrema):
    with pytest.raises(ValueError, match='not divisible by the patch size'):
        tiny_extrema.forward_features(torch.randn(1, 3, 36, 32))
    with pytest.raises(ValueError, match='not divisible'):
        ExtreMA(arch=dict(embed_dim=32, depth=1, num_heads=2), img_size=30, patch_size=8)


def test_any_image_size_resizes_positions(tiny_extrema):
    out = tiny_extrema.forward_features(torch.randn(2, 3, 48, 64), 'teacher')
    assert out['tokens'][-1].shape == (2, 6 * 8, 64)
    same = tiny_extrema.forward_features(torch.randn(2, 3, 32, 32), 'teacher')
    assert same['tokens'][-1].shape == (2, 16, 64)


def test_forward_features_keys_and_mask_major_rows(tiny_extrema):
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    ids = sample_masks(3, 16, 0.75, 4)
    out = tiny_extrema.forward_features(x, 'student', ids)
    assert set(out) == {'tokens', 'cls', 'instance', 'projection', 'prediction'}
    assert len(out['tokens']) == 2 and out['tokens'][-1].shape == (12, 4, 64)
    assert out['prediction'].shape == (12, 32)
    for k in range(4):
        for b in range(3):
            alone = tiny_extrema.forward_features(x[b:b + 1], 'student', ids[k:k + 1, b:b + 1])
            torch.testing.assert_close(out['projection'][k * 3 + b], alone['projection'][0], atol=1e-5, rtol=1e-5)
    teacher = tiny_extrema.forward_features(x, 'teacher')
    assert 'prediction' not in teacher and teacher['projection'].shape == (3, 32)
    torch.testing.assert_close(teacher['instance'], F.layer_norm(teacher['cls'], (64,), tiny_extrema.teacher.norm.weight,
                                                                 tiny_extrema.teacher.norm.bias, 1e-6))


def test_loss_is_two_minus_two_cosine_by_hand():
    torch.manual_seed(0)
    prediction, target = torch.randn(10, 8), torch.randn(5, 8)
    expected = np.mean([2 - 2 * np.dot(p, t) / np.linalg.norm(p) / np.linalg.norm(t)
                        for k in range(2) for p, t in zip(prediction[5 * k:5 * k + 5].numpy(), target.numpy())])
    assert byol_loss(prediction, target).item() == pytest.approx(expected, abs=1e-6)
    assert byol_loss(target.repeat(3, 1), target).item() == pytest.approx(0, abs=1e-6)


def test_infonce_matches_cross_entropy_by_hand():
    torch.manual_seed(0)
    prediction, target, temperature = torch.randn(6, 8), torch.randn(3, 8), 0.2
    q, k = F.normalize(prediction, dim=1), F.normalize(target, dim=1)
    logits = (q @ k.t() / temperature).numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -np.mean([log_softmax[i, i % 3] for i in range(6)]) * 2 * temperature
    assert infonce_loss(prediction, target, temperature).item() == pytest.approx(expected, abs=1e-5)


def test_teacher_gets_no_gradient_and_trunk_gets_one(tiny_extrema):
    tiny_extrema.train()
    loss = tiny_extrema.loss([torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)])['loss']
    loss.backward()
    assert all(p.grad is None for p in tiny_extrema.teacher.parameters())
    student_grads = {n: p.grad for n, p in tiny_extrema.student.named_parameters()}
    assert all(g is not None for g in student_grads.values())
    # class attention reads the patch tokens without detaching them
    assert student_grads['blocks.0.attn.qkv.weight'].abs().sum() > 0
    assert all(p.grad is not None for p in tiny_extrema.predictor.parameters())


def test_teacher_starts_as_student_copy_and_loss_leaves_it(tiny_extrema):
    teacher = {k: v.clone() for k, v in tiny_extrema.teacher.state_dict().items()}
    for key, value in tiny_extrema.student.state_dict().items():
        torch.testing.assert_close(teacher[key], value, rtol=0, atol=0)
    tiny_extrema.loss([torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)])
    for key, value in tiny_extrema.teacher.state_dict().items():
        assert torch.equal(teacher[key], value)


def test_momentum_update_covers_projector_not_predictor(tiny_extrema):
    with torch.no_grad():
        for p in tiny_extrema.student.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in tiny_extrema.teacher.named_parameters()}
    student = dict(tiny_extrema.student.named_parameters())
    predictor = [p.clone() for p in tiny_extrema.predictor.parameters()]
    tiny_extrema.momentum_update(0.9)
    for name, param in tiny_extrema.teacher.named_parameters():
        torch.testing.assert_close(param, 0.9 * before[name] + 0.1 * student[name])
    assert any(n.startswith('projector.') for n in before)
    assert all(torch.equal(a, b) for a, b in zip(predictor, tiny_extrema.predictor.parameters()))


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 100) == pytest.approx(0.996)
    assert cosine_momentum(50, 100) == pytest.approx(0.998)
    assert cosine_momentum(100, 100) == pytest.approx(1.0)
    t = 37
    assert cosine_momentum(t, 100) == pytest.approx(1 - 0.004 * (1 + math.cos(math.pi * t / 100)) / 2)
    values = [cosine_momentum(i, 100) for i in range(101)]
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_load_official_checkpoint_matches_reference(official_checkpoint):
    path, state = official_checkpoint
    model = load_pretrained(str(path), strict=True, num_heads=2)
    assert not model.training
    torch.manual_seed(3)
    x1, x2 = torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32)
    ids = sample_masks(3, 16, 0.75, 4)
    with torch.no_grad():
        ours = model.forward_features(x1, 'student', ids)['projection']
        theirs = official_encoder(state, 'module.base_encoder.', x1, list(ids), 2, 2, 2)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
        ours_t = model.forward_features(x2, 'teacher')['projection']
        theirs_t = official_encoder(state, 'module.momentum_encoder.', x2, None, 2, 2, 2)
        torch.testing.assert_close(ours_t, theirs_t, atol=1e-5, rtol=1e-5)
        loss = model.loss([x1, x2], None, ids_keep=ids)['loss']
        assert loss.item() == pytest.approx(official_loss(state, x1, x2, list(ids), 2, 2, 2).item(), abs=1e-5)
    model.momentum_update(0.99)
    for key, value in model.teacher.named_parameters():
        key = 'head.' + key[len('projector.'):] if key.startswith('projector.') else key  # the official name
        expected = state[f'module.momentum_encoder.{key}'] * 0.99 + state[f'module.base_encoder.{key}'] * 0.01
        torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-6)


def test_load_pretrained_reports_and_strict_fails(tmp_path, official_checkpoint, capsys):
    _, state = official_checkpoint
    state = dict(state, **{'module.extra_thing': torch.zeros(1)})
    del state['module.predictor.3.bias']
    path = tmp_path / 'broken.pth'
    torch.save({'state_dict': state}, path)
    model = load_pretrained(str(path))
    assert model is not None
    with pytest.raises(KeyError, match='Strict load'):
        load_pretrained(str(path), strict=True)


def test_architecture_mismatch_names_both_shapes(tmp_path, tiny_extrema):
    path = tmp_path / 'ours.pth'
    torch.save({'state_dict': tiny_extrema.state_dict(), 'meta': {'extrema_config': dict(tiny_extrema.config)}}, path)
    with pytest.raises(ValueError, match=r'checkpoint \(64,.*vs model \(96,'):
        load_pretrained(str(path), arch=dict(embed_dim=96, depth=2, num_heads=2))


def test_corrupt_or_foreign_checkpoint_errors(tmp_path):
    truncated = tmp_path / 'truncated.pth'
    torch.save({'state_dict': {'a': torch.zeros(100)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:50])
    with pytest.raises(RuntimeError, match='truncated'):
        load_pretrained(str(truncated))
    with pytest.raises(FileNotFoundError):
        load_pretrained(str(tmp_path / 'missing.pth'))
    foreign = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(1)}}, foreign)
    with pytest.raises(ValueError, match='Unrecognised checkpoint'):
        load_pretrained(str(foreign))


def test_public_api_is_exported():
    assert extrema.load_pretrained is load_pretrained
    assert extrema.ExtreMA is ExtreMA


def test_head_count_comes_from_official_arch_name():
    from extrema.checkpoint import infer_encoder_config
    shapes = {'patch_embed.proj.weight': (384, 3, 16, 16), 'pos_embed': (1, 196, 384),
              'blocks.0.mlp.fc1.weight': (1536, 384), 'blocks.11.norm1.weight': (384,),
              'blocks_token.1.gamma_1': (384,)}
    state = {k: torch.zeros(v) for k, v in shapes.items()}
    config = infer_encoder_config(state, 'vit_small')
    assert config['arch'] == dict(embed_dim=384, depth=12, num_heads=6)
    assert (config['img_size'], config['patch_size'], config['mlp_ratio']) == (224, 16, 4.0)
    assert config['num_class_attn_blocks'] == 2
    assert infer_encoder_config(state)['arch']['num_heads'] == 6  # 64-d heads


def test_builds_inside_another_default_scope():
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = ExtreMA(arch=dict(embed_dim=32, depth=1, num_heads=2), img_size=32, patch_size=8, num_masks=1)
    assert type(model.data_preprocessor).__name__ == 'TwoViewDataPreprocessor'


def test_files_naming_the_projector_head_load_and_classifier_heads_stay(tiny_extrema, tiny_extrema_kwargs, tmp_path):
    """The official code, and our files written before the rename, call the encoder's projector
    ``head``: they load into ``projector`` through torch's and mmengine's loaders alike. An encoder
    without a projector (the timm model) keeps ``head`` for its classifier."""
    from mmengine.runner.checkpoint import load_checkpoint

    from extrema.models.timm_models import ExtreMATimmViT
    older = {k.replace('student.projector.', 'student.head.').replace('teacher.projector.', 'teacher.head.'): v
             for k, v in tiny_extrema.state_dict().items()}
    assert any(k.startswith('student.head.') for k in older) and not any('projector' in k for k in older)
    fresh = ExtreMA(**tiny_extrema_kwargs)
    fresh.load_state_dict(older, strict=True)
    path = str(tmp_path / 'older.pth')
    torch.save(dict(state_dict=older, meta=dict(extrema_config=tiny_extrema.config)), path)
    resumed = ExtreMA(**tiny_extrema_kwargs)
    load_checkpoint(resumed, path, strict=True)  # the --resume / load_from path
    for model in (fresh, resumed):
        for key, value in tiny_extrema.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key

    timm_model = ExtreMATimmViT(img_size=32, patch_size=8, num_classes=5, embed_dim=64, depth=2, num_heads=2)
    other = ExtreMATimmViT(img_size=32, patch_size=8, num_classes=5, embed_dim=64, depth=2, num_heads=2)
    other.load_state_dict(timm_model.state_dict(), strict=True)
    assert torch.equal(other.head.weight, timm_model.head.weight)

