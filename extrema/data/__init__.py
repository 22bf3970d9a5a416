from .crop_folder import RandomCropImageFolder, random_crop_transform
from .fashion_ade import FashionADEDataset  # noqa: F401  (registers in mmseg)
from .folder import SkipUnreadable, scan_image_folder
from .subsets import LabelledImageFolder  # noqa: F401  (registration)

__all__ = ['RandomCropImageFolder', 'SkipUnreadable', 'random_crop_transform', 'scan_image_folder']
