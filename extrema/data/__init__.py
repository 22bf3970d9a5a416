from .crop_folder import RandomCropImageFolder, random_crop_transform
from .folder import SkipUnreadable, scan_image_folder
from .subsets import LabelledImageFolder  # noqa: F401  (registration)

__all__ = ['RandomCropImageFolder', 'SkipUnreadable', 'random_crop_transform', 'scan_image_folder']
