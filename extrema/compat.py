"""Shims that let the pinned OpenMMLab stack run on torch 2.14 with mmcv-lite, and load
checkpoints safely.

All are installed by ``import extrema`` before anything imports ``mmseg``.
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
    is installed, or no mmcv (then no mmseg either), and nothing needed doing.
    """
    if 'mmcv.ops' in sys.modules or importlib.util.find_spec('mmcv') is None:
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


def route_mmengine_checkpoints() -> None:
    """Make mmengine's ``CheckpointLoader`` (``--resume``, ``load_from``, ``tools/test.py``,
    ``init_cfg``) read local files with ``extrema.checkpoint.load_file``.

    mmengine's own local loader calls ``torch.load`` without ``weights_only``, so
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` would unpickle anything; its remote loaders
    (http, s3, open-mmlab://, ...) do the same after downloading, so they are refused:
    download the file and pass its path.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    from .checkpoint import load_file

    def load_from_safe_local(filename, map_location=None):
        return load_file(os.path.expanduser(filename), map_location or 'cpu')

    def load_from_remote_refused(filename, map_location=None):
        raise ValueError(f'{filename!r}: remote checkpoints are not loaded directly (mmengine would unpickle '
                         'them without weights_only). Download the file and pass its local path.')

    for prefix in list(CheckpointLoader._schemes):  # noqa: SLF001  (every scheme registered so far)
        if prefix:
            CheckpointLoader.register_scheme(prefix, load_from_remote_refused, force=True)
    CheckpointLoader.register_scheme('', load_from_safe_local, force=True)
