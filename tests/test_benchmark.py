"""The benchmark's smallest mode runs and writes well-formed JSON; FLOP counts are exact."""
import importlib.util
import json
import os

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import extrema
from extrema.benchmark import flops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_benchmark_tool():
    spec = importlib.util.spec_from_file_location('benchmark_tool', os.path.join(ROOT, 'tools', 'benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_benchmark_writes_json(tmp_path):
    out = tmp_path / 'bench.json'
    load_benchmark_tool().main(['--smoke', '--sdpa-backends', 'math', '--out', str(out)])
    results = json.loads(out.read_text())
    assert {'environment', 'settings', 'pretrain_step', 'seg_step', 'backbone_inference', 'data'} <= set(results)
    variants = {row['variant'] for row in results['pretrain_step']}
    assert variants == {'extrema', 'extrema[sdpa=math]', 'k1', 'naive_teacher', 'supervised_vit', 'roofline'}
    for row in results['pretrain_step']:
        if row['variant'] != 'roofline':
            assert {'step_s', 'images_per_s', 'gflop_per_step', 'achieved_gflop_s', 'mfu_vs_roofline',
                    'peak_gib', 'time_vs_extrema'} <= set(row)
            assert row['step_s'] > 0 and row['peak_gib'] > 0
    attention = {row['backend']: row for row in results['attention']}
    assert set(attention) == {'default', 'math'}
    assert all(row['student_ms'] > 0 and row['teacher_ms'] > 0 for row in attention.values())
    seg = results['seg_step']
    assert 'skipped' in seg or {row['backbone'] for row in seg} == {'extremavit', 'mmseg_mae'}
    assert {row['model'] for row in results['backbone_inference']} >= {'timm_vit'}
    assert results['data']['per_worker_images_per_s'] > 0
    assert results['data']['device_views_images_per_s'] > 0


def test_official_flop_counts():
    """The figures the issue quotes for the official step (GFLOP per step)."""
    cfg = dict(arch='base', img_size=224, patch_size=16, mask_ratio=0.8, num_masks=5)
    assert round(flops.extrema_step_flops(cfg, 8)['total'] / 1e9) == 1124
    assert round(flops.extrema_step_flops(dict(cfg, arch='small'), 16)['total'] / 1e9) == 582


@pytest.mark.parametrize('teacher_passes', [1, 3])
def test_step_flops_match_flop_counter(tiny_extrema_kwargs, teacher_passes):
    """Analytic count == torch's FLOP counter on a real step (math attention, so
    that attention shows up as matmuls; no drop-path)."""
    from extrema.benchmark.steps import teacher_per_mask_loss
    torch.manual_seed(0)
    model = extrema.ExtreMA(**dict(tiny_extrema_kwargs, num_masks=3))
    views = [torch.randn(2, 3, 32, 32) for _ in range(2)]
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        if teacher_passes == 1:
            loss = model.loss(views)['loss']
        else:
            loss = teacher_per_mask_loss(model, views)['loss']
        loss.backward()
    expected = flops.extrema_step_flops(model.config, 2, teacher_passes=teacher_passes)['total']
    assert counter.get_total_flops() == expected


def test_supervised_flops_match_flop_counter():
    from timm.models.vision_transformer import VisionTransformer
    arch = dict(embed_dim=64, depth=2, num_heads=2)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=10)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        vit(torch.randn(2, 3, 32, 32)).sum().backward()
    assert counter.get_total_flops() == flops.vit_supervised_step_flops(arch, 32, 8, 2, num_classes=10)['total']


@pytest.mark.parametrize('drop_prob', [0.3, 1.0])
def test_drop_path_skipping_matches_timm(drop_prob):
    """Skipping the dropped samples' branches (CPU) gives timm DropPath's output and gradients."""
    from timm.layers import DropPath
    from extrema.models.vit import Block
    torch.manual_seed(0)
    block = Block(32, 2, drop_path=drop_prob).train()
    x = torch.randn(12, 5, 32, requires_grad=True)
    grad = torch.randn(12, 5, 32)
    torch.manual_seed(1)
    block(x).backward(grad)
    ours = [x.grad.clone()] + [p.grad.clone() for p in block.parameters()]
    x.grad = None
    block.zero_grad()
    drop = DropPath(drop_prob)
    torch.manual_seed(1)
    y = x + drop(block.attn(block.norm1(x)))
    out = y + drop(block.mlp(block.norm2(y)))
    out.backward(grad)
    torch.manual_seed(1)
    assert torch.allclose(block(x), out, atol=1e-6)
    for a, b in zip(ours, [x.grad] + [p.grad for p in block.parameters()]):
        assert torch.allclose(a, b, atol=1e-5)


def test_training_config_uses_fused_adamw():
    from extrema.engine.launch import setup_config
    cfg = setup_config(os.path.join(ROOT, 'pretrain/configs/extrema_vit-b-p16_mask08x5_8xb256-amp-300e_in1k.py'))
    assert cfg.optim_wrapper.optimizer.fused is True
    cfg = setup_config(os.path.join(ROOT, 'pretrain/configs/extrema_vit-b-p16_mask08x5_8xb256-amp-300e_in1k.py'),
                       cfg_options={'optim_wrapper.optimizer.foreach': True})
    assert 'fused' not in cfg.optim_wrapper.optimizer


@pytest.mark.parametrize('gelu', [False, True])
def test_onednn_linear_matches_f_linear(gelu):
    """The CPU linear (oneDNN forward and input gradient, MKL weight gradient) is F.linear."""
    from extrema.models.layers import linear
    torch.manual_seed(0)
    x = torch.randn(3, 7, 24).transpose(0, 1).requires_grad_()  # non-contiguous input
    weight = torch.randn(40, 24, requires_grad=True)
    bias = torch.randn(40, requires_grad=True)
    grad = torch.randn(3, 7, 40).transpose(0, 1)
    reference = F.linear(x, weight, bias)
    reference = F.gelu(reference) if gelu else reference
    reference.backward(grad)
    expected = [t.grad.clone() for t in (x, weight, bias)]
    for t in (x, weight, bias):
        t.grad = None
    out = linear(x, weight, bias, gelu=gelu)
    out.backward(grad)
    assert torch.allclose(out, reference, atol=1e-5)
    for t, e in zip((x, weight, bias), expected):
        assert torch.allclose(t.grad, e, atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(linear(x, weight, bias, gelu=gelu), reference, atol=1e-5)


def test_patch_embed_matmul_matches_the_convolution():
    """The matmul form of the patch embedding gives timm PatchEmbed's tokens and weight gradient."""
    from timm.layers import PatchEmbed

    from extrema.models.layers import patch_embed
    torch.manual_seed(0)
    conv = PatchEmbed(img_size=(32, 48), patch_size=8, in_chans=3, embed_dim=24)
    images = torch.randn(2, 3, 32, 48)
    grad = torch.randn(2, 24, 24)
    reference = conv(images)
    reference.backward(grad)
    expected = [p.grad.clone() for p in conv.proj.parameters()]
    conv.zero_grad()
    tokens = patch_embed(images, conv.proj)
    tokens.backward(grad)
    torch.testing.assert_close(tokens, reference, atol=1e-5, rtol=1e-5)
    for p, e in zip(conv.proj.parameters(), expected):
        torch.testing.assert_close(p.grad, e, atol=1e-4, rtol=1e-4)


def test_short_bf16_cpu_attention_takes_the_math_path_with_the_same_result():
    """Below 128 tokens, bf16 training attention on CPU goes through the math backend
    (its output and gradients equal the default kernel's to bf16 precision); inference,
    fp32 and long sequences keep the default."""
    from extrema.models.layers import attention, prefers_math_attention
    torch.manual_seed(0)
    qkv = torch.randn(3, 4, 6, 39, 32, dtype=torch.bfloat16, requires_grad=True)
    q, k, v = qkv.unbind(0)
    assert prefers_math_attention(q)
    with torch.no_grad():
        assert not prefers_math_attention(q)
    assert not prefers_math_attention(q.float())
    assert not prefers_math_attention(torch.randn(4, 6, 196, 32, dtype=torch.bfloat16, requires_grad=True))
    grad = torch.randn(4, 6, 39, 32, dtype=torch.bfloat16)
    out = attention(q, k, v)
    out.backward(grad)
    ours = qkv.grad.clone()
    qkv.grad = None
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        reference = F.scaled_dot_product_attention(q, k, v)
    reference.backward(grad)
    torch.testing.assert_close(out, reference, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(ours, qkv.grad, atol=3e-2, rtol=3e-2)


def test_compile_flag_sets_cfg_compile():
    from extrema.engine.launch import setup_config
    config = os.path.join(ROOT, 'pretrain/configs/extrema_vit-b-p16_mask08x5_8xb256-amp-300e_in1k.py')
    assert setup_config(config, compile=True).compile is True
    assert not setup_config(config).get('compile')
