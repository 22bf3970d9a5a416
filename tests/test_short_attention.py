"""The Triton short-sequence attention against SDPA: in Triton's interpreter on the CPU,
and compiled on a GPU where there is one."""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT
from extrema.models.short_attention import short_attention, short_attention_disabled, supports_short_attention
from extrema.models.vit import Block

needs_triton = pytest.mark.skipif(importlib.util.find_spec('triton') is None, reason='Triton is not installed')
needs_cuda_triton = pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec('triton') is None,
                                       reason='needs a CUDA GPU and Triton')


def sdpa_reference(qkv: torch.Tensor, num_heads: int, scale: float) -> torch.Tensor:
    batch, length, three_dim = qkv.shape
    q, k, v = qkv.view(batch, length, 3, num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    return F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2).reshape(batch, length, -1)


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.double() - reference).norm() / reference.norm()).item()


def compare_with_float64(length: int, num_heads: int, head_dim: int, dtype: torch.dtype, device: str):
    """(forward, qkv-gradient) relative errors of ``short_attention`` against SDPA in float64,
    on random inputs and a non-contiguous output gradient."""
    qkv = torch.randn(3, length, 3 * num_heads * head_dim, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(3, num_heads * head_dim, length, device=device, dtype=dtype).transpose(1, 2)
    out = short_attention(qkv, num_heads, head_dim ** -0.5)
    out.backward(grad)
    qkv64 = qkv.detach().double().requires_grad_()
    reference = sdpa_reference(qkv64, num_heads, head_dim ** -0.5)
    reference.backward(grad.double())
    return relative_error(out, reference), relative_error(qkv.grad, qkv64.grad)


INTERPRETER_CASES = [(1, 2, 16), (7, 3, 32), (19, 2, 64), (39, 2, 64), (64, 1, 16)]


@needs_triton
def test_short_attention_matches_sdpa_in_the_triton_interpreter():
    # TRITON_INTERPRET is read when the kernels are defined, so this runs in a fresh process.
    # The interpreter's bf16 dot is wrong (it reads bf16 as integers): fp32 and fp16 here, bf16 on the GPU.
    script = f"""
import torch
from extrema.models.short_attention import short_attention
from test_short_attention import compare_with_float64
torch.manual_seed(0)
for case in {INTERPRETER_CASES}:
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.float16, 2e-3)):
        errors = compare_with_float64(*case, dtype, 'cpu')
        assert max(errors) < tolerance, (case, dtype, errors)
        print(case, dtype, errors)
# Compiled by Inductor in one graph around the op (its fake kernel, the registered backward),
# which calls both ops as they are rather than re-compiling their kernels.
from torch._inductor.utils import run_and_get_code
qkv = torch.randn(4, 39, 3 * 64, requires_grad=True)
loss = lambda qkv: short_attention(torch.nn.functional.gelu(2 * qkv), 2, 32 ** -0.5).square().sum()
loss(qkv).backward()
eager = qkv.grad.clone()
qkv.grad = None
compiled = torch.compile(loss, fullgraph=True)
_, (forward_code, backward_code) = run_and_get_code(lambda: compiled(qkv).backward())
assert ((qkv.grad - eager).norm() / eager.norm()).item() < 1e-5
assert 'torch.ops.extrema.short_attention.default(' in forward_code, forward_code
assert 'torch.ops.extrema.short_attention_backward.default(' in backward_code, backward_code
print('compiled: equal, ops called as they are')
"""
    path = [ROOT, os.path.join(ROOT, 'tests'), os.environ.get('PYTHONPATH', '')]
    env = dict(os.environ, TRITON_INTERPRET='1', PYTHONPATH=os.pathsep.join(filter(None, path)))
    result = subprocess.run([sys.executable, '-c', script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count('torch.float') == 2 * len(INTERPRETER_CASES)
    assert 'compiled: equal, ops called as they are' in result.stdout


def test_attention_takes_sdpa_where_the_kernel_does_not_apply():
    qkv = torch.zeros(2, 39, 3 * 64, dtype=torch.bfloat16)
    assert not supports_short_attention(qkv, 2)  # on a CPU
    if torch.cuda.is_available():
        assert not supports_short_attention(qkv.cuda().float(), 2)  # fp32: SDPA, for exact parity
        assert not supports_short_attention(torch.zeros(2, 65, 3 * 64, device='cuda', dtype=torch.bfloat16), 2)
        assert not supports_short_attention(torch.zeros(2, 39, 3 * 96, device='cuda', dtype=torch.bfloat16), 2)
        with short_attention_disabled():
            assert not supports_short_attention(qkv.cuda(), 2)
        assert supports_short_attention(qkv.cuda(), 2)


@needs_cuda_triton
@pytest.mark.parametrize('length', [1, 19, 39, 49, 64])
def test_short_attention_matches_sdpa_on_the_gpu(length):
    torch.manual_seed(length)
    for num_heads, head_dim in ((6, 64), (12, 64), (4, 32)):
        for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 3e-3)):
            errors = compare_with_float64(length, num_heads, head_dim, dtype, 'cuda')
            assert max(errors) < tolerance, (length, num_heads, head_dim, dtype, errors)


@needs_cuda_triton
def test_block_with_short_attention_matches_sdpa_eager_and_compiled():
    """A ViT block under bf16 autocast: the Triton path (eager and Inductor-compiled, one
    graph) gives the SDPA path's output and parameter gradients to bf16 accuracy."""
    torch.manual_seed(0)
    block = Block(384, 6).cuda()
    x = torch.randn(64, 39, 384, device='cuda')

    def run(fn):
        block.zero_grad()
        with torch.autocast('cuda', dtype=torch.bfloat16):
            out = fn(x)
        out.float().square().mean().backward()
        return out.float(), [p.grad.clone() for p in block.parameters()]

    with short_attention_disabled():
        reference, reference_grads = run(block)
    for fn in (block, torch.compile(block, fullgraph=True)):
        out, grads = run(fn)
        assert relative_error(out, reference.double()) < 2e-2
        for grad, reference_grad in zip(grads, reference_grads):
            assert relative_error(grad, reference_grad.double()) < 5e-2
