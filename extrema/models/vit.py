"""The ExtreMA vision transformer.

A plain pre-norm ViT with no [cls] token in the self-attention trunk and a fixed
2D sin-cos positional embedding, followed (for the instance branch) by CaiT-style
class-attention blocks, a final LayerNorm and the projector MLP. Parameter names
match the official checkpoints (``patch_embed.proj``, ``blocks.i.attn.qkv``,
``blocks_token.j.gamma_1``, ``norm``), except the projector: ``projector.k`` here,
``head.k`` there, because ``head`` is the classifier of the fine-tuning and timm models.
Official files (and ours written before the rename) load unchanged
(``rename_legacy_projector``).

Shapes: B images, N = gh*gw patch tokens, L visible tokens per view, K views.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

from functools import partial

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import PatchEmbed, to_2tuple
from timm.models.cait import LayerScaleBlockClassAttn

from .layer_depth import layer_id
from .layers import Linear, Mlp, patch_embed, residual, self_attention, split_heads

# 'deit-tiny' is the standard ViT-Ti/16 (DeiT-Ti; mmpretrain's name). The toolkit's CPU configs
# ('tiny' in their file names) are 192-d too but 6 blocks deep, and spell their arch as a dict.
ARCH_SETTINGS = {
    'deit-tiny': dict(embed_dim=192, depth=12, num_heads=3),
    'small': dict(embed_dim=384, depth=12, num_heads=6),
    'base': dict(embed_dim=768, depth=12, num_heads=12),
    'large': dict(embed_dim=1024, depth=24, num_heads=16),
}


def resolve_arch(arch: Union[str, dict]) -> dict:
    """``'base'`` or ``dict(embed_dim=..., depth=..., num_heads=...)`` -> dict."""
    if isinstance(arch, str):
        if arch not in ARCH_SETTINGS:
            raise ValueError(f'Unknown arch {arch!r}; choose one of {sorted(ARCH_SETTINGS)} '
                             'or pass dict(embed_dim=..., depth=..., num_heads=...).')
        return dict(ARCH_SETTINGS[arch])
    missing = {'embed_dim', 'depth', 'num_heads'} - set(arch)
    if missing:
        raise ValueError(f'arch dict is missing {sorted(missing)}')
    return dict(arch)


def sincos_pos_embed_2d(embed_dim: int, grid_size: Tuple[int, int]) -> torch.Tensor:
    """Fixed MAE/MoCo-v3 2D sin-cos table, (1, gh*gw, D), no cls slot.

    Channels [0, D/2) encode the column, [D/2, D) the row; each half is
    [sin(p*w_k), cos(p*w_k)] with w_k = 10000^(-k/(D/4)). Row-major tokens.
    """
    if embed_dim % 4:
        raise ValueError(f'embed_dim must be divisible by 4 for a 2D sin-cos table, got {embed_dim}')
    gh, gw = grid_size
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 4, dtype=np.float64) / (embed_dim / 4))

    def encode(pos):
        angles = np.einsum('m,d->md', pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    cols, rows = np.meshgrid(np.arange(gw, dtype=np.float64), np.arange(gh, dtype=np.float64))
    table = np.concatenate([encode(cols), encode(rows)], axis=1)
    return torch.from_numpy(table).float().unsqueeze(0)


def resize_pos_embed(pos_embed: torch.Tensor, src_grid: Tuple[int, int],
                     dst_grid: Tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a (1, N, D) table without cls slot to another grid."""
    if tuple(src_grid) == tuple(dst_grid):
        return pos_embed
    dim = pos_embed.shape[-1]
    grid = pos_embed.reshape(1, *src_grid, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=dst_grid, mode='bicubic', align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, dst_grid[0] * dst_grid[1], dim).to(pos_embed.dtype)


def gather_tokens(x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """Visible tokens of every view in one gather.

    x: (B, N, C); ids_keep: (K, B, L) -> (K*B, L, C), mask-major (row k*B + b).
    """
    batch, num_tokens, dim = x.shape
    num_views, _, keep = ids_keep.shape
    offsets = torch.arange(batch, device=x.device).view(1, batch, 1) * num_tokens
    flat_ids = (ids_keep + offsets).reshape(-1)
    return x.reshape(batch * num_tokens, dim).index_select(0, flat_ids).view(num_views * batch, keep, dim)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection.

    ``window_size`` turns on a BEiT-style relative position bias (zero-initialised),
    used when transferring to dense tasks.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0., window_size: Optional[Tuple[int, int]] = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed_dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.window_size = window_size
        if window_size is not None:
            wh, ww = window_size
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
            coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing='ij')).flatten(1)
            rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 2)
            index = (rel[..., 0] + wh - 1) * (2 * ww - 1) + rel[..., 1] + ww - 1
            self.register_buffer('relative_position_index', index, persistent=False)

    def relative_position_bias(self) -> Optional[torch.Tensor]:
        if self.window_size is None:
            return None
        n = self.relative_position_index.shape[0]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)  # (1, heads, N, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self_attention(self.qkv(x), self.num_heads, attn_mask=self.relative_position_bias(),
                           dropout_p=self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(x))

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax attention weights (B, heads, L, L), for visualisation."""
        q, k, _ = split_heads(self.qkv(x), self.num_heads)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias()
        if bias is not None:
            logits = logits + bias
        return logits.softmax(dim=-1)


class Block(nn.Module):
    """Pre-norm transformer block without LayerScale."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4., qkv_bias: bool = True,
                 drop_path: float = 0., norm_layer=nn.LayerNorm,
                 window_size: Optional[Tuple[int, int]] = None):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, window_size=window_size)
        self.drop_prob = drop_path
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = residual(x, lambda t: self.attn(self.norm1(t)), self.drop_prob, self.training)
        return residual(x, lambda t: self.mlp(self.norm2(t)), self.drop_prob, self.training)


def build_mlp(num_layers: int, in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear -> LN -> GELU repeated, ending on a bare Linear (projector / predictor)."""
    layers = []
    for i in range(num_layers):
        last = i == num_layers - 1
        layers.append(nn.Linear(in_dim if i == 0 else hidden_dim, out_dim if last else hidden_dim))
        if not last:
            layers += [nn.LayerNorm(hidden_dim), nn.GELU()]
    return nn.Sequential(*layers)


class ViTTrunk(nn.Module):
    """Patch embedding + fixed sin-cos positions + self-attention blocks.

    No [cls] token enters the trunk. ``pos_embed`` is a buffer for the
    ``img_size`` grid and is resized bicubically for any other grid.
    """

    def __init__(self, arch: Union[str, dict] = 'base', img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16, in_chans: int = 3, mlp_ratio: float = 4., qkv_bias: bool = True,
                 drop_path_rate: float = 0., use_rel_pos_bias: bool = False):
        super().__init__()
        settings = resolve_arch(arch)
        self.embed_dim = settings['embed_dim']
        self.depth = settings['depth']
        self.num_heads = settings['num_heads']
        self.patch_size = patch_size
        self.img_size = to_2tuple(img_size)
        self.grid_size = self.check_img_size(self.img_size)
        self.patch_embed = PatchEmbed(img_size=self.img_size, patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=self.embed_dim, strict_img_size=False)
        self.register_buffer('pos_embed', sincos_pos_embed_2d(self.embed_dim, self.grid_size))
        drop_rates = torch.linspace(0, drop_path_rate, self.depth).tolist()
        window = self.grid_size if use_rel_pos_bias else None
        self.blocks = nn.ModuleList([
            Block(self.embed_dim, self.num_heads, mlp_ratio, qkv_bias, drop_rates[i],
                  norm_layer=partial(nn.LayerNorm, eps=1e-6), window_size=window)
            for i in range(self.depth)])

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    def check_img_size(self, size: Sequence[int]) -> Tuple[int, int]:
        height, width = size
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f'Image size {height}x{width} is not divisible by the patch size '
                             f'{self.patch_size}; resize or crop to a multiple of {self.patch_size}.')
        return height // self.patch_size, width // self.patch_size

    def init_trunk_weights(self):
        """Official init: xavier-uniform Linears (qkv as one matrix), zero biases, unit LNs,
        and xavier-uniform on the flattened patch projection (its bias keeps the Conv2d default)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        proj = self.patch_embed.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> patch tokens with positions added, (B, N, C)."""
        grid = self.check_img_size(x.shape[-2:])
        x = patch_embed(x, self.patch_embed.proj)
        return x + resize_pos_embed(self.pos_embed, self.grid_size, grid)  # fp32 stream under autocast, as timm

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """(depth of a parameter, number of depths) for mmpretrain's
        ``LearningRateDecayOptimWrapperConstructor``, by the rule of ``layer_depth.layer_id``:
        0 for the patch embedding and positions, i+1 for ``blocks.<i>``, depth+1 for what follows
        (class attention and its cls_token, final norm, projector, and names outside ``prefix``)."""
        num_depths = self.depth + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        class_attention = len(getattr(self, 'blocks_token', ())) > 0
        return layer_id(param_name[len(prefix):], self.depth, class_attention), num_depths

    def forward_tokens(self, x: torch.Tensor, ids_keep: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        """Every block's output. With ``ids_keep`` (K, B, L), rows are k*B + b."""
        x = self.embed(x)
        if ids_keep is not None:
            check_ids_keep(ids_keep, x.shape[0], x.shape[1])
            x = gather_tokens(x, ids_keep)
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs


def check_ids_keep(ids_keep: torch.Tensor, batch: int, num_tokens: int) -> None:
    if ids_keep.dim() != 3 or ids_keep.shape[1] != batch:
        raise ValueError(f'ids_keep must be a LongTensor (K, B={batch}, L); got shape {tuple(ids_keep.shape)}')
    if ids_keep.dtype != torch.long:
        raise TypeError(f'ids_keep must be int64, got {ids_keep.dtype}')


def rename_legacy_projector(state: dict, prefix: str = '') -> dict:
    """``{prefix}head.*`` -> ``{prefix}projector.*`` in ``state`` (in place, returned): the
    projector's name in the official code and in files this toolkit wrote before."""
    legacy = prefix + 'head.'
    for key in [k for k in state if k.startswith(legacy)]:
        state[prefix + 'projector.' + key[len(legacy):]] = state.pop(key)
    return state


def _load_legacy_projector(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    # Only an encoder with a projector: without one (the classifier's and the timm models'
    # encoders) ``head`` may be their own classifier.
    if len(module.projector):
        rename_legacy_projector(state_dict, prefix)


class ExtreMAEncoder(ViTTrunk):
    """Trunk + class-attention instance blocks + final LN + ``projector``.

    This is one branch of ExtreMA: the student (``base_encoder`` in the official
    code) or the EMA teacher (``momentum_encoder``).
    """

    def __init__(self, arch: Union[str, dict] = 'base', img_size=224, patch_size: int = 16,
                 in_chans: int = 3, mlp_ratio: float = 4., qkv_bias: bool = True,
                 drop_path_rate: float = 0., num_class_attn_blocks: int = 2,
                 layer_scale_init: float = 0.1, proj_hidden_dim: int = 4096, proj_dim: int = 256,
                 proj_layers: int = 3):
        super().__init__(arch, img_size, patch_size, in_chans, mlp_ratio, qkv_bias, drop_path_rate)
        dim = self.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks_token = nn.ModuleList([
            LayerScaleBlockClassAttn(dim, self.num_heads, mlp_ratio, qkv_bias=qkv_bias,
                                     norm_layer=partial(nn.LayerNorm, eps=1e-6),
                                     init_values=layer_scale_init)
            for _ in range(num_class_attn_blocks)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.projector = build_mlp(proj_layers, dim, proj_hidden_dim, proj_dim)
        self.register_load_state_dict_pre_hook(_load_legacy_projector)
        self.reset_parameters()

    def reset_parameters(self):
        self.init_trunk_weights()
        nn.init.normal_(self.cls_token, std=0.02)

    def forward_instance(self, tokens: torch.Tensor) -> torch.Tensor:
        """Class attention over patch tokens (which it reads but never updates) -> (N, C)."""
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        for block in self.blocks_token:
            cls = block(tokens, cls)
        return cls[:, 0]

    def forward_features(self, x: torch.Tensor, ids_keep: Optional[torch.Tensor] = None
                         ) -> Dict[str, Union[torch.Tensor, List[torch.Tensor]]]:
        tokens = self.forward_tokens(x, ids_keep)
        cls = self.forward_instance(tokens[-1])
        instance = self.norm(cls)
        return dict(tokens=tokens, cls=cls, instance=instance, projection=self.projector(instance))

    def class_attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Last class-attention block's attention of the instance query over the
        patch tokens, (B, heads, N), for visualisation."""
        tokens = self.forward_tokens(x)[-1]
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        for block in self.blocks_token[:-1]:
            cls = block(tokens, cls)
        attn = self.blocks_token[-1].attn
        u = self.blocks_token[-1].norm1(torch.cat([cls, tokens], dim=1))
        batch, length, dim = u.shape
        heads = attn.num_heads
        q = attn.q(u[:, :1]).view(batch, 1, heads, -1).transpose(1, 2)
        k = attn.k(u).view(batch, length, heads, -1).transpose(1, 2)
        weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1)  # (B, heads, 1, 1+N)
        return weights[:, :, 0, 1:]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ['ARCH_SETTINGS', 'Attention', 'Block', 'ExtreMAEncoder', 'ViTTrunk', 'build_mlp',
           'count_parameters', 'gather_tokens', 'rename_legacy_projector', 'resize_pos_embed', 'resolve_arch',
           'sincos_pos_embed_2d']
