"""Figures made of equal square panels, so that a PNG's size follows from its layout:
``cols * panel_px`` wide and ``rows * (panel_px + title_px)`` high."""
import os
from typing import Optional

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

DPI = 100
PANEL_PX = 192
TITLE_PX = 28
HEATMAP_ALPHA = 0.55


def check_png_path(path: str) -> None:
    """Fail before compute on an output path that cannot become a PNG."""
    if not path.lower().endswith('.png'):
        raise ValueError(f'Output {path!r} must be a .png file; pass --out NAME.png.')
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f'Cannot write {path!r}: {folder!r} is a file, not a folder.')


class PanelFigure:
    """A rows x cols grid of square panels, each with a title strip above it."""

    def __init__(self, rows: int, cols: int, panel_px: int = PANEL_PX, title_px: int = TITLE_PX):
        self.rows, self.cols = rows, cols
        self.cell_px = panel_px + title_px
        self.panel_px = panel_px
        self.figure = Figure(figsize=(cols * panel_px / DPI, rows * self.cell_px / DPI), dpi=DPI)

    @property
    def size(self):
        """(width, height) of the saved PNG in pixels."""
        return self.cols * self.panel_px, self.rows * self.cell_px

    def _rect(self, row: int, col: int, margin_px: tuple = (0, 0, 0, 0)):
        """Figure-fraction rectangle of a panel, shrunk by (left, bottom, right, top) pixels."""
        width, height = self.size
        left, bottom, right, top = margin_px
        x0 = col * self.panel_px + left
        y0 = height - (row + 1) * self.cell_px + bottom
        return [x0 / width, y0 / height, (self.panel_px - left - right) / width,
                (self.panel_px - bottom - top) / height]

    def image_axes(self, row: int, col: int, title: str = ''):
        ax = self.figure.add_axes(self._rect(row, col, (2, 2, 2, 0)))
        ax.set_axis_off()
        ax.set_title(title, fontsize=8.5)
        return ax

    def plot_axes(self, row: int, col: int, title: str = ''):
        """Axes with room left and below for tick labels."""
        ax = self.figure.add_axes(self._rect(row, col, (50, 32, 8, 4)))
        ax.tick_params(labelsize=7)
        ax.set_title(title, fontsize=8.5)
        return ax

    def save(self, path: str) -> str:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self.figure.savefig(path, dpi=DPI)
        return path


def show_image(ax, image: np.ndarray) -> None:
    """uint8 (H, W, 3); small images stay pixel-sharp."""
    height, width = image.shape[:2]
    ax.imshow(image, interpolation='nearest' if max(height, width) < PANEL_PX else 'antialiased',
              extent=(0, width, height, 0))


def show_heatmap(ax, image: np.ndarray, heat: np.ndarray, alpha: float = HEATMAP_ALPHA) -> None:
    """``heat`` (h, w) on any coarser grid, stretched over ``image`` and scaled to [0, 1]."""
    show_image(ax, image)
    height, width = image.shape[:2]
    low, high = float(heat.min()), float(heat.max())
    scaled = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    ax.imshow(scaled, cmap='inferno', alpha=alpha, interpolation='bilinear', extent=(0, width, height, 0),
              vmin=0, vmax=1)


def draw_box(ax, box, color: str, linewidth: float = 2., label: Optional[str] = None) -> None:
    """Box (x0, y0, x1, y1) in the image's pixel coordinates."""
    x0, y0, x1, y1 = box
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=linewidth))
    if label:
        ax.text(x0 + 1, y0 + 1, label, color='white', fontsize=7, va='top', ha='left',
                bbox=dict(facecolor=color, edgecolor='none', pad=1.0))
