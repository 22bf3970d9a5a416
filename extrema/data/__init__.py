from .folder import SkipUnreadable, scan_image_folder
from .subsets import LabelledImageFolder  # noqa: F401  (registration)
from .two_view import TwoViewImageFolder, TwoViewTransform

__all__ = ['SkipUnreadable', 'TwoViewImageFolder', 'TwoViewTransform', 'scan_image_folder']
