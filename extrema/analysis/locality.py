"""Locality probe: does the instance feature of a crop know where the crop is?

A gallery of random crops (varying position and scale) of one image is ranked by
the cosine similarity of its instance features to a query crop; a feature that
encodes location ranks the crops that overlap the query first, which shows as a
positive Spearman correlation between similarity and box IoU.
"""
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from PIL import Image
from scipy.stats import spearmanr
from torchvision.ops import box_iou

from .figures import PanelFigure, draw_box, show_image
from .images import crops_input, to_display, to_tensor
from .loading import LoadedEncoder, check_input_size, require_instance_branch

DEFAULT_QUERY_BOX = (0.25, 0.25, 0.75, 0.75)
TOP_COLORS = ('tab:red', 'tab:orange', 'tab:green', 'tab:purple', 'tab:brown', 'tab:pink', 'tab:olive')


def sample_boxes(width: float, height: float, count: int, scale: Tuple[float, float] = (0.1, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3),
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """RandomResizedCrop-style boxes (count, 4) as (x0, y0, x1, y1) pixels: area a uniform
    fraction in ``scale`` of the image, log-uniform aspect ratio, uniform position."""
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f'scale must satisfy 0 < min <= max <= 1, got {scale}.')
    area = torch.empty(count).uniform_(*scale, generator=generator) * width * height
    aspect = torch.empty(count).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator).exp()
    box_w = (area * aspect).sqrt().clamp(max=width)
    box_h = (area / aspect).sqrt().clamp(max=height)
    x0 = torch.rand(count, generator=generator) * (width - box_w)
    y0 = torch.rand(count, generator=generator) * (height - box_h)
    return torch.stack([x0, y0, x0 + box_w, y0 + box_h], dim=1)


@torch.no_grad()
def instance_features(loaded: LoadedEncoder, image: Image.Image, boxes: torch.Tensor, img_size: int,
                      batch_size: int = 32) -> torch.Tensor:
    """Instance features (B, C) of the ``boxes`` crops, each resized to ``img_size``."""
    encoder = require_instance_branch(loaded, 'Instance features')
    features = [encoder.forward_features(loaded.normalize(crops_input(image, chunk.tolist(), img_size)))
                for chunk in boxes.split(batch_size)]
    return torch.cat([f['instance'] for f in features]).cpu()


@dataclass
class LocalityProbe:
    image: torch.Tensor  # uint8 (3, H, W)
    img_size: int  # side of the crops fed to the encoder
    query_box: torch.Tensor  # (4,) pixels
    boxes: torch.Tensor  # (G, 4) gallery, pixels
    similarity: torch.Tensor  # (G,) cosine to the query's instance feature
    iou: torch.Tensor  # (G,) with the query box
    spearman: float
    p_value: float

    def ranking(self) -> List[int]:
        return self.similarity.argsort(descending=True).tolist()

    def summary(self, top: int = 5) -> dict:
        return dict(spearman_similarity_vs_iou=self.spearman, p_value=self.p_value,
                    num_crops=len(self.boxes), query_box=[round(v, 2) for v in self.query_box.tolist()],
                    top_matches=[dict(box=[round(v, 2) for v in self.boxes[i].tolist()],
                                      similarity=round(self.similarity[i].item(), 4),
                                      iou=round(self.iou[i].item(), 4)) for i in self.ranking()[:top]])


def locality_probe(loaded: LoadedEncoder, image: Image.Image, img_size: Optional[int] = None,
                   num_crops: int = 64, query_box: Sequence[float] = DEFAULT_QUERY_BOX,
                   scale: Tuple[float, float] = (0.1, 1.0), seed: int = 0) -> LocalityProbe:
    """Rank ``num_crops`` random crops by instance-feature similarity to ``query_box``
    (fractions x0, y0, x1, y1 of the image) and correlate it with box IoU."""
    require_instance_branch(loaded, 'The locality probe')
    img_size = img_size or loaded.encoder.img_size[0]
    check_input_size(loaded.encoder, img_size)
    x0, y0, x1, y1 = query_box
    if not 0 <= x0 < x1 <= 1 or not 0 <= y0 < y1 <= 1:
        raise ValueError(f'query_box must be fractions 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1; '
                         f'got {query_box}.')
    if num_crops < 3:
        raise ValueError(f'num_crops must be >= 3 for a rank correlation, got {num_crops}.')
    width, height = image.size
    query = torch.tensor([x0 * width, y0 * height, x1 * width, y1 * height])
    boxes = sample_boxes(width, height, num_crops, scale, generator=torch.Generator().manual_seed(seed))
    features = instance_features(loaded, image, torch.cat([query[None], boxes]), img_size)
    similarity = F.cosine_similarity(features[1:], features[:1], dim=1)
    iou = box_iou(query[None], boxes)[0]
    if iou.unique().numel() == 1:
        raise ValueError(f'Every gallery crop has IoU {iou[0]:.2f} with the query, so there is nothing '
                         'to rank; use a larger query box or more crops.')
    correlation, p_value = spearmanr(similarity.numpy(), iou.numpy())
    return LocalityProbe(to_tensor(image), img_size, query, boxes, similarity, iou, float(correlation),
                         float(p_value))


def plot_locality(probe: LocalityProbe, top: int = 5, title: str = '') -> PanelFigure:
    """The image with the query (white) and top matches (ranked colours), similarity vs
    IoU of the whole gallery, the query crop and the top crops."""
    top = min(top, len(TOP_COLORS), len(probe.boxes))
    ranking = probe.ranking()[:top]
    figure = PanelFigure(1, 3 + top)
    image = to_display(probe.image)
    ax = figure.image_axes(0, 0, title or 'query (white) and top matches')
    show_image(ax, image)
    draw_box(ax, probe.query_box.tolist(), color='white', linewidth=2.5)
    for rank, index in reversed(list(enumerate(ranking))):
        draw_box(ax, probe.boxes[index].tolist(), color=TOP_COLORS[rank], linewidth=1.5, label=str(rank + 1))
    scatter = figure.plot_axes(0, 1, f'Spearman rho = {probe.spearman:.2f}')
    scatter.scatter(probe.iou.numpy(), probe.similarity.numpy(), s=8, color='tab:blue', alpha=0.7)
    scatter.scatter(probe.iou[ranking].numpy(), probe.similarity[ranking].numpy(), s=14,
                    color=[TOP_COLORS[r] for r in range(top)])
    scatter.set_xlabel('IoU with query', fontsize=7, labelpad=1)
    scatter.set_ylabel('cosine similarity', fontsize=7, labelpad=1)
    shown = torch.cat([probe.query_box[None], probe.boxes[ranking]])
    crops = crops_input(Image.fromarray(image), shown.tolist(), probe.img_size)
    show_image(figure.image_axes(0, 2, 'query crop'), to_display(crops[0]))
    for rank, index in enumerate(ranking):
        show_image(figure.image_axes(0, 3 + rank, f'#{rank + 1}: sim {probe.similarity[index]:.3f}, '
                                     f'IoU {probe.iou[index]:.2f}'), to_display(crops[1 + rank]))
    return figure
