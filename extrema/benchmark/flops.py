"""Analytic FLOP counts of ExtreMA steps, as the official math requires.

Only matrix products count (2 FLOPs per multiply-add): linears, the patch
convolution and the two attention products (QK^T and AV). A backward pass
costs twice its forward (input and weight gradients), except the patch
embedding, whose input needs no gradient (weight gradient only). The student
embeds all N patches, as the official code does; any work an implementation
skips (masked patches, dropped paths) still counts, so skipping is a win.

``torch.utils.flop_counter.FlopCounterMode`` gives the same totals for a
step without drop-path; ``tests/test_benchmark.py`` checks that.
"""
from typing import Dict, Sequence

from ..models.masking import num_visible
from ..models.vit import resolve_arch


def linear_flops(rows: int, in_dim: int, out_dim: int) -> int:
    return 2 * rows * in_dim * out_dim


def attention_flops(num_seqs: int, q_len: int, kv_len: int, dim: int) -> int:
    """QK^T and AV over all heads: 2 * (2 * Lq * Lk * D) per sequence."""
    return 4 * num_seqs * q_len * kv_len * dim


def mlp_flops(rows: int, dims: Sequence[int]) -> int:
    """A chain of linears dims[0] -> dims[1] -> ... on ``rows`` rows."""
    return sum(linear_flops(rows, a, b) for a, b in zip(dims[:-1], dims[1:]))


def patch_embed_flops(num_images: int, num_patches: int, dim: int, patch_size: int,
                      in_chans: int = 3) -> int:
    return linear_flops(num_images * num_patches, in_chans * patch_size ** 2, dim)


def transformer_flops(num_seqs: int, seq_len: int, dim: int, depth: int, mlp_ratio: float = 4.) -> int:
    """Pre-norm self-attention blocks: fused qkv, proj, 2-layer MLP, attention."""
    hidden = int(dim * mlp_ratio)
    per_block = (linear_flops(num_seqs * seq_len, dim, 4 * dim)      # qkv + proj
                 + mlp_flops(num_seqs * seq_len, (dim, hidden, dim))
                 + attention_flops(num_seqs, seq_len, seq_len, dim))
    return depth * per_block


def class_attention_flops(num_seqs: int, num_tokens: int, dim: int, num_blocks: int,
                          mlp_ratio: float = 4.) -> int:
    """CaiT blocks: the cls query attends to [cls; tokens]; only the cls row is updated."""
    hidden = int(dim * mlp_ratio)
    keys = 1 + num_tokens
    per_block = (linear_flops(num_seqs, dim, dim)                    # q (cls only)
                 + linear_flops(num_seqs * keys, dim, 2 * dim)       # k, v
                 + attention_flops(num_seqs, 1, keys, dim)
                 + linear_flops(num_seqs, dim, dim)                  # proj
                 + mlp_flops(num_seqs, (dim, hidden, dim)))
    return num_blocks * per_block


def encoder_forward_flops(cfg: dict, num_images: int, num_views: int = 1,
                          tokens_per_view: int = None) -> Dict[str, int]:
    """One ExtreMA encoder branch: patch embedding (all N patches of every image),
    ``num_views`` sequences of ``tokens_per_view`` tokens per image through the
    trunk and the class-attention blocks, then the projector on each sequence."""
    arch = resolve_arch(cfg['arch'])
    dim, mlp_ratio = arch['embed_dim'], cfg.get('mlp_ratio', 4.)
    num_patches = (cfg['img_size'] // cfg['patch_size']) ** 2
    tokens = num_patches if tokens_per_view is None else tokens_per_view
    seqs = num_images * num_views
    hidden, proj = cfg.get('proj_hidden_dim', 4096), cfg.get('proj_dim', 256)
    return dict(
        patch_embed=patch_embed_flops(num_images, num_patches, dim, cfg['patch_size'],
                                      cfg.get('in_chans', 3)),
        trunk=transformer_flops(seqs, tokens, dim, arch['depth'], mlp_ratio),
        class_attention=class_attention_flops(seqs, tokens, dim, cfg.get('num_class_attn_blocks', 2),
                                              mlp_ratio),
        projector=mlp_flops(seqs, (dim, hidden, hidden, proj)),
    )


def training_flops(forward: Dict[str, int]) -> int:
    """Forward + backward of a trained branch: 3x forward, patch embedding 2x
    (its input needs no gradient)."""
    return 3 * sum(forward.values()) - forward['patch_embed']


def extrema_step_flops(cfg: dict, batch: int, teacher_passes: int = 1) -> Dict[str, int]:
    """FLOPs of one ExtreMA training step.

    cfg: ``ExtreMA.config`` (arch, img_size, patch_size, mask_ratio, num_masks, ...).
    teacher_passes: teacher forwards per step; 1 is ExtreMA (one target for all
    K masks), K is the naive teacher-per-mask variant.
    """
    num_patches = (cfg['img_size'] // cfg['patch_size']) ** 2
    views = cfg['num_masks']
    keep = num_visible(num_patches, cfg['mask_ratio'])
    student = encoder_forward_flops(cfg, batch, views, keep)
    proj, pred_hidden = cfg.get('proj_dim', 256), cfg.get('pred_hidden_dim', 4096)
    student['predictor'] = mlp_flops(batch * views, (proj, pred_hidden, proj))
    teacher = sum(encoder_forward_flops(cfg, batch).values()) * teacher_passes
    student_train = training_flops(student)
    return dict(student_forward=sum(student.values()), student_train=student_train,
                teacher_forward=teacher, total=student_train + teacher)


def vit_supervised_step_flops(arch, img_size: int, patch_size: int, batch: int,
                              num_classes: int = 1000, mlp_ratio: float = 4., in_chans: int = 3,
                              class_token: bool = True) -> Dict[str, int]:
    """A plain supervised ViT step on all tokens (timm ``VisionTransformer``,
    cls-token pooling and a linear classifier)."""
    arch = resolve_arch(arch)
    dim = arch['embed_dim']
    num_patches = (img_size // patch_size) ** 2
    forward = dict(
        patch_embed=patch_embed_flops(batch, num_patches, dim, patch_size, in_chans),
        trunk=transformer_flops(batch, num_patches + int(class_token), dim, arch['depth'], mlp_ratio),
        head=linear_flops(batch, dim, num_classes))
    train = training_flops(forward)
    return dict(forward=sum(forward.values()), total=train)


def vit_inference_flops(arch, img_size: int, patch_size: int, batch: int, mlp_ratio: float = 4.,
                        in_chans: int = 3, extra_tokens: int = 0) -> int:
    """Forward FLOPs of a ViT trunk (no head) on all patches plus ``extra_tokens``."""
    arch = resolve_arch(arch)
    dim = arch['embed_dim']
    num_patches = (img_size // patch_size) ** 2
    return (patch_embed_flops(batch, num_patches, dim, patch_size, in_chans)
            + transformer_flops(batch, num_patches + extra_tokens, dim, arch['depth'], mlp_ratio))
