"""Self-attention over short sequences in one Triton program per (sequence, head).

At 75-90% masking the student attends over 19-49 tokens per sequence. Flash-attention
kernels tile the queries in blocks of 64-128 rows and are built for long sequences;
here each program holds a whole (sequence, head) pair in registers. It reads q, k and
v straight from the fused qkv projection, laid out (B, L, 3 * C), and writes the output
as (B, L, C) for the output projection, so nothing is permuted or copied around it.
The backward recomputes the probabilities from the saved log-sum-exp, as flash
attention does, and writes the gradient in the qkv layout.

The kernels need Triton and a GPU; ``layers.self_attention`` falls back to
``F.scaled_dot_product_attention`` wherever ``supports_short_attention`` is false. On a
CPU they run in Triton's interpreter (``TRITON_INTERPRET=1``), which the tests use.
"""
import contextlib
from typing import Iterator, Tuple

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # torch without Triton: SDPA everywhere
    triton = None

MAX_LENGTH = 64  # covers the student at 75-90% masking (19-49 tokens); the teacher's 196 go to SDPA
HALF_DTYPES = (torch.bfloat16, torch.float16)
NUM_WARPS = dict(forward=4, backward=8)
_enabled = True


@contextlib.contextmanager
def short_attention_disabled() -> Iterator[None]:
    """Send every self-attention through ``F.scaled_dot_product_attention`` (for A/B timing)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def supports_short_attention(qkv: torch.Tensor, num_heads: int) -> bool:
    """Whether ``layers.self_attention`` sends this (B, L, 3 * C) qkv tensor to the Triton kernels:
    bf16/fp16 on CUDA, at most 64 tokens, a power-of-two head dim from 16 to 128."""
    head_dim = qkv.shape[-1] // (3 * num_heads)
    return (_enabled and triton is not None and qkv.is_cuda and qkv.dtype in HALF_DTYPES
            and qkv.shape[1] <= MAX_LENGTH and qkv.stride(-1) == 1
            and 16 <= head_dim <= 128 and head_dim & (head_dim - 1) == 0)


def short_attention(qkv: torch.Tensor, num_heads: int, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v per head, from qkv (B, L, 3 * C) to (B, L, C)."""
    return torch.ops.extrema.short_attention(qkv, num_heads, scale)[0]


if triton is not None:
    @triton.jit
    def _tile_offsets(seq, head, stride_seq, stride_row, BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr):
        rows = tl.arange(0, BLOCK)
        return seq * stride_seq + rows[:, None] * stride_row + head * HEAD_DIM + tl.arange(0, HEAD_DIM)[None, :]

    @triton.jit
    def _load_qkv(qkv, length, num_heads, stride_seq, stride_row, BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr):
        """This program's sequence and head, its valid rows, and its q, k, v tiles (padded rows zero)."""
        program = tl.program_id(0)
        seq, head = (program // num_heads).to(tl.int64), program % num_heads
        dim = num_heads * HEAD_DIM
        valid = tl.arange(0, BLOCK) < length
        tile = _tile_offsets(seq, head, stride_seq, stride_row, BLOCK, HEAD_DIM)
        q = tl.load(qkv + tile, mask=valid[:, None], other=0.)
        k = tl.load(qkv + tile + dim, mask=valid[:, None], other=0.)
        v = tl.load(qkv + tile + 2 * dim, mask=valid[:, None], other=0.)
        return seq, head, valid, q, k, v

    @triton.jit
    def _short_attention_forward_kernel(qkv, out, lse, length, num_heads, scale,
                                        stride_qkv_seq, stride_qkv_row, stride_out_seq, stride_out_row,
                                        BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr, PRECISION: tl.constexpr):
        seq, head, valid, q, k, v = _load_qkv(qkv, length, num_heads, stride_qkv_seq, stride_qkv_row,
                                              BLOCK, HEAD_DIM)
        logits = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        logits = tl.where(valid[None, :], logits, float('-inf'))
        row_max = tl.max(logits, 1)
        weights = tl.exp(logits - row_max[:, None])
        row_sum = tl.sum(weights, 1)
        o = tl.dot(weights.to(v.dtype), v, input_precision=PRECISION) / row_sum[:, None]

        out_tile = _tile_offsets(seq, head, stride_out_seq, stride_out_row, BLOCK, HEAD_DIM)
        tl.store(out + out_tile, o.to(out.dtype.element_ty), mask=valid[:, None])
        tl.store(lse + tl.program_id(0) * BLOCK + tl.arange(0, BLOCK), row_max + tl.log(row_sum))

    @triton.jit
    def _short_attention_backward_kernel(qkv, out, grad_out, lse, grad_qkv, length, num_heads, scale,
                                         stride_qkv_seq, stride_qkv_row, stride_out_seq, stride_out_row,
                                         stride_grad_out_seq, stride_grad_out_row,
                                         BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr, PRECISION: tl.constexpr):
        seq, head, valid, q, k, v = _load_qkv(qkv, length, num_heads, stride_qkv_seq, stride_qkv_row,
                                              BLOCK, HEAD_DIM)
        o = tl.load(out + _tile_offsets(seq, head, stride_out_seq, stride_out_row, BLOCK, HEAD_DIM),
                    mask=valid[:, None], other=0.)
        do = tl.load(grad_out + _tile_offsets(seq, head, stride_grad_out_seq, stride_grad_out_row,
                                              BLOCK, HEAD_DIM), mask=valid[:, None], other=0.)
        row_lse = tl.load(lse + tl.program_id(0) * BLOCK + tl.arange(0, BLOCK))

        # Padded query rows have do = o = 0, so they add nothing to dk and dv.
        logits = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        weights = tl.where(valid[None, :], tl.exp(logits - row_lse[:, None]), 0.)
        grad_v = tl.dot(tl.trans(weights.to(do.dtype)), do, input_precision=PRECISION)
        grad_weights = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        row_dot = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
        grad_logits = (weights * (grad_weights - row_dot[:, None]) * scale).to(q.dtype)
        grad_q = tl.dot(grad_logits, k, input_precision=PRECISION)
        grad_k = tl.dot(tl.trans(grad_logits), q, input_precision=PRECISION)

        dtype, dim = grad_qkv.dtype.element_ty, num_heads * HEAD_DIM
        grad_tile = _tile_offsets(seq, head, stride_qkv_seq, stride_qkv_row, BLOCK, HEAD_DIM)
        tl.store(grad_qkv + grad_tile, grad_q.to(dtype), mask=valid[:, None])
        tl.store(grad_qkv + grad_tile + dim, grad_k.to(dtype), mask=valid[:, None])
        tl.store(grad_qkv + grad_tile + 2 * dim, grad_v.to(dtype), mask=valid[:, None])

    def _block(length: int) -> int:
        return max(16, triton.next_power_of_2(length))

    def _launch_config(qkv: torch.Tensor, num_heads: int, kernel: str) -> dict:
        length, head_dim = qkv.shape[1], qkv.shape[2] // (3 * num_heads)
        if qkv.stride(-1) != 1:
            raise ValueError('short_attention needs qkv with a contiguous last dimension')
        return dict(BLOCK=_block(length), HEAD_DIM=head_dim,
                    PRECISION='ieee' if qkv.dtype == torch.float32 else 'tf32', num_warps=NUM_WARPS[kernel])

    # Opaque custom ops rather than triton_op, whose kernel Inductor re-compiles into a slower one
    # inside the compiled step (docs/benchmark.md; cf. pytorch/ao#2898).
    @torch.library.custom_op('extrema::short_attention', mutates_args=())
    def _short_attention(qkv: torch.Tensor, num_heads: int, scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
        batch, length, three_dim = qkv.shape
        config = _launch_config(qkv, num_heads, 'forward')
        out = qkv.new_empty(batch, length, three_dim // 3)
        lse = qkv.new_empty(batch * num_heads, config['BLOCK'], dtype=torch.float32)
        _short_attention_forward_kernel[(batch * num_heads,)](
            qkv, out, lse, length, num_heads, scale, qkv.stride(0), qkv.stride(1),
            out.stride(0), out.stride(1), **config)
        return out, lse

    @_short_attention.register_fake
    def _(qkv, num_heads, scale):
        batch, length, three_dim = qkv.shape
        return (qkv.new_empty(batch, length, three_dim // 3),
                qkv.new_empty(batch * num_heads, _block(length), dtype=torch.float32))

    @torch.library.custom_op('extrema::short_attention_backward', mutates_args=())
    def _short_attention_backward(qkv: torch.Tensor, out: torch.Tensor, grad_out: torch.Tensor,
                                  lse: torch.Tensor, num_heads: int, scale: float) -> torch.Tensor:
        batch, length, _ = qkv.shape
        grad_qkv = torch.empty_like(qkv)
        _short_attention_backward_kernel[(batch * num_heads,)](
            qkv, out, grad_out, lse, grad_qkv, length, num_heads, scale,
            qkv.stride(0), qkv.stride(1), out.stride(0), out.stride(1),
            grad_out.stride(0), grad_out.stride(1), **_launch_config(qkv, num_heads, 'backward'))
        return grad_qkv

    @_short_attention_backward.register_fake
    def _(qkv, out, grad_out, lse, num_heads, scale):
        return torch.empty_like(qkv)

    def _setup_context(ctx, inputs, output):
        qkv, ctx.num_heads, ctx.scale = inputs
        out, lse = output
        ctx.save_for_backward(qkv, out, lse)
        ctx.mark_non_differentiable(lse)

    def _backward(ctx, grad_out, _grad_lse):
        qkv, out, lse = ctx.saved_tensors
        grad_out = grad_out if grad_out.stride(-1) == 1 else grad_out.contiguous()
        return _short_attention_backward(qkv, out, grad_out, lse, ctx.num_heads, ctx.scale), None, None

    _short_attention.register_autograd(_backward, setup_context=_setup_context)
