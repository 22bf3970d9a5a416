"""Small-scale reproduction on Fashion-MNIST: does ExtreMA pretraining transfer better than random init?

    # learning curve: frozen k-NN / logistic regression at 1% labels of every checkpoint of a run,
    # on four features (instance vector, pre-norm cls, mean patch tokens, their concatenation),
    # with random init and raw pixels as references (--pca 64: also the pixels' top 64 principal
    # components, a linear floor learnt without labels), and the collapse diagnostics
    python tools/reproduce.py curve work_dirs/byol/iter_*.pth --data-root data/fashion_mnist \\
        --test-per-class 200 --out work_dirs/byol/curve.json
    python tools/reproduce.py markdown work_dirs/byol/curve.json     # the rows as a markdown table

    # the 1% / 10% table: k-NN, logistic regression and fine-tuning (lr chosen on a held-out
    # fifth of the labelled set) on the whole test folder, with random init and raw pixels
    python tools/reproduce.py table --rows "ExtreMA InfoNCE=pretrain/zoo/.../teacher_backbone.pth" \\
        "MAE=work_dirs/mae/iter_1872.pth" --data-root data/fashion_mnist_full

    # everything at once (the GPU setting of tools/demo.py): the BYOL, InfoNCE and MAE pretraining
    # runs, their learning curves, the mask-ratio / number-of-masks ablations and their plot, the
    # table, and the segmentation seeds from the InfoNCE run against random init
    python tools/reproduce.py all --data-root data/fashion_mnist --work-dir work_dirs/reproduction

Data: ``python tools/prepare_fashion_mnist.py --out data/fashion_mnist`` (60,000 train, 10,000 val).
The labelled set is a class-balanced draw of train/ (``--percent``, ``--seed``); the test set is val/,
all of it or ``--test-per-class`` images of each class. Measurements: docs/reproduction.md.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import statistics
import sys
import time
from collections import Counter

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import extrema  # noqa: E402,F401  (shims and registration)
from extrema.data.fashion_ade import generate_fashion_ade  # noqa: E402
from extrema.data.subsets import LabelledImageFolder  # noqa: E402
from extrema.engine.launch import build_runner, setup_config  # noqa: E402
from extrema.evaluation.diagnostics import effective_rank, feature_std  # noqa: E402
from extrema.evaluation.features import extract_features, knn_predict  # noqa: E402
from extrema.evaluation.frozen import FrozenEncoder, image_label_batches  # noqa: E402
from extrema.evaluation.logistic import DEFAULT_LAMBDAS, logistic_regression_eval  # noqa: E402
from extrema.evaluation.metrics import clipped_topk_accuracy  # noqa: E402
from extrema.models.data_preprocessor import NormalizeDataPreprocessor  # noqa: E402

FEATURES = ('instance', 'cls', 'mean_tokens', 'concat')
CURVE_LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2)
FINETUNE_CONFIGS = {1: 'semi_sup/configs/finetune_extrema-tiny_fashion-mnist-1pct.py',
                    10: 'semi_sup/configs/finetune_extrema-tiny_fashion-mnist-10pct.py'}
PROTOCOLS = ('knn', 'logreg', 'finetune')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# The whole reproduction (``all``): the table's pretrained rows and their configs, the ablation runs
# (mask ratio, number of masks) of the 1-epoch InfoNCE config, the segmentation schedule.
PRETRAIN_ROWS = {
    'ExtreMA BYOL': 'pretrain/configs/extrema_vit-tiny-p4_mask08x5_1xb128-byol-pred10x-4e_fashion-mnist-60k-32px.py',
    'ExtreMA InfoNCE': 'pretrain/configs/extrema_vit-tiny-p4_mask08x5_1xb128-infonce-4e_fashion-mnist-60k-32px.py',
    'MAE': 'pretrain/configs/mae_vit-tiny-p4_1xb128-4e_fashion-mnist-60k-32px.py',
}
ABLATION_CONFIG = 'pretrain/configs/extrema_vit-tiny-p4_mask08x5_1xb128-infonce-1e_fashion-mnist-60k-32px.py'
ABLATIONS = {'mask 0.5': (0.5, 1), 'mask 0.75': (0.75, 1), 'mask 0.8': (0.8, 1), 'mask 0.9': (0.9, 1),
             'mask 0.8, K 5': (0.8, 5)}
SEG_CONFIGS = {'fine-tuned': 'mmseg_configs/upernet_extrema-tiny-p4_1xb8-2000it_fashion-ade-48x48.py',
               'frozen trunk': 'mmseg_configs/upernet_extrema-tiny-p4_1xb8-frozen-500it_fashion-ade-48x48.py'}
SEG_ROW = 'ExtreMA InfoNCE'


EVAL_TRANSFORM = dict(input_size=32, crop_pct=0.875, interpolation='bicubic')  # frozen_eval.py's centre crop


def labelled_sets(data_root: str, percent: float, test_per_class, seed: int):
    """(labelled train subset, test set) with frozen_eval.py's centre-crop transform."""
    train = LabelledImageFolder(data_root, 'train', percent=percent, seed=seed, transform=EVAL_TRANSFORM)
    test = LabelledImageFolder(data_root, 'val', transform=EVAL_TRANSFORM)
    if test_per_class:  # the first images of each class in file order: the same subset for every run
        seen, kept = Counter(), []
        for path, label in test.samples:
            if seen[label] < test_per_class:
                kept.append((path, label))
                seen[label] += 1
        test.samples = kept
    return train, test


def encoder_features(encoder: FrozenEncoder, dataset, batch_size: int = 250) -> tuple:
    """{feature: (N, C)} from one forward per batch, and the labels. An encoder without
    class-attention blocks (MAE, MoCo v3) has the mean of its patch tokens only."""
    normalise = NormalizeDataPreprocessor(*encoder.normalisation).to(encoder.device)  # the pretraining's
    if not has_instance(encoder):
        tokens, labels = extract_features(lambda images: encoder.embed(normalise.normalize(images), 'mean_tokens'),
                                          image_label_batches(dataset, batch_size, 0), encoder.device)
        return dict(mean_tokens=tokens), labels

    def embed(images):
        out = encoder.model.forward_features(normalise.normalize(images))
        mean_tokens = out['tokens'][-1].mean(dim=1)
        return torch.cat([out['instance'], out['cls'], mean_tokens], dim=1)

    stacked, labels = extract_features(embed, image_label_batches(dataset, batch_size, 0), encoder.device)
    instance, cls, mean_tokens = stacked.split(encoder.embed_dim, dim=1)
    concat = torch.cat([F.normalize(f, dim=1) for f in (instance, cls, mean_tokens)], dim=1)
    return dict(instance=instance, cls=cls, mean_tokens=mean_tokens, concat=concat), labels


def has_instance(encoder: FrozenEncoder) -> bool:
    return len(getattr(encoder.model, 'blocks_token', ())) > 0


def main_feature(encoder: FrozenEncoder) -> str:
    """The representation a method's frozen protocols use: ExtreMA's instance vector, else
    the mean patch token."""
    return 'instance' if has_instance(encoder) else 'mean_tokens'


def pixel_features(dataset, batch_size: int = 500) -> tuple:
    """Raw grey levels (the three channels of a Fashion-MNIST image are equal), flattened."""
    return extract_features(lambda images: images[:, 0].flatten(1).float() / 255.,
                            image_label_batches(dataset, batch_size, 0))


def pixel_pca(data_root: str, dims) -> dict:
    """{dim: (mean, projection)}: the top principal components of the raw pixels of every
    train/ image, no labels used (the images the pretraining sees), from the exact covariance."""
    pixels, _ = pixel_features(LabelledImageFolder(data_root, 'train', transform=EVAL_TRANSFORM))
    pixels = pixels.double()
    mean = pixels.mean(dim=0)
    centred = pixels - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    return {dim: (mean.float(), vectors[:, -dim:].flip(1).float()) for dim in dims}


def frozen_scores(train_f, train_y, test_f, test_y, num_classes: int, lambdas, seed: int = 0) -> dict:
    knn = clipped_topk_accuracy(knn_predict(train_f, train_y, test_f, num_classes), test_y)['top1']
    logreg = logistic_regression_eval(train_f, train_y, test_f, test_y, num_classes, lambdas, 3, seed)
    return dict(knn=round(knn, 2), logreg=round(logreg['top1'], 2), lambd=logreg['lambd'])


def checkpoint_step(path: str) -> int:
    """Training step from an mmengine iteration checkpoint's name (iter_<step>.pth), else -1."""
    match = re.search(r'iter_(\d+)', osp.basename(path))
    return int(match.group(1)) if match else -1


def evaluate_encoder(encoder: FrozenEncoder, train, test, lambdas, seed: int) -> dict:
    train_f, train_y = encoder_features(encoder, train)
    test_f, test_y = encoder_features(encoder, test)
    main = main_feature(encoder)
    row = dict(feature=main, feat_std=round(feature_std(test_f[main]), 4), eff_rank=round(effective_rank(test_f[main]), 2))
    for feature in train_f:
        row[feature] = frozen_scores(train_f[feature], train_y, test_f[feature], test_y, len(train.classes),
                                     lambdas, seed)
    return row


def check_checkpoints(paths, hint: str = '') -> None:
    """Every checkpoint must exist before the first score is computed."""
    missing = [path for path in paths if not osp.isfile(path)]
    if missing:
        raise SystemExit(f'No such checkpoint: {", ".join(missing)}.{hint}')


def curve(args) -> list:
    check_checkpoints(args.checkpoints)
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

    pca_dims = [dim for dim in args.pca if f'raw pixels, PCA {dim}' not in done]
    pixels_row = args.references and 'raw pixels' not in done
    if pixels_row or pca_dims:
        train_f, train_y = pixel_features(train)
        test_f, test_y = pixel_features(test)
    if pixels_row:
        record('raw pixels', 0, dict(feat_std=round(feature_std(test_f), 4), eff_rank=round(effective_rank(test_f), 2),
                                     pixels=frozen_scores(train_f, train_y, test_f, test_y, len(train.classes),
                                                          args.lambd, args.seed)))
    if pca_dims:
        for dim, (mean, projection) in pixel_pca(args.data_root, pca_dims).items():
            train_p, test_p = (train_f - mean) @ projection, (test_f - mean) @ projection
            record(f'raw pixels, PCA {dim}', 0, dict(
                feat_std=round(feature_std(test_p), 4), eff_rank=round(effective_rank(test_p), 2),
                pixels=frozen_scores(train_p, train_y, test_p, test_y, len(train.classes), args.lambd, args.seed)))
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
                scores = row[row.get('feature', 'instance')]
                name = max((f for f in FEATURES if f in row), key=lambda f: row[f]['knn'] + row[f]['logreg'])
                best = f"{name} ({row[name]['knn']:.2f} / {row[name]['logreg']:.2f})"
            run = osp.basename(osp.dirname(row['name'])) if row['name'].endswith('.pth') else row['name']
            lines.append(f"| {run} | {row['step']} | {scores['knn']:.2f} | {scores['logreg']:.2f} | "
                         f"{row['feat_std']:.4f} | {row['eff_rank']:.1f} | {best} |")
    return '\n'.join(lines)


# ------------------------------------------------------------------ the 1% / 10% table

def finetune(args, checkpoint, percent: int, lr: float, held_out: bool, work_dir: str) -> float:
    """Top-1 of the fine-tuning config from ``checkpoint`` (None: random init): trained on the
    ``fit`` part of the labelled set and scored on its held-out part, or trained on all of it
    and scored on the whole test folder."""
    epochs = args.ft_epochs[percent]
    options = {f'{loader}.dataset.data_root': args.data_root for loader in LOADERS}
    options.update({'model.pretrained': checkpoint, 'optim_wrapper.optimizer.lr': lr,
                    'train_dataloader.dataset.seed': args.seed, 'randomness.seed': args.seed,
                    'train_cfg.max_epochs': epochs, 'train_cfg.val_interval': epochs,
                    'default_hooks.checkpoint': None, 'log_level': 'WARNING'})  # the score is the product
    if args.ft_batch:
        options['train_dataloader.batch_size'] = args.ft_batch
    if held_out:
        options.update({'train_dataloader.dataset.holdout': args.holdout,
                        'train_dataloader.dataset.holdout_part': 'fit',
                        'val_dataloader.dataset.data_prefix': 'train', 'val_dataloader.dataset.percent': percent,
                        'val_dataloader.dataset.seed': args.seed, 'val_dataloader.dataset.holdout': args.holdout,
                        'val_dataloader.dataset.holdout_part': 'heldout'})
    options.update(worker_options(args, LOADERS))
    cfg = setup_config(osp.join(ROOT, FINETUNE_CONFIGS[percent]), work_dir=work_dir, cfg_options=options)
    runner = build_runner(cfg)
    runner.train()
    return round(float(runner.message_hub.get_scalar('val/accuracy/top1').current()), 2)


def table(args) -> dict:
    """Frozen k-NN and logistic regression and fine-tuning (lr chosen on a held-out part of the
    labelled set) at each label fraction, on the whole test folder, for every checkpoint,
    random init (the first checkpoint's architecture) and raw pixels. Resumable: the cells
    (and rows) already in ``--out`` are kept, so that a later call may add rows or protocols."""
    torch.set_num_threads(args.threads)
    rows = dict(row.split('=', 1) for row in args.rows)
    check_checkpoints(rows.values(), ' A row is NAME=CHECKPOINT, split at the first "=", so a NAME holds no "=".')
    state = dict(cells={}, lr={}, seconds={})
    if osp.isfile(args.out):
        with open(args.out) as f:
            state = json.load(f)
    state.update(rows={**state.get('rows', {}), **rows}, settings=dict(seed=args.seed, holdout=args.holdout, ft_lrs=args.ft_lrs,
                                          ft_epochs=args.ft_epochs, ft_batch=args.ft_batch))
    cells = state['cells']

    def record(key, value, seconds, lr=None):
        cells[key] = value
        state['seconds'][key] = round(seconds, 1)
        if lr is not None:
            state['lr'][key] = lr
        print(f'{key}: {value}', flush=True)
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(state, f, indent=1)

    first = next(iter(rows.values()))
    inits = [('random init', first, True)] + [(name, path, False) for name, path in rows.items()]
    for percent in args.percent:
        train, test = labelled_sets(args.data_root, percent, None, args.seed)
        state[f'num_labelled/{percent:g}'], state['num_test'] = len(train), len(test)
        if 'knn' in args.protocol or 'logreg' in args.protocol:
            if f'raw pixels|logreg|{percent:g}' not in cells:
                start = time.time()
                train_f, train_y = pixel_features(train)
                test_f, test_y = pixel_features(test)
                scores = frozen_scores(train_f, train_y, test_f, test_y, len(train.classes), args.lambd, args.seed)
                for protocol in ('knn', 'logreg'):
                    record(f'raw pixels|{protocol}|{percent:g}', scores[protocol], time.time() - start)
            for name, path, random_init in inits:
                if f'{name}|logreg|{percent:g}' in cells:
                    continue
                start = time.time()
                encoder = FrozenEncoder(path, random_init=random_init, seed=args.seed)
                feature = main_feature(encoder)
                train_f, train_y = encoder_features(encoder, train)
                test_f, test_y = encoder_features(encoder, test)
                scores = frozen_scores(train_f[feature], train_y, test_f[feature], test_y, len(train.classes),
                                       args.lambd, args.seed)
                state.setdefault('feature', {})[name] = feature
                for protocol in ('knn', 'logreg'):
                    record(f'{name}|{protocol}|{percent:g}', scores[protocol], time.time() - start)
        if 'finetune' not in args.protocol:
            continue
        for name, path, random_init in inits:
            key = f'{name}|finetune|{percent:g}'
            if key in cells:
                continue
            checkpoint = None if random_init else path
            slug = f'{re.sub(r"[^A-Za-z0-9]+", "-", name)}_{percent:g}pct'
            held_out = {}
            for lr in args.ft_lrs:
                held_key = f'{name}|heldout lr {lr:g}|{percent:g}'
                if held_key not in cells:
                    start = time.time()
                    record(held_key, finetune(args, checkpoint, percent, lr, True,
                                              osp.join(args.work_dir, f'{slug}_lr{lr:g}_heldout')), time.time() - start)
                held_out[lr] = cells[held_key]
            best = max(args.ft_lrs, key=lambda lr: (held_out[lr], -lr))  # ties: the smaller lr
            start = time.time()
            record(key, finetune(args, checkpoint, percent, best, False, osp.join(args.work_dir, f'{slug}_test')),
                   time.time() - start, lr=best)
    print(table_markdown(state))
    return state


def table_markdown(state: dict) -> str:
    """The table: rows (random init, the checkpoints, raw pixels) by protocol and fraction."""
    cells = state['cells']
    fractions = sorted({float(key.rsplit('|', 1)[1]) for key in cells})
    columns = [(p, f) for f in fractions for p in PROTOCOLS if any(k.endswith(f'|{p}|{f:g}') for k in cells)]
    names = ['random init', *state['rows'], 'raw pixels']
    label = {'knn': 'k-NN', 'logreg': 'logreg', 'finetune': 'fine-tune'}
    lines = ['| | ' + ' | '.join(f'{label[p]} {f:g}%' for p, f in columns) + ' |',
             '|---' * (len(columns) + 1) + '|']
    for name in names:
        values = []
        for protocol, fraction in columns:
            key = f'{name}|{protocol}|{fraction:g}'
            value = f'{cells[key]:.2f}' if key in cells else '-'
            if key in state['lr']:
                value += f' (lr {state["lr"][key]:g})'
            values.append(value)
        lines.append(f'| {name} | ' + ' | '.join(values) + ' |')
    return '\n'.join(lines)


def fraction_values(items) -> dict:
    """['1=100', '10=20'] -> {1: 100, 10: 20}"""
    pairs = [item.split('=', 1) for item in items]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f'--ft-epochs takes PERCENT=EPOCHS pairs (e.g. 1=100 10=20), got {items}')
    return {int(percent): int(epochs) for percent, epochs in pairs}


# ------------------------------------------------------------------ ablation plots

def labelled_curves(items) -> dict:
    """['0.5=a.json', ...] -> {'0.5': rows of a.json, ...}"""
    curves = {}
    for item in items:
        label, path = item.split('=', 1)
        with open(path) as f:
            curves[label] = json.load(f)['rows']
    return curves


def checkpoint_rows(rows) -> list:
    return sorted((row for row in rows if row['name'].endswith('.pth')), key=lambda row: row['step'])


def plot_ablations(mask_ratio: dict, num_masks: dict, out: str) -> None:
    """Left: the last checkpoint's 1% k-NN / logistic regression against the mask ratio. Right:
    both against the step for each number of masks. Random init dotted, from the first curve."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    random = next(row for rows in (*mask_ratio.values(), *num_masks.values()) for row in rows
                  if row['name'] == 'random init')
    feature = random.get('feature', 'instance')
    for protocol, marker in (('knn', 'o'), ('logreg', 's')):
        ratios = sorted(mask_ratio, key=float)
        left.plot([float(r) for r in ratios], [checkpoint_rows(mask_ratio[r])[-1][feature][protocol] for r in ratios],
                  marker=marker, label=protocol)
        for axis in (left, right):
            axis.axhline(random[feature][protocol], linestyle=':', color='grey')
        for count, rows in sorted(num_masks.items(), key=lambda item: int(item[0])):
            rows = checkpoint_rows(rows)
            right.plot([row['step'] for row in rows], [row[feature][protocol] for row in rows], marker=marker,
                       label=f'K={count}, {protocol}')
    left.set(xlabel='mask ratio (one mask)', ylabel='top-1 at 1% labels (%)', title='mask ratio')
    right.set(xlabel='pretraining step', title='number of masks (ratio 0.8)')
    left.legend(), right.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)


# ------------------------------------------------------------------ the whole reproduction

def pretrain(config: str, work_dir: str, args, options: dict = None, epochs: int = None) -> list:
    """Train a pretraining config on ``args.data_root`` (resuming an interrupted run, skipping a
    finished one) for ``epochs`` (default: the config's); returns its checkpoints in step order."""
    finished = osp.join(work_dir, 'finished')
    if not osp.isfile(finished):
        options = {'train_dataloader.dataset.data_root': args.data_root, 'log_level': 'WARNING', **(options or {})}
        if args.pretrain_batch:
            options['train_dataloader.batch_size'] = args.pretrain_batch
        if epochs:
            options['train_cfg.max_epochs'] = epochs
        options.update(worker_options(args))
        cfg = setup_config(osp.join(ROOT, config), work_dir=work_dir, resume=True, cfg_options=options)
        build_runner(cfg).train()
        open(finished, 'w').close()
    return sorted(glob.glob(osp.join(work_dir, 'iter_*.pth')), key=checkpoint_step)


def worker_options(args, loaders=('train_dataloader',)) -> dict:
    """``--workers`` for each of ``loaders`` (none: the config's)."""
    if args.workers is None:
        return {}
    options = {}
    for loader in loaders:
        options.update({f'{loader}.num_workers': args.workers, f'{loader}.persistent_workers': args.workers > 0})
    return options


def learning_curve(checkpoints, out: str, references: bool, args) -> list:
    """Frozen scores of every checkpoint at the smallest label fraction."""
    return curve(argparse.Namespace(checkpoints=checkpoints, data_root=args.data_root, percent=float(min(args.percent)),
                                    test_per_class=args.test_per_class, seed=args.seed, lambd=args.curve_lambd,
                                    references=references, pca=[], threads=args.threads, out=out))


def segmentation(checkpoint: str, args, state: dict, save) -> dict:
    """Last-validation mIoU of the tiny UperNet, fine-tuned and on a frozen trunk, from
    ``checkpoint`` and from random init for every seed, and their mean and sample std; runs
    already in ``state`` are kept."""
    root = args.seg_data_root or osp.join(args.work_dir, 'fashion_ade')
    if not args.seg_data_root:
        generate_fashion_ade(root, train_images=args.seg_images[0], val_images=args.seg_images[1])
    runs = state.setdefault('runs', {})
    cases = [(protocol, init, pretrained, seed) for protocol in SEG_CONFIGS for seed in args.seg_seeds
             for init, pretrained in (('pretrained', checkpoint), ('random init', None))]
    for protocol, init, pretrained, seed in cases:
        key = f'{protocol}|{init}|{seed}'
        if key in runs:
            continue
        options = {f'{loader}.dataset.data_root': root for loader in LOADERS}
        # The score is the run's product, kept in ``state``; no weights are written.
        options.update({'model.pretrained': pretrained, 'randomness.seed': seed, 'log_level': 'WARNING',
                        'default_hooks.checkpoint': None})
        if args.seg_iters:  # the poly decay follows the loop (setup_config)
            options.update({'train_cfg.max_iters': args.seg_iters, 'train_cfg.val_interval': args.seg_iters})
        # The validation loaders too, so that --workers 0 starts no worker process at all.
        options.update(worker_options(args, LOADERS))
        work_dir = osp.join(args.work_dir, 'segmentation', f'{protocol.split()[0]}_{init.split()[0]}_seed{seed}')
        runner = build_runner(setup_config(osp.join(ROOT, SEG_CONFIGS[protocol]), work_dir=work_dir,
                                           cfg_options=options))
        runner.train()
        runs[key] = round(float(runner.message_hub.get_scalar('val/mIoU').current()), 2)
        save()
    for protocol in SEG_CONFIGS:
        for init in ('pretrained', 'random init'):
            scores = [runs[f'{protocol}|{init}|{seed}'] for seed in args.seg_seeds]
            state[f'{protocol}|{init}'] = dict(mean=round(statistics.mean(scores), 2), seeds=args.seg_seeds,
                                               std=round(statistics.stdev(scores), 2) if len(scores) > 1 else None)
    state['checkpoint'] = checkpoint
    return state


def reproduce_all(args) -> dict:
    """Pretraining runs, learning curves, ablations and their plot, the table and the segmentation
    seeds, into ``args.work_dir``; resumable stage by stage (reproduction.json), and summed up in
    reproduction.md."""
    if not osp.isdir(osp.join(args.data_root, 'train')):
        raise SystemExit(f'{args.data_root}/train does not exist: make the data with '
                         f'python tools/prepare_fashion_mnist.py --out {args.data_root}')
    torch.set_num_threads(args.threads)
    path = osp.join(args.work_dir, 'reproduction.json')
    state = json.load(open(path)) if osp.isfile(path) else {}

    def save():
        os.makedirs(args.work_dir, exist_ok=True)
        with open(path + '.tmp', 'w') as f:
            json.dump(state, f, indent=1)
        os.replace(path + '.tmp', path)

    def timed(stage, run):
        if stage not in state:
            start = time.time()
            state[stage] = dict(result=run(), seconds=round(time.time() - start, 1))
            save()
        return state[stage]['result']

    final, curves = {}, {}
    for index, (name, config) in enumerate(PRETRAIN_ROWS.items()):
        slug = re.sub(r'[^A-Za-z0-9]+', '-', name).lower()
        work_dir = osp.join(args.work_dir, slug)
        checkpoints = timed(f'pretrain {name}', lambda: pretrain(config, work_dir, args, epochs=args.pretrain_epochs))
        final[name] = checkpoints[-1]
        curves[name] = osp.join(args.work_dir, slug, 'curve.json')
        timed(f'curve {name}', lambda: learning_curve(checkpoints, curves[name], index == 0, args))
    ablation_curves = {}
    for index, (name, (ratio, masks)) in enumerate(ABLATIONS.items()):
        slug = 'ablation_' + re.sub(r'[^A-Za-z0-9.]+', '-', name)
        checkpoints = timed(f'pretrain {name}', lambda: pretrain(
            ABLATION_CONFIG, osp.join(args.work_dir, slug), args,
            {'model.mask_ratio': ratio, 'model.num_masks': masks}))
        ablation_curves[name] = osp.join(args.work_dir, slug, 'curve.json')
        timed(f'curve {name}', lambda: learning_curve(checkpoints, ablation_curves[name], index == 0, args))
    plot = osp.join(args.work_dir, 'ablations.png')
    timed('ablation plot', lambda: plot_ablations(
        labelled_curves([f'{ratio:g}={ablation_curves[n]}' for n, (ratio, masks) in ABLATIONS.items() if masks == 1]),
        labelled_curves([f'{masks}={ablation_curves[n]}' for n, (ratio, masks) in ABLATIONS.items() if ratio == 0.8]),
        plot))
    table_args = argparse.Namespace(**{**vars(args), 'rows': [f'{n}={c}' for n, c in final.items()],
                                       'work_dir': osp.join(args.work_dir, 'table'),
                                       'out': osp.join(args.work_dir, 'table', 'table.json')})
    timed('table', lambda: table(table_args) and table_args.out)
    with open(table_args.out) as f:
        table_state = json.load(f)
    seg_state = state.setdefault('segmentation', {})
    segmentation(final[SEG_ROW], args, seg_state, save)
    save()
    lines = ['# The small-scale reproduction', '',
             f'Data: `{args.data_root}`; seed {args.seed}; stage seconds in reproduction.json.', '',
             '## The 1% / 10% table (top-1 %, the whole test folder)', '', table_markdown(table_state), '',
             f'## Learning curves ({min(args.percent)}% labels)', '', markdown(curves.values()), '',
             '## Ablations', '', markdown(ablation_curves.values()), '', '![ablations](ablations.png)', '',
             f'## Segmentation (mIoU %, {SEG_ROW} against random init, seeds {args.seg_seeds})', '',
             '| trunk | backbone | mean | std |', '|---|---|---|---|']
    for protocol in SEG_CONFIGS:
        for init in ('pretrained', 'random init'):
            cell = seg_state[f'{protocol}|{init}']
            std = '-' if cell['std'] is None else f'{cell["std"]:.2f}'
            lines.append(f'| {protocol} | {init} | {cell["mean"]:.2f} | {std} |')
    with open(osp.join(args.work_dir, 'reproduction.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return state


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
    c.add_argument('--pca', type=int, nargs='+', default=[], metavar='DIM',
                   help='also the raw pixels projected on their top DIM principal components (of all train/ images)')
    c.add_argument('--threads', type=int, default=1)
    c.add_argument('--out', help='JSON of the rows; rows already there are kept and not recomputed')
    common = argparse.ArgumentParser(add_help=False)  # the table's options, also those of `all`
    common.add_argument('--percent', type=int, nargs='+', default=[1, 10], choices=sorted(FINETUNE_CONFIGS))
    common.add_argument('--protocol', nargs='+', default=list(PROTOCOLS), choices=PROTOCOLS)
    common.add_argument('--seed', type=int, default=0, help='labelled draw, hold-out draw, fine-tuning seed')
    common.add_argument('--lambd', type=float, nargs='+', default=list(DEFAULT_LAMBDAS),
                        help="logistic regression's L2 weights (3-fold cross-validated), frozen_eval.py's by default")
    common.add_argument('--holdout', type=float, default=0.2, help='fraction of the labelled set that scores the lrs')
    common.add_argument('--ft-lrs', type=float, nargs='+', default=[1e-3, 4e-3, 1e-2])
    common.add_argument('--ft-epochs', nargs='+', default=['1=100', '10=40'], metavar='PERCENT=EPOCHS')
    common.add_argument('--ft-batch', type=int, help="default: the fine-tuning config's")
    common.add_argument('--threads', type=int, default=1)
    common.add_argument('--workers', type=int, help="data loader workers (default: the configs')")
    t = sub.add_parser('table', parents=[common],
                       help='k-NN / logistic regression / fine-tuning at 1%% and 10%% of every row')
    t.add_argument('--rows', nargs='+', required=True, metavar='NAME=CHECKPOINT',
                   help='the pretrained rows; random init takes the first one\'s architecture')
    t.add_argument('--data-root', default='data/fashion_mnist_full')
    t.add_argument('--work-dir', default='work_dirs/reproduce_table', help='the fine-tuning runs')
    t.add_argument('--out', default='work_dirs/reproduce_table/table.json')
    r = sub.add_parser('all', parents=[common], help='pretraining runs, curves, ablations, table, segmentation')
    r.add_argument('--data-root', default='data/fashion_mnist', help='pretraining (train/), labels and test (val/)')
    r.add_argument('--work-dir', default='work_dirs/reproduction')
    r.add_argument('--test-per-class', type=int, default=200, help='test images per class of the learning curves')
    r.add_argument('--curve-lambd', type=float, nargs='+', default=list(CURVE_LAMBDAS))
    r.add_argument('--pretrain-batch', type=int, help="default: the pretraining configs'")
    r.add_argument('--pretrain-epochs', type=int, help="the BYOL, InfoNCE and MAE runs' (default: the configs')")
    r.add_argument('--seg-data-root', help='Fashion-ADE (default: made under the work dir)')
    r.add_argument('--seg-images', type=int, nargs=2, default=[600, 300], metavar=('TRAIN', 'VAL'),
                   help='Fashion-ADE scenes to make when --seg-data-root is not given')
    r.add_argument('--seg-iters', type=int, help="of both segmentation protocols (default: the configs')")
    r.add_argument('--seg-seeds', type=int, nargs='+', default=list(range(6)))
    a = sub.add_parser('plot', help='the mask-ratio and number-of-masks ablation plots from curve JSON files')
    a.add_argument('--mask-ratio', nargs='+', required=True, metavar='RATIO=CURVE.json')
    a.add_argument('--num-masks', nargs='+', required=True, metavar='K=CURVE.json')
    a.add_argument('--out', required=True, help='PNG file')
    m = sub.add_parser('markdown', help='curve JSON files as a markdown table')
    m.add_argument('curves', nargs='+')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.command == 'curve':
        return curve(args)
    if args.command in ('table', 'all'):
        args.ft_epochs = fraction_values(args.ft_epochs)
        missing = sorted(set(args.percent) - set(args.ft_epochs))
        if 'finetune' in args.protocol and missing:
            raise SystemExit(f'--ft-epochs has no entry for {missing}%')
        return table(args) if args.command == 'table' else reproduce_all(args)
    if args.command == 'plot':
        return plot_ablations(labelled_curves(args.mask_ratio), labelled_curves(args.num_masks), args.out)
    print(markdown(args.curves))


if __name__ == '__main__':
    main()
