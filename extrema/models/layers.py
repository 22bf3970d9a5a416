"""Layers on the ViT's hot path that run faster than their timm/torch originals.

* ``linear`` / ``Linear`` / ``Mlp``: on CPU in eager fp32, oneDNN's GEMM with the bias
  (and GELU) fused, which beats MKL's unfused one (docs/benchmark.md); elsewhere,
  and under torch.compile or a dispatch mode such as the FLOP counter, ``F.linear``.
  ``Mlp`` keeps timm's parameter names (``fc1``, ``fc2``).
* ``residual``: ``x + DropPath(branch(x))`` with timm's draws; on CPU the branch runs
  only on the kept samples.
* ``patch_embed``: the non-overlapping patch convolution as one matmul. cuDNN runs a
  16x16 stride-16 convolution as an implicit GEMM far below the matmul roofline
  (docs/benchmark.md); on CPU the two take the same time.
* ``attention``: ``F.scaled_dot_product_attention``; in bf16 on CPU, when a gradient is
  needed and the sequence is short, through the math backend, because torch's CPU
  flash kernel has a slower bf16 backward there than the math path (docs/benchmark.md,
  "bf16 on the CPU").
* ``self_attention``: from the fused qkv projection; the student's short sequences go to
  the Triton kernel of ``short_attention`` on CUDA, everything else to ``attention``.

Each is checked against its original in tests/test_benchmark.py.
"""
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .short_attention import short_attention, supports_short_attention


def _has_onednn_linear() -> bool:
    try:
        torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return False
    return torch.backends.mkldnn.is_available()


ONEDNN_LINEAR = _has_onednn_linear()


def use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Eager fp32 on CPU: oneDNN's GEMM, with the bias (and GELU) fused (faster than
    MKL's, docs/benchmark.md). Elsewhere, and under a dispatch mode such as torch's
    FLOP counter, F.linear."""
    return (ONEDNN_LINEAR and x.device.type == 'cpu' and x.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled('cpu') and not torch.compiler.is_compiling()
            and _get_current_dispatch_mode() is None)


def _onednn_linear(x, weight, bias, activation='none'):
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation,
                                               [], 'none' if activation == 'gelu' else '')


class _OneDNNLinear(torch.autograd.Function):
    """x W^T + b; the input gradient through oneDNN, the weight gradient through MKL
    (the faster library for each of the two products, docs/benchmark.md)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_linear(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_linear(grad, weight.t(), None)
        grad = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_weight = grad.t().mm(x.reshape(-1, x.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           gelu: bool = False) -> torch.Tensor:
    """``F.linear``, followed by exact GELU when ``gelu``; oneDNN on CPU (``use_onednn``)."""
    if not use_onednn(x, weight):
        out = F.linear(x, weight, bias)
        return F.gelu(out) if gelu else out
    if not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in (x, weight, bias)):
        return _onednn_linear(x, weight, bias, 'gelu' if gelu else 'none')
    out = _OneDNNLinear.apply(x, weight, bias)
    return F.gelu(out) if gelu else out


def patch_embed(x: torch.Tensor, proj: nn.Conv2d) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, D): ``proj`` (kernel = stride, no padding) applied as a matmul
    over the flattened (C, ph, pw) patches, in row-major patch order."""
    batch, channels, height, width = x.shape
    ph, pw = proj.kernel_size
    patches = x.reshape(batch, channels, height // ph, ph, width // pw, pw).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(batch, -1, channels * ph * pw)
    return linear(patches, proj.weight.reshape(proj.out_channels, -1), proj.bias)


MATH_ATTENTION_MAX_TOKENS = 128  # bf16 on CPU, forward + backward: flash is slower below this


def prefers_math_attention(q: torch.Tensor) -> bool:
    """Eager bf16 on CPU with a gradient to compute and fewer than 128 query tokens."""
    return (q.device.type == 'cpu' and q.dtype == torch.bfloat16 and q.requires_grad
            and torch.is_grad_enabled() and q.shape[-2] < MATH_ATTENTION_MAX_TOKENS
            and not torch.compiler.is_compiling())


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
              dropout_p: float = 0.) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` on (B, heads, L, head_dim); the math backend
    where ``prefers_math_attention``."""
    if prefers_math_attention(q):
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


def split_heads(qkv: torch.Tensor, num_heads: int):
    """The fused projection's (B, L, 3 * C) output -> q, k, v views, each (B, heads, L, head_dim)."""
    batch, length, three_dim = qkv.shape
    qkv = qkv.view(batch, length, 3, num_heads, three_dim // (3 * num_heads))
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


def self_attention(qkv: torch.Tensor, num_heads: int, attn_mask: Optional[torch.Tensor] = None,
                   dropout_p: float = 0.) -> torch.Tensor:
    """Multi-head attention (scale head_dim^-0.5) from the fused projection's (B, L, 3 * C)
    output to (B, L, C): the Triton kernel where ``supports_short_attention`` and there is
    no mask or dropout, else ``attention`` on the split heads."""
    if attn_mask is None and dropout_p == 0 and supports_short_attention(qkv, num_heads):
        return short_attention(qkv, num_heads, (qkv.shape[-1] // (3 * num_heads)) ** -0.5)
    q, k, v = split_heads(qkv, num_heads)
    out = attention(q, k, v, attn_mask=None if attn_mask is None else attn_mask.to(q.dtype), dropout_p=dropout_p)
    return out.transpose(1, 2).flatten(2)


class Linear(nn.Linear):
    """``nn.Linear`` through ``linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2, with timm's parameter names; GELU fused into fc1 without autograd."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim)
        self.fc2 = Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(linear(x, self.fc1.weight, self.fc1.bias, gelu=True))


def residual(x: torch.Tensor, branch: Callable[[torch.Tensor], torch.Tensor], drop_prob: float,
             training: bool) -> torch.Tensor:
    """x + DropPath(branch(x)), with timm DropPath's per-sample mask and random draws.

    On CPU the branch runs only on the samples it keeps (a dropped sample's
    branch would be multiplied by zero), which gives the same output. On GPU or
    under torch.compile the data-dependent row count would cost a sync, so
    every sample runs there.
    """
    if not training or drop_prob == 0.:
        return x + branch(x)
    keep_prob = 1 - drop_prob
    scale = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
    if keep_prob > 0:
        scale.div_(keep_prob)
    if x.device.type != 'cpu' or torch.compiler.is_compiling():
        return torch.addcmul(x, branch(x), scale)
    kept = scale.view(-1).nonzero().view(-1)
    if len(kept) in (0, len(x)):  # none kept: still run it, so every parameter gets a gradient
        return torch.addcmul(x, branch(x), scale)
    return x.index_add(0, kept, branch(x.index_select(0, kept)) * scale.index_select(0, kept))
