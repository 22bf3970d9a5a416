"""ExtreMA toolkit. ``import extrema`` installs the OpenMMLab compatibility shims and
registers every model, dataset, hook and constructor of the toolkit; those in mmseg's
registries (``extrema.seg``) only when mmseg is installed."""
import importlib.util

from .compat import install_mmcv_ops_stub, route_mmengine_checkpoints

MMCV_OPS_STUB = install_mmcv_ops_stub()
route_mmengine_checkpoints()

from . import data, engine, models  # noqa: E402,F401  (registration)
from . import evaluation  # noqa: E402,F401  (registers the Accuracy metric)
from .checkpoint import load_pretrained  # noqa: E402
from .models import ExtreMA  # noqa: E402

if importlib.util.find_spec('mmseg') is not None:
    from . import seg  # noqa: E402,F401  (registration in mmseg's registries)

__version__ = '0.1.0'
__all__ = ['ExtreMA', 'load_pretrained']
