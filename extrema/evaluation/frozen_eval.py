"""Frozen-feature evaluation of an ExtreMA encoder on a labelled subset: the protocols run in order,
one results JSON. ``semi_sup/frozen_eval.py`` is its command line (``main(argv)``).

    # ImageNet 1% (SimCLR split), all three protocols, teacher encoder
    python semi_sup/frozen_eval.py --checkpoint extrema_mask08x5_color_1k_300ep.pth \\
        --data-root data/imagenet --split 1percent --protocol logreg knn linear
    # any image folder: a class-balanced 1% subset
    python semi_sup/frozen_eval.py --checkpoint work_dirs/pretrain_tiny/epoch_8.pth \\
        --data-root data/fashion_mnist_full --percent 1 --protocol logreg knn

Protocols (top-1 / top-5 on the whole validation set):
    logreg  multinomial L2 logistic regression on centred, L2-normalised features (MSN);
            lambda fixed (--lambd 0.0025) or chosen by cross-validation on the labelled set;
    knn     cosine k-NN, k=20, exp(s/0.07) votes (DINO);
    linear  BatchNorm (no affine) + Linear trained with SGD on augmented crops (official main_lincls).
Train features are embedded once from Resize + CenterCrop views (crop_pct 0.875: 256 -> 224,
36 -> 32) and cached under --cache-dir, keyed by the checkpoint's sha256.
"""
import argparse
import json
import os
import os.path as osp
import time

import numpy as np
import torch

from ..data.subsets import LabelledImageFolder
from ..models.data_preprocessor import NormalizeDataPreprocessor
from .features import knn_predict
from .frozen import FEATURES, FrozenEncoder, cached_features, image_label_batches
from .linear_probe import evaluate_linear_probe, train_linear_probe
from .logistic import DEFAULT_LAMBDAS, check_cv_folds, logistic_regression_eval
from .metrics import clipped_topk_accuracy

PROTOCOLS = ('logreg', 'knn', 'linear')
DEFAULT_FEATURE = dict(logreg='instance', knn='instance', linear='cls')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    weights = parser.add_argument_group('weights')
    weights.add_argument('--checkpoint', required=True,
                         help='official ExtreMA, ours, backbone file, mmseg segmentor or mmpretrain ViT')
    weights.add_argument('--branch', choices=['teacher', 'student'], default='teacher')
    weights.add_argument('--random-init', action='store_true',
                         help="baseline: the checkpoint's architecture with fresh (official) init")
    weights.add_argument('--num-heads', type=int, help='override the head count inferred for official files')
    data = parser.add_argument_group('data')
    data.add_argument('--data-root', required=True, help='folder with train/<class>/ and the validation split')
    subset = data.add_mutually_exclusive_group(required=True)
    subset.add_argument('--split', help="'1percent', '10percent' (SimCLR files) or a split-file path")
    subset.add_argument('--percent', type=float, help='class-balanced random subset of train/, in %%')
    data.add_argument('--seed', type=int, default=0, help='subset draw and random init')
    data.add_argument('--allow-missing', action='store_true', help='use the listed images that exist')
    data.add_argument('--val-prefix', default='val')
    data.add_argument('--val-ann-file', help='"<image> <label>" lines, relative to --data-root')
    data.add_argument('--img-size', type=int, help="default: the encoder's pretraining size")
    data.add_argument('--crop-pct', type=float, default=0.875)
    data.add_argument('--mean', type=float, nargs=3, help='default: from the stored config, else ImageNet')
    data.add_argument('--std', type=float, nargs=3)
    run = parser.add_argument_group('protocols')
    run.add_argument('--protocol', nargs='+', choices=PROTOCOLS, default=list(PROTOCOLS))
    run.add_argument('--feature', choices=FEATURES,
                     help='default: instance for logreg/knn, cls (no final LN) for linear')
    run.add_argument('--lambd', type=float, nargs='+', default=list(DEFAULT_LAMBDAS),
                     help='one value (MSN: 0.0025 for 5 images per class), or several to choose by '
                          'cross-validation on the labelled set')
    run.add_argument('--cv-folds', type=int, default=3)
    run.add_argument('--max-iter', type=int, default=1000, help='L-BFGS iterations')
    run.add_argument('--knn-k', type=int, default=20)
    run.add_argument('--knn-temperature', type=float, default=0.07)
    run.add_argument('--linear-epochs', type=int, default=90)
    run.add_argument('--linear-warmup-epochs', type=int, default=10)
    run.add_argument('--linear-batch-size', type=int, default=256)
    run.add_argument('--linear-lr', type=float, default=0.1, help='per 256 images (official 0.1)')
    run.add_argument('--linear-aug', choices=['crop', 'none'], default='crop',
                     help='crop: RandomResizedCrop + flip every epoch (official); none: cached features')
    system = parser.add_argument_group('system')
    system.add_argument('--batch-size', type=int, default=256, help='feature extraction')
    system.add_argument('--workers', type=int, default=min(8, os.cpu_count() or 1),
                        help='data loader processes (default: min(8, CPU count))')
    system.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    system.add_argument('--cache-dir', default='work_dirs/feature_cache', help="'' disables the cache")
    system.add_argument('--out', help='results JSON (default: work_dirs/frozen_eval/<checkpoint>_<subset>.json)')
    args = parser.parse_args(argv)
    if (args.mean is None) != (args.std is None):
        parser.error('--mean and --std go together (both in 0-255 units), or neither: then the pretraining '
                     'statistics stored in the checkpoint are used.')
    return args


def labelled_subset(args, transform: dict) -> LabelledImageFolder:
    subset = dict(split=args.split) if args.split else dict(percent=args.percent, seed=args.seed)
    return LabelledImageFolder(args.data_root, 'train', allow_missing=args.allow_missing, transform=transform,
                               **subset)


def build_datasets(args, img_size: int):
    eval_transform = dict(input_size=img_size, crop_pct=args.crop_pct, interpolation='bicubic')
    train = labelled_subset(args, eval_transform)
    if len(train.classes) < 2:
        raise ValueError(f'{args.data_root}/train has {len(train.classes)} class folder(s) ({train.classes}); '
                         'a classification evaluation needs at least 2 classes (with one, every prediction '
                         'is right and top-1 is 100%). Point --data-root at the full training folder.')
    val = LabelledImageFolder(args.data_root, args.val_prefix, ann_file=args.val_ann_file,
                              transform=eval_transform)
    return train, val


def run_linear_probe(args, encoder, normalise, train, val, feature, embed_once):
    """Official probe, evaluated on the cached validation features.

    ``embed_once(dataset, feature)`` gives cached centre-crop features; with ``--linear-aug crop``
    the training images are re-cropped and embedded every epoch instead.
    """
    val_f, val_y = embed_once(val, feature)
    batch_size = min(args.linear_batch_size, len(train))
    iters_per_epoch = len(train) // batch_size
    lr = args.linear_lr * batch_size / 256
    if args.linear_aug == 'none':
        train_f, train_y = embed_once(train, feature)

        def epoch_batches(epoch):
            order = torch.randperm(len(train_f), generator=torch.Generator().manual_seed(epoch))
            for begin in range(0, iters_per_epoch * batch_size, batch_size):
                index = order[begin:begin + batch_size]
                yield train_f[index], train_y[index]
    else:
        augmented = labelled_subset(args, dict(input_size=train.transform_cfg['input_size'], is_training=True,
                                               scale=(0.08, 1.0), hflip=0.5, color_jitter=None,
                                               interpolation='bilinear'))

        def epoch_batches(epoch):
            for images, labels in image_label_batches(augmented, batch_size, args.workers, shuffle=True,
                                                      drop_last=True):
                yield encoder.embed(normalise.normalize(images.to(encoder.device)), feature), labels
    head = train_linear_probe(epoch_batches, iters_per_epoch, val_f.shape[1], len(train.classes),
                              args.linear_epochs, args.linear_warmup_epochs, lr, device=encoder.device)
    return dict(evaluate_linear_probe(head, val_f, val_y), lr=lr, batch_size=batch_size)


def feature_of(args, protocol: str) -> str:
    return args.feature or DEFAULT_FEATURE[protocol]


def run_frozen_eval(args: argparse.Namespace) -> dict:
    """Runs ``args.protocol`` on the parsed arguments (``parse_args``), prints one line per
    protocol, writes the results JSON and returns the report written there."""
    encoder = FrozenEncoder(args.checkpoint, args.branch, args.random_init, args.num_heads, args.seed,
                            args.device)
    for protocol in args.protocol:
        encoder.check_feature(feature_of(args, protocol))
    normalise = NormalizeDataPreprocessor(*((args.mean, args.std) if args.mean else encoder.normalisation))
    normalise.to(args.device)
    train, val = build_datasets(args, args.img_size or encoder.img_size)
    num_classes = len(train.classes)
    if 'logreg' in args.protocol and len(args.lambd) > 1:
        check_cv_folds(np.array([label for _, label in train.samples]), args.cv_folds)
    torch.manual_seed(args.seed)

    def embed_once(dataset, feature):
        return cached_features(encoder, dataset, feature, normalise, args.cache_dir or None, args.batch_size,
                               args.workers)

    results = {}
    for protocol in args.protocol:
        start = time.time()
        feature = feature_of(args, protocol)
        if protocol == 'linear':
            result = run_linear_probe(args, encoder, normalise, train, val, feature, embed_once)
        else:
            (train_f, train_y), (val_f, val_y) = embed_once(train, feature), embed_once(val, feature)
            if protocol == 'logreg':
                result = logistic_regression_eval(train_f, train_y, val_f, val_y, num_classes, args.lambd,
                                                  args.cv_folds, args.seed, args.max_iter, args.device)
            else:
                scores = knn_predict(train_f, train_y, val_f, num_classes, args.knn_k, args.knn_temperature)
                result = clipped_topk_accuracy(scores, val_y)
        result.update(feature=feature, seconds=round(time.time() - start, 1))
        results[protocol] = result
        print(f'{protocol:7s} top1 {result["top1"]:6.2f}  top5 {result["top5"]:6.2f}  '
              f'({result["seconds"]} s, feature {result["feature"]})')
    report = dict(checkpoint=osp.abspath(args.checkpoint), branch=args.branch, random_init=args.random_init,
                  weights=encoder.identity, split_file=train.split_file, split_md5=train.split_md5,
                  percent=args.percent, seed=args.seed, num_labelled=len(train), num_val=len(val),
                  num_classes=num_classes, results=results)
    out = args.out or osp.join('work_dirs', 'frozen_eval', '{}{}_{}.json'.format(
        osp.splitext(osp.basename(args.checkpoint))[0], '_random-init' if args.random_init else '',
        args.split and osp.splitext(osp.basename(args.split))[0] or f'{args.percent:g}pct'))
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(report, f, indent=2, default=str)
    print(f'Results written to {out}')
    return report


def main(argv=None) -> dict:
    return run_frozen_eval(parse_args(argv))


if __name__ == '__main__':
    main()
