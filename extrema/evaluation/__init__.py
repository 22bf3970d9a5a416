from .features import extract_features, knn_predict, topk_accuracy

__all__ = ['extract_features', 'knn_predict', 'topk_accuracy']
