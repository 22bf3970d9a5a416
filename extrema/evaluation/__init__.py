from .features import extract_features, knn_predict, topk_accuracy
from .metrics import Accuracy  # noqa: F401  (registration)

__all__ = ['extract_features', 'knn_predict', 'topk_accuracy']
