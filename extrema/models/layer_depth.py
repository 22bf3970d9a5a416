"""The depth of a ViT parameter for layer-wise lr decay: one rule for our layer-decay constructor
and for the models' ``get_layer_depth`` (mmpretrain's ``LearningRateDecayOptimWrapperConstructor``)."""
import re

EMBEDDING_NAMES = ('pos_embed', 'cls_token', 'mask_token')
_BLOCK = re.compile(r'blocks\.(\d+)\.')


def layer_id(param_name: str, num_layers: int, class_attention: bool = False) -> int:
    """Depth of a parameter: 0 for the embeddings, i+1 for ``blocks.<i>``, num_layers+1 after.

    Everything up to and including the first ``backbone.`` is ignored, so
    ``backbone.blocks.3.attn.qkv.weight`` and ``blocks.3.attn.qkv.weight`` are both 4.
    Necks, heads, final norms and the class-attention blocks (``blocks_token.<j>``) get
    num_layers+1, i.e. an lr scale of 1.0. With ``class_attention`` the ``cls_token`` is the
    query of those blocks only (it never enters the trunk), so it gets their depth, not 0.
    """
    name = param_name.split('backbone.', 1)[-1]
    if class_attention and name == 'cls_token':
        return num_layers + 1
    if name.startswith('patch_embed') or name in EMBEDDING_NAMES:
        return 0
    match = _BLOCK.match(name)
    if match:
        return int(match.group(1)) + 1
    return num_layers + 1


def block_indices(param_names) -> set:
    """The ``i`` of every ``blocks.<i>.`` parameter (``backbone.`` prefixes ignored)."""
    matches = (_BLOCK.match(name.split('backbone.', 1)[-1]) for name in param_names)
    return {int(m.group(1)) for m in matches if m}
