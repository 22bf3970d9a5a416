"""Small-scale reproduction on Fashion-MNIST: does ExtreMA pretraining transfer better than random init?

    # learning curve: frozen k-NN / logistic regression at 1% labels of every checkpoint of a run,
    # on four features (instance vector, pre-norm cls, mean patch tokens, their concatenation),
    # with random init and raw pixels as references, and the collapse diagnostics
    python tools/reproduce.py curve work_dirs/byol/iter_*.pth --data-root data/fashion_mnist \\
        --test-per-class 200 --out work_dirs/byol/curve.json
    python tools/reproduce.py markdown work_dirs/byol/curve.json     # the rows as a markdown table

Data: ``python tools/prepare_fashion_mnist.py --out data/fashion_mnist`` (60,000 train, 10,000 val).
The labelled set is a class-balanced draw of train/ (``--percent``, ``--seed``); the test set is val/,
all of it or ``--test-per-class`` images of each class. Measurements: docs/reproduction.md.
"""
import argparse
import json
import os
import os.path as osp
import re
import sys
from collections import Counter

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import extrema  # noqa: E402,F401  (shims and registration)
from extrema.data.subsets import LabelledImageFolder  # noqa: E402
from extrema.evaluation.diagnostics import effective_rank, feature_std  # noqa: E402
from extrema.evaluation.features import extract_features, knn_predict  # noqa: E402
from extrema.evaluation.frozen import FrozenEncoder, image_label_batches  # noqa: E402
from extrema.evaluation.logistic import logistic_regression_eval  # noqa: E402
from extrema.evaluation.metrics import clipped_topk_accuracy  # noqa: E402
from extrema.models.data_preprocessor import NormalizeDataPreprocessor  # noqa: E402

FEATURES = ('instance', 'cls', 'mean_tokens', 'concat')
CURVE_LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2)


def labelled_sets(data_root: str, percent: float, test_per_class, seed: int, img_size: int = 32):
    """(labelled train subset, test set) with frozen_eval.py's centre-crop transform."""
    transform = dict(input_size=img_size, crop_pct=0.875, interpolation='bicubic')
    train = LabelledImageFolder(data_root, 'train', percent=percent, seed=seed, transform=transform)
    test = LabelledImageFolder(data_root, 'val', transform=transform)
    if test_per_class:  # the first images of each class in file order: the same subset for every run
        seen, kept = Counter(), []
        for path, label in test.samples:
            if seen[label] < test_per_class:
                kept.append((path, label))
                seen[label] += 1
        test.samples = kept
    return train, test


def encoder_features(encoder: FrozenEncoder, dataset, batch_size: int = 250) -> tuple:
    """{feature: (N, C)} from one forward per batch, and the labels."""
    normalise = NormalizeDataPreprocessor(*encoder.normalisation).to(encoder.device)  # the pretraining's

    def embed(images):
        out = encoder.model.forward_features(normalise.normalize(images))
        mean_tokens = out['tokens'][-1].mean(dim=1)
        return torch.cat([out['instance'], out['cls'], mean_tokens], dim=1)

    stacked, labels = extract_features(embed, image_label_batches(dataset, batch_size, 0), encoder.device)
    instance, cls, mean_tokens = stacked.split(encoder.embed_dim, dim=1)
    concat = torch.cat([F.normalize(f, dim=1) for f in (instance, cls, mean_tokens)], dim=1)
    return dict(instance=instance, cls=cls, mean_tokens=mean_tokens, concat=concat), labels


def pixel_features(dataset, batch_size: int = 500) -> tuple:
    """Raw grey levels (the three channels of a Fashion-MNIST image are equal), flattened."""
    return extract_features(lambda images: images[:, 0].flatten(1).float() / 255.,
                            image_label_batches(dataset, batch_size, 0))


def frozen_scores(train_f, train_y, test_f, test_y, num_classes: int, lambdas, seed: int = 0) -> dict:
    knn = clipped_topk_accuracy(knn_predict(train_f, train_y, test_f, num_classes), test_y)['top1']
    logreg = logistic_regression_eval(train_f, train_y, test_f, test_y, num_classes, lambdas, 3, seed)
    return dict(knn=round(knn, 2), logreg=round(logreg['top1'], 2), lambd=logreg['lambd'])


def checkpoint_step(path: str) -> int:
    """Training step from an mmengine iteration checkpoint's name (iter_<step>.pth), else -1."""
    match = re.search(r'iter_(\d+)', osp.basename(path))
    return int(match.group(1)) if match else -1


def evaluate_encoder(encoder: FrozenEncoder, train, test, lambdas, seed: int, features=FEATURES) -> dict:
    train_f, train_y = encoder_features(encoder, train)
    test_f, test_y = encoder_features(encoder, test)
    row = dict(feat_std=round(feature_std(test_f['instance']), 4),
               eff_rank=round(effective_rank(test_f['instance']), 2))
    for feature in features:
        row[feature] = frozen_scores(train_f[feature], train_y, test_f[feature], test_y, len(train.classes),
                                     lambdas, seed)
    return row


def curve(args) -> list:
    torch.set_num_threads(args.threads)
    train, test = labelled_sets(args.data_root, args.percent, args.test_per_class, args.seed)
    rows = []
    if args.out and osp.isfile(args.out):
        with open(args.out) as f:
            rows = json.load(f)['rows']
    done = {row['name'] for row in rows}

    def record(name, step, row):
        rows.append(dict(name=name, step=step, **row))
        print(json.dumps(rows[-1]), flush=True)
        if args.out:
            os.makedirs(osp.dirname(osp.abspath(args.out)) or '.', exist_ok=True)
            with open(args.out, 'w') as f:
                json.dump(dict(percent=args.percent, seed=args.seed, num_labelled=len(train),
                               num_test=len(test), rows=rows), f, indent=1)

    if args.references and 'raw pixels' not in done:
        train_f, train_y = pixel_features(train)
        test_f, test_y = pixel_features(test)
        record('raw pixels', 0, dict(feat_std=round(feature_std(test_f), 4), eff_rank=round(effective_rank(test_f), 2),
                                     pixels=frozen_scores(train_f, train_y, test_f, test_y, len(train.classes),
                                                          args.lambd, args.seed)))
    for path in args.checkpoints:
        if args.references and 'random init' not in done:
            done.add('random init')
            record('random init', 0, evaluate_encoder(FrozenEncoder(path, random_init=True, seed=args.seed),
                                                      train, test, args.lambd, args.seed))
        if path in done:
            continue
        record(path, checkpoint_step(path), evaluate_encoder(FrozenEncoder(path), train, test, args.lambd, args.seed))
    return rows


def markdown(paths) -> str:
    """The rows of curve JSON files as one markdown table (instance features; best other feature)."""
    lines = ['| run | step | k-NN 1% | logreg 1% | feat std | eff. rank | best feature (k-NN / logreg) |',
             '|---|---|---|---|---|---|---|']
    for path in paths:
        with open(path) as f:
            rows = json.load(f)['rows']
        for row in sorted(rows, key=lambda row: (row['name'].endswith('.pth'), osp.dirname(row['name']), row['step'])):
            if 'pixels' in row:
                scores, best = row['pixels'], ''
            else:
                scores = row['instance']
                name = max(FEATURES, key=lambda feature: row[feature]['knn'] + row[feature]['logreg'])
                best = f"{name} ({row[name]['knn']:.2f} / {row[name]['logreg']:.2f})"
            run = osp.basename(osp.dirname(row['name'])) if row['name'].endswith('.pth') else row['name']
            lines.append(f"| {run} | {row['step']} | {scores['knn']:.2f} | {scores['logreg']:.2f} | "
                         f"{row['feat_std']:.4f} | {row['eff_rank']:.1f} | {best} |")
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    c = sub.add_parser('curve', help='frozen scores of checkpoints (learning curve)')
    c.add_argument('checkpoints', nargs='+')
    c.add_argument('--data-root', default='data/fashion_mnist')
    c.add_argument('--percent', type=float, default=1.)
    c.add_argument('--test-per-class', type=int, help='default: the whole val/ folder')
    c.add_argument('--seed', type=int, default=0)
    c.add_argument('--lambd', type=float, nargs='+', default=list(CURVE_LAMBDAS))
    c.add_argument('--no-references', dest='references', action='store_false',
                   help='skip the random-init and raw-pixel rows')
    c.add_argument('--threads', type=int, default=1)
    c.add_argument('--out', help='JSON of the rows; rows already there are kept and not recomputed')
    m = sub.add_parser('markdown', help='curve JSON files as a markdown table')
    m.add_argument('curves', nargs='+')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.command == 'curve':
        return curve(args)
    print(markdown(args.curves))


if __name__ == '__main__':
    main()
