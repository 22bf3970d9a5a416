"""Shims that let the pinned OpenMMLab stack run on torch 2.14 with mmcv-lite.

Both are installed by ``import extrema`` before anything imports ``mmseg``.
"""
import importlib.util
import os
import sys
import types


def install_mmcv_ops_stub() -> bool:
    """Provide ``mmcv.ops`` for mmcv-lite, which ships no compiled ops.

    mmseg imports ``mmcv.ops.point_sample`` (pure PyTorch) at module level; the
    stub loads that file and raises ``ModuleNotFoundError`` for compiled ops,
    which is what mmseg's optional imports catch. Returns False when full mmcv
    is installed and nothing needed doing.
    """
    if 'mmcv.ops' in sys.modules:
        return False
    try:
        import mmcv.ops  # noqa: F401
        return False
    except ImportError:
        pass
    import mmcv
    path = os.path.join(os.path.dirname(mmcv.__file__), 'ops', 'point_sample.py')
    spec = importlib.util.spec_from_file_location('mmcv.ops.point_sample', path)
    point_sample = importlib.util.module_from_spec(spec)
    stub = types.ModuleType('mmcv.ops')
    stub.__path__ = []
    stub.__mmcv_lite_stub__ = True
    sys.modules['mmcv.ops'] = stub
    sys.modules['mmcv.ops.point_sample'] = point_sample
    spec.loader.exec_module(point_sample)
    for name in ('point_sample', 'bilinear_grid_sample', 'normalize', 'denormalize',
                 'rel_roi_point_to_abs_img_point', 'SimpleRoIAlign'):
        setattr(stub, name, getattr(point_sample, name))

    def sigmoid_focal_loss(*args, **kwargs):
        raise RuntimeError('mmcv.ops.sigmoid_focal_loss needs full mmcv (compiled ops)')

    def __getattr__(name):
        if name.startswith('__'):
            raise AttributeError(name)
        raise ModuleNotFoundError(f'mmcv.ops.{name} needs full mmcv (compiled ops)')

    stub.sigmoid_focal_loss = sigmoid_focal_loss
    stub.__getattr__ = __getattr__
    mmcv.ops = stub
    return True


def allow_mmengine_checkpoint_globals() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine checkpoints.

    mmengine stores its message hub (HistoryBuffer, numpy scalars) in every
    checkpoint; these are the only non-tensor globals it writes.
    """
    import numpy as np
    import numpy.dtypes
    import torch
    from mmengine.logging import HistoryBuffer
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    allowed = [HistoryBuffer, np.ndarray, np.dtype, _reconstruct, scalar, getattr]
    allowed += [getattr(numpy.dtypes, n) for n in dir(numpy.dtypes) if n.endswith('DType')]
    torch.serialization.add_safe_globals(allowed)
