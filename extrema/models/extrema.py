"""ExtreMA: BYOL-style instance learning from extremely masked views.

The student sees K disjoint visible subsets of crop view 1; the EMA teacher
encodes the whole of view 2 once, and that one target serves all K views.
"""
from typing import Dict, List, Optional, Union

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel

from ..registry import MODELS
from .masking import check_mask_config, sample_masks
from .vit import ExtreMAEncoder, build_mlp


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over masks and images of 2 - 2*cos(prediction, target).

    prediction: (K*B, D), mask-major; target: (B, D), shared by the K masks.
    """
    num_views = prediction.shape[0] // target.shape[0]
    prediction = F.normalize(prediction, dim=-1).view(num_views, *target.shape)
    target = F.normalize(target, dim=-1)
    return (2 - 2 * (prediction * target).sum(dim=-1)).mean()


@torch.no_grad()
def normalized_std(x: torch.Tensor) -> torch.Tensor:
    """SimSiam's collapse check: the per-dimension std over the batch of the l2-normalised
    rows, averaged over dimensions. 0 when every row is the same vector, about 1/sqrt(D)
    when the rows spread over the sphere."""
    return F.normalize(x.float(), dim=-1).std(dim=0).mean()


@torch.no_grad()
def gather_across_ranks(x: torch.Tensor) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def infonce_loss(prediction: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo v3 InfoNCE with keys gathered from all ranks, scaled by 2T, averaged over masks."""
    batch = target.shape[0]
    num_views = prediction.shape[0] // batch
    query = F.normalize(prediction, dim=-1)
    keys = F.normalize(gather_across_ranks(target), dim=-1)
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    labels = (torch.arange(batch, device=query.device) + batch * rank).repeat(num_views)
    logits = query @ keys.t() / temperature
    return F.cross_entropy(logits, labels) * (2 * temperature)


@MODELS.register_module()
class ExtreMA(BaseModel):
    """ExtreMA pretraining algorithm.

    Args:
        arch: 'small' | 'base' | 'large' | dict(embed_dim, depth, num_heads).
        drop_path_rate: stochastic depth of the student trunk (teacher: 0).
        num_class_attn_blocks / layer_scale_init: the instance (class-attention) blocks.
        proj_hidden_dim / proj_dim / pred_hidden_dim: projector (3 layers) and predictor (2 layers).
        mask_ratio / num_masks / disjoint_masks: extreme multi-masking of the student view.
        loss_type: 'byol' (official) or 'infonce' (MoCo v3, ``temperature``).
        base_momentum: EMA momentum at step 0; annealed to 1 by ``MomentumUpdateHook``.
    """

    def __init__(self, arch: Union[str, dict] = 'base', img_size: int = 224, patch_size: int = 16,
                 in_chans: int = 3, mlp_ratio: float = 4., drop_path_rate: float = 0.1,
                 num_class_attn_blocks: int = 2, layer_scale_init: float = 0.1,
                 proj_hidden_dim: int = 4096, proj_dim: int = 256, pred_hidden_dim: int = 4096,
                 mask_ratio: float = 0.8, num_masks: int = 5, disjoint_masks: bool = True,
                 loss_type: str = 'byol', temperature: float = 0.2, base_momentum: float = 0.996,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='TwoViewDataPreprocessor')
        if isinstance(data_preprocessor, dict):  # in our scope, whatever scope is current (e.g. mmseg's)
            data_preprocessor = MODELS.build(dict(data_preprocessor, _scope_='extrema'))
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if loss_type not in ('byol', 'infonce'):
            raise ValueError(f"loss_type must be 'byol' or 'infonce', got {loss_type!r}")
        if not 0 <= base_momentum <= 1:
            raise ValueError(f'base_momentum must be in [0, 1], got {base_momentum}')
        encoder_cfg = dict(arch=arch, img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                           mlp_ratio=mlp_ratio, num_class_attn_blocks=num_class_attn_blocks,
                           layer_scale_init=layer_scale_init, proj_hidden_dim=proj_hidden_dim,
                           proj_dim=proj_dim)
        self.config = dict(encoder_cfg, drop_path_rate=drop_path_rate, pred_hidden_dim=pred_hidden_dim,
                           mask_ratio=mask_ratio, num_masks=num_masks, disjoint_masks=disjoint_masks,
                           loss_type=loss_type, temperature=temperature, base_momentum=base_momentum)
        self.student = ExtreMAEncoder(drop_path_rate=drop_path_rate, **encoder_cfg)
        check_mask_config(self.student.num_patches, mask_ratio, num_masks, disjoint_masks)
        self.predictor = build_mlp(2, proj_dim, pred_hidden_dim, proj_dim)
        for module in self.predictor.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.teacher = ExtreMAEncoder(drop_path_rate=0., **encoder_cfg)
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        self.mask_ratio = mask_ratio
        self.num_masks = num_masks
        self.disjoint_masks = disjoint_masks
        self.loss_type = loss_type
        self.temperature = temperature
        self.base_momentum = base_momentum

    def sample_masks(self, images: torch.Tensor) -> torch.Tensor:
        """(K, B, L) visible-token indices for a batch of student images."""
        grid = self.student.check_img_size(images.shape[-2:])
        return sample_masks(images.shape[0], grid[0] * grid[1], self.mask_ratio, self.num_masks,
                            self.disjoint_masks, device=images.device)

    def forward_features(self, x: torch.Tensor, branch: str = 'student',
                         ids_keep: Optional[torch.Tensor] = None) -> Dict[str, Union[torch.Tensor, List]]:
        """tokens (every SA block's output), cls, instance, projection, and for the
        student also prediction. With ``ids_keep`` (K, B, L), rows are k*B + b."""
        if branch == 'student':
            out = self.student.forward_features(x, ids_keep)
            out['prediction'] = self.predictor(out['projection'])
            return out
        if branch == 'teacher':
            return self.teacher.forward_features(x, ids_keep)
        raise ValueError(f"branch must be 'student' or 'teacher', got {branch!r}")

    def loss(self, inputs: List[torch.Tensor], data_samples=None,
             ids_keep: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Loss of one step. ``inputs`` = [student view, teacher view]. Leaves the teacher as it is."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError('ExtreMA.loss expects inputs=[view1, view2] (two tensors of shape (B, 3, H, W)).')
        view1, view2 = inputs
        if ids_keep is None:
            ids_keep = self.sample_masks(view1)
        prediction = self.forward_features(view1, 'student', ids_keep)['prediction']  # (K*B, P)
        with torch.no_grad():
            target = self.teacher.forward_features(view2)['projection']  # (B, P)
        if self.loss_type == 'byol':
            loss = byol_loss(prediction, target)
        else:
            loss = infonce_loss(prediction, target, self.temperature)
        # Logged, not optimised (no 'loss' in the names): teacher targets and student predictions.
        return dict(loss=loss, feat_std=normalized_std(target), pred_std=normalized_std(prediction))

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'tensor':
            return self.forward_features(inputs, 'teacher')['instance']
        raise RuntimeError(f"ExtreMA supports modes 'loss' and 'tensor', got {mode!r}")

    def parse_losses(self, losses):
        loss, log_vars = super().parse_losses(losses)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f'ExtreMA loss is {loss.item()}; stopping before the optimizer step so no weight is '
                'corrupted. The last checkpoint in the work dir is the last good one: resume from it '
                'with --resume after lowering the learning rate, or train without --amp.')
        return loss, log_vars

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """teacher <- m * teacher + (1 - m) * student, over trunk, instance blocks and projector."""
        teacher = list(self.teacher.parameters())
        student = [p.detach() for p in self.student.parameters()]
        torch._foreach_lerp_(teacher, student, 1 - momentum)  # one pass over the teacher
