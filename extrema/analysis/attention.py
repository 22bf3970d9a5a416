"""Self-attention of query patches and class attention of the instance token."""
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from PIL import Image

from ..models.vit import ExtreMAEncoder, ViTTrunk
from .figures import PanelFigure, draw_box, show_heatmap, show_image
from .images import square_input, to_display
from .loading import LoadedEncoder, check_input_size


@torch.no_grad()
def self_attention_maps(encoder: ViTTrunk, inputs: torch.Tensor, block: int = -1) -> torch.Tensor:
    """Head-averaged softmax attention of one self-attention block, (B, N, N);
    row q is where patch q looks. ``block`` indexes ``encoder.blocks`` (-1: last)."""
    index = range(len(encoder.blocks))[block]
    x = encoder.embed(inputs)
    for earlier in encoder.blocks[:index]:
        x = earlier(x)
    chosen = encoder.blocks[index]
    return chosen.attn.attention_map(chosen.norm1(x)).mean(dim=1)


@torch.no_grad()
def class_attention_map(encoder: ExtreMAEncoder, inputs: torch.Tensor) -> torch.Tensor:
    """Head-averaged attention of the instance token over the patches, (B, N)."""
    return encoder.class_attention_map(inputs).mean(dim=1)


def spread_queries(grid: Tuple[int, int], count: int) -> List[int]:
    """``count`` patch indices: the centre, then evenly around a ring at 30% of the grid."""
    rows, cols = grid
    center = ((rows - 1) / 2, (cols - 1) / 2)
    points = [center]
    for i in range(count - 1):
        angle = 2 * math.pi * i / (count - 1) - math.pi / 2
        points.append((center[0] + 0.3 * rows * math.sin(angle), center[1] + 0.3 * cols * math.cos(angle)))
    clamp = lambda value, size: min(max(round(value), 0), size - 1)  # noqa: E731
    return [clamp(r, rows) * cols + clamp(c, cols) for r, c in points]


@dataclass
class AttentionMaps:
    image: torch.Tensor  # uint8 (3, H, W), what the encoder saw
    grid: Tuple[int, int]
    patch_size: int
    block: int
    queries: List[int]  # patch indices, row-major
    query_maps: torch.Tensor  # (Q, gh, gw)
    class_attention: Optional[torch.Tensor]  # (gh, gw), None without class-attention blocks


def attention_maps(loaded: LoadedEncoder, image: Image.Image, img_size: Optional[int] = None,
                   num_queries: int = 3, queries: Optional[Sequence[int]] = None,
                   block: int = -1) -> AttentionMaps:
    """Self-attention maps of query patches (default: ``spread_queries``) and, when the
    encoder has class-attention blocks, the instance token's class-attention map."""
    encoder = loaded.encoder
    img_size = img_size or encoder.img_size[0]
    check_input_size(encoder, img_size)
    grid = encoder.check_img_size((img_size, img_size))
    if not -len(encoder.blocks) <= block < len(encoder.blocks):
        raise ValueError(f'block {block} does not exist: the encoder has {len(encoder.blocks)} '
                         'self-attention blocks (use -1 for the last).')
    queries = list(queries) if queries is not None else spread_queries(grid, num_queries)
    if not queries or not all(0 <= q < grid[0] * grid[1] for q in queries):
        raise ValueError(f'Query patches must be 1 or more row-major indices in [0, {grid[0] * grid[1]}), '
                         f'got {queries}.')
    pixels = square_input(image, img_size)
    inputs = loaded.normalize(pixels)
    attention = self_attention_maps(encoder, inputs, block)[0].cpu()
    class_map = None
    if loaded.has_instance_branch:
        class_map = class_attention_map(encoder, inputs)[0].cpu().view(grid)
    return AttentionMaps(pixels[0], grid, encoder.patch_size, range(len(encoder.blocks))[block], queries,
                         attention[queries].view(len(queries), *grid), class_map)


def plot_attention_maps(maps: AttentionMaps, title: str = '') -> PanelFigure:
    """One row: the input, one overlay per query patch (boxed), then the class-attention map."""
    panels = 1 + len(maps.queries) + (maps.class_attention is not None)
    figure = PanelFigure(1, panels)
    image = to_display(maps.image)
    show_image(figure.image_axes(0, 0, title or 'input'), image)
    cols = maps.grid[1]
    for i, (query, heat) in enumerate(zip(maps.queries, maps.query_maps)):
        ax = figure.image_axes(0, 1 + i, f'block {maps.block + 1} SA, patch ({query // cols},{query % cols})')
        show_heatmap(ax, image, heat.numpy())
        row, col = divmod(query, cols)
        p = maps.patch_size
        draw_box(ax, (col * p, row * p, (col + 1) * p, (row + 1) * p), color='cyan', linewidth=1.5)
    if maps.class_attention is not None:
        ax = figure.image_axes(0, panels - 1, 'instance token class attention')
        show_heatmap(ax, image, maps.class_attention.numpy())
    return figure
