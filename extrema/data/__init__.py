from .fashion_ade import FashionADEDataset  # noqa: F401  (registers in mmseg)
from .folder import SkipUnreadable, scan_image_folder
from .subsets import LabelledImageFolder  # noqa: F401  (registration)
from .two_view import TwoViewImageFolder, TwoViewTransform

__all__ = ['SkipUnreadable', 'TwoViewImageFolder', 'TwoViewTransform', 'scan_image_folder']
