"""The main job: the whole ExtreMA story on the embedded Fashion-MNIST data, on one CPU.

    python tools/demo.py                 # default run (CPU: <= 15 min), writes outputs/demo/report.md
    python tools/demo.py --fresh         # redo every stage
    python tools/demo.py --quick         # the smallest setting (seconds per stage), used by the tests

Stages (each resumable: a finished stage is reused unless --fresh):
    data          Fashion-MNIST folders (a small pretraining subset, the full 60k/10k) and Fashion-ADE scenes
    pretrain      a brief ExtreMA tiny pretraining from scratch (the zoo entry's config), through
                  tools/train.py's path, to show the pipeline and its loss / collapse-check curves
    frozen        k-NN and logistic regression at 1% / 10% labels (extrema.evaluation.frozen_eval)
    finetune      end-to-end fine-tuning at 1% / 10% labels (semi_sup/configs/finetune_extrema-tiny_...)
    segmentation  UperNet + ExtreMAViT on Fashion-ADE (mmseg_configs/upernet_extrema-tiny-...)
    analysis      attention maps, feature inversion, locality probe (tools/analysis/)
    reproduction  with a GPU only: the whole small-scale reproduction (tools/reproduce.py all: the BYOL,
                  InfoNCE and MAE runs, their curves, the ablations, the 1% / 10% table, six segmentation seeds)
    report        report.md with the tables and pictures
Every transfer runs twice: from the transfer checkpoint and from a random initialisation of the same
architecture. On a CPU the transfer checkpoint is the model zoo entry (pretrain/zoo/, pretrained
long on all 60,000 images); the brief run only shows the pipeline. With a GPU the pretrain stage
runs the zoo entry's whole recipe and the tables transfer from that fresh checkpoint
(``--transfer`` chooses either way). The report names the checkpoint behind every table.
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import extrema  # noqa: E402,F401  (shims and registration)
from mmengine.hooks import Hook  # noqa: E402

from extrema.data.fashion_ade import generate_fashion_ade  # noqa: E402
from extrema.data.fashion_mnist import CLASSES, export_image_folder  # noqa: E402
from extrema.engine.launch import build_runner, setup_config  # noqa: E402
from extrema.evaluation import frozen_eval  # noqa: E402

# The model zoo entry the tables transfer from on a CPU, and its pretraining config.
ZOO_ENTRY = 'pretrain/zoo/extrema_vit-tiny-p4_mask08x5_fashion-mnist-60k-32px'
ZOO_WEIGHTS = ZOO_ENTRY + '/teacher_backbone.pth'
PRETRAIN_CONFIG = ZOO_ENTRY + '/config.py'
FINETUNE_CONFIGS = {1: 'semi_sup/configs/finetune_extrema-tiny_fashion-mnist-1pct.py',
                    10: 'semi_sup/configs/finetune_extrema-tiny_fashion-mnist-10pct.py'}
SEG_CONFIG = 'mmseg_configs/upernet_extrema-tiny-p4_1xb8-500it_fashion-ade-48x48.py'
STAGES = ('data', 'pretrain', 'frozen', 'finetune', 'segmentation', 'analysis', 'reproduction', 'report')
TRANSFER_STAGES = ('frozen', 'finetune', 'segmentation', 'analysis')
INITS = ('pretrained', 'random')
LOSS_TITLES = {'byol': 'BYOL', 'infonce': 'InfoNCE'}
FRACTIONS = (1, 10)

SETTINGS = {
    # images per class for pretraining (None: all), epochs (None: the config's), ...; `seconds` are the
    # planned stage costs for the ETA (measured on an idle 2-core CPU, see README). Fine-tuning epochs
    # None: the fine-tuning configs' schedules (the 1% one is short: docs/reproduction.md has the longer, held-out-lr ones).
    'default': dict(workers=None, transfer='zoo', pretrain_per_class=400, val_per_class=20, full_per_class=None,
                    full_val_per_class=None, pretrain_epochs=1, pretrain_batch=128,
                    finetune_fractions=(1,), finetune_epochs={1: None}, finetune_batch={1: None},
                    seg_iters=100, seg_train=600, seg_val=60,
                    inversion_steps=60, locality_crops=48,
                    seconds=dict(data=15, pretrain=60, frozen=230, finetune=445, segmentation=110,
                                 analysis=35, report=5)),
    # With a GPU: the zoo entry's whole recipe on all 60,000 images, the tables from it, and the whole
    # small-scale reproduction with fine-tuning schedules long enough to converge at 10% labels too.
    'gpu': dict(workers=None, transfer='pretrained', pretrain_per_class=None, val_per_class=20, full_per_class=None,
                reproduction=['--ft-epochs', '1=100', '10=50', '--threads', '8'],
                full_val_per_class=None, pretrain_epochs=None, pretrain_batch=128,
                finetune_fractions=FRACTIONS, finetune_epochs={1: None, 10: None}, finetune_batch={1: None, 10: None},
                seg_iters=500, seg_train=600, seg_val=60,
                inversion_steps=200, locality_crops=48,
                seconds=dict(data=60, pretrain=600, frozen=30, finetune=120, segmentation=60,
                             analysis=20, reproduction=3600, report=5)),
    'quick': dict(workers=0, transfer='zoo', frozen_lambd=0.0025, pretrain_per_class=12, val_per_class=6, full_per_class=100,
                  full_val_per_class=5, pretrain_epochs=2, pretrain_batch=24, finetune_fractions=FRACTIONS, finetune_epochs={1: 2, 10: 2},
                  finetune_batch={1: 4, 10: 20},
                  seg_iters=4, seg_train=16, seg_val=4,
                  inversion_steps=3, locality_crops=8,
                  seconds=dict(data=5, pretrain=15, frozen=10, finetune=20, segmentation=15, analysis=10,
                               report=1)),
}


def sparkline(values, width: int = 24) -> str:
    if not values:
        return ''
    bars = '▁▂▃▄▅▆▇█'
    step = max(1, len(values) // width)
    points = [sum(values[i:i + step]) / len(values[i:i + step]) for i in range(0, len(values), step)][-width:]
    low, high = min(points), max(points)
    return ''.join(bars[int((v - low) / (high - low + 1e-12) * (len(bars) - 1))] for v in points)


def clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f'{seconds // 60:d}:{seconds % 60:02d}'


class Progress:
    """Stage headers and an overall ETA: the current stage from its own rate, the later stages
    from their planned seconds scaled by how fast the finished stages ran against their plan."""

    def __init__(self, planned: dict):
        self.planned = dict(planned)
        self.start = time.time()
        self.ran_planned = self.ran_actual = 0.
        self.stage, self.stage_start = None, self.start

    def eta(self, stage_fraction: float = 0.) -> float:
        speed = self.ran_actual / self.ran_planned if self.ran_planned else 1.
        stage_planned = self.planned.get(self.stage, 0)
        if stage_fraction > 0.05:
            current = (time.time() - self.stage_start) / stage_fraction * (1 - stage_fraction)
        else:
            current = stage_planned * speed * (1 - stage_fraction)
        later = list(self.planned)[list(self.planned).index(self.stage) + 1:] if self.stage in self.planned else []
        return current + speed * sum(self.planned[name] for name in later)

    def begin(self, stage: str, index: int, status: str = 'running'):
        self.stage, self.stage_start = stage, time.time()
        if status != 'running':
            self.planned[stage] = 0
        print(f'[{index}/{len(STAGES)}] {stage:<12} {status:<8} elapsed {clock(time.time() - self.start)}  '
              f'ETA {clock(self.eta())}', flush=True)

    def end(self, stage: str):
        actual = time.time() - self.stage_start
        if self.planned.get(stage) and actual > 5:  # a stage that found its work done says nothing of speed
            self.ran_planned += self.planned[stage]
            self.ran_actual += actual


class ProgressHook(Hook):
    """One line per logging window: iteration, the loss curve so far, the ETA."""

    priority = 'LOW'

    def __init__(self, progress: Progress, label: str, interval: int = 10):
        self.progress, self.label, self.interval = progress, label, interval
        self.losses, self.momenta, self.feat_stds = [], [], []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        hub = runner.message_hub
        self.losses.append(float(hub.get_scalar('train/loss').current()))
        for key, values in (('train/momentum', self.momenta), ('train/feat_std', self.feat_stds)):
            if key in hub.log_scalars:
                values.append(float(hub.get_scalar(key).current()))
        done = runner.iter + 1
        if done % self.interval == 0 or done == runner.max_iters:
            print(f'      {self.label:<22} iter {done:>4}/{runner.max_iters}  loss {sparkline(self.losses)} '
                  f'{self.losses[-1]:.3f}  ETA {clock(self.progress.eta(done / runner.max_iters))}', flush=True)


def run_config(config: str, work_dir: str, options: dict, progress: Progress, label: str,
               workers: int = None) -> tuple:
    """Train a config through tools/train.py's path; returns (runner, progress hook)."""
    options = dict(options, log_level='WARNING')
    cfg = setup_config(osp.join(ROOT, config), work_dir=work_dir, cfg_options=options)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if workers is not None and cfg.get(loader):  # the quick setting starts no worker processes
            cfg[loader].update(num_workers=workers, persistent_workers=workers > 0)
    runner = build_runner(cfg)
    hook = ProgressHook(progress, label)
    runner.register_hook(hook)
    runner.train()
    return runner, hook


def scalar(runner, key: str) -> float:
    return round(float(runner.message_hub.get_scalar(key).current()), 2)


def cosine_schedule(warmup: int, total: int, eta_min: float = 0.) -> list:
    """Per-iteration linear warm-up over ``warmup`` iterations, then cosine to ``eta_min`` at ``total``."""
    total = max(total, warmup + 1)
    return [dict(type='LinearLR', start_factor=1e-6, begin=0, end=warmup, by_epoch=False),
            dict(type='CosineAnnealingLR', T_max=total - warmup, eta_min=eta_min, begin=warmup, end=total,
                 by_epoch=False)]


def load_tool(path: str):
    spec = importlib.util.spec_from_file_location(osp.splitext(osp.basename(path))[0], osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Demo:
    def __init__(self, out: str, data_dir: str, settings: dict, fresh: bool, transfer: str = None):
        self.out, self.data_dir, self.s = out, data_dir, settings
        self.transfer = transfer or settings['transfer']
        self.state_file = osp.join(out, 'state.json')
        self.state = {} if fresh or not osp.exists(self.state_file) else json.load(open(self.state_file))
        if self.state.get('transfer') not in (None, self.transfer):  # tables of another checkpoint
            for stage in TRANSFER_STAGES:
                self.state.pop(stage, None)
        self.state['transfer'] = self.transfer
        self.progress = Progress(settings['seconds'])
        self.full_root = osp.join(data_dir, 'fashion_mnist_full')
        self.pretrain_root = (self.full_root if settings['pretrain_per_class'] is None
                              else osp.join(data_dir, 'fashion_mnist_demo-subset'))
        self.ade_root = osp.join(data_dir, 'fashion_ade')
        if self.transfer == 'zoo' and not osp.isfile(osp.join(ROOT, ZOO_WEIGHTS)):
            raise FileNotFoundError(f'The model zoo weights {ZOO_WEIGHTS} are missing from this checkout (see '
                                    f'{ZOO_ENTRY}/README.md); use --transfer pretrained to transfer from the '
                                    "demo's own pretraining instead.")

    def save(self):
        os.makedirs(self.out, exist_ok=True)
        with open(self.state_file + '.tmp', 'w') as f:
            json.dump(self.state, f, indent=1)
        os.replace(self.state_file + '.tmp', self.state_file)

    def run(self, stages):
        for index, stage in enumerate(STAGES, 1):
            reused = stage in self.state and stage != 'report'
            wanted = stage in stages and (stage != 'reproduction' or self.s.get('reproduction') is not None)
            status = 'reused' if reused else 'running' if wanted else 'skipped'
            self.progress.begin(stage, index, status)
            if status == 'running':
                self.state[stage] = getattr(self, f'stage_{stage}')()
                self.save()
            self.progress.end(stage)
        print(f'Done in {clock(time.time() - self.progress.start)}: {osp.join(self.out, "report.md")}')

    @property
    def checkpoint(self) -> str:
        """What every transfer table starts from: the zoo weights or this run's pretraining."""
        if self.transfer == 'zoo':
            return osp.join(ROOT, ZOO_WEIGHTS)
        return self.state['pretrain']['checkpoint']

    def stage_data(self):
        s = self.s
        full = export_image_folder(self.full_root, 32, s['full_per_class'], s['full_val_per_class'])
        counts = (full if self.pretrain_root == self.full_root else
                  export_image_folder(self.pretrain_root, 32, s['pretrain_per_class'], s['val_per_class']))
        generate_fashion_ade(self.ade_root, train_images=s['seg_train'], val_images=s['seg_val'])
        return dict(pretrain_images=counts['train'], labelled_pool=full['train'], test_images=full['val'])

    def stage_pretrain(self):
        batch, work_dir = self.s['pretrain_batch'], osp.join(self.out, 'pretrain')
        options = {'train_dataloader.dataset.data_root': self.pretrain_root, 'train_dataloader.batch_size': batch}
        if self.s['pretrain_epochs']:  # a brief run: its own short warm-up + cosine
            epochs = self.s['pretrain_epochs']
            iters = max(1, self.state['data']['pretrain_images'] // batch) * epochs  # drop_last
            options.update({'train_cfg.max_epochs': epochs, 'param_scheduler': cosine_schedule(max(1, iters // 6), iters),
                            'default_hooks.checkpoint': dict(interval=epochs, by_epoch=True)})
        runner, hook = run_config(PRETRAIN_CONFIG, work_dir, options, self.progress, 'pretraining', self.s['workers'])
        with open(osp.join(work_dir, 'history.json'), 'w') as f:
            json.dump(dict(loss=hook.losses, momentum=hook.momenta, feat_std=hook.feat_stds), f)
        return dict(checkpoint=osp.join(work_dir, f'epoch_{runner.max_epochs}.pth'), iters=runner.max_iters,
                    final_loss=round(hook.losses[-1], 4), loss_type=runner.cfg.model.loss_type,
                    final_feat_std=round(hook.feat_stds[-1], 4) if hook.feat_stds else None,
                    proj_dim=runner.cfg.model.proj_dim)

    def stage_frozen(self):
        results = dict(checkpoint=self.checkpoint)
        for percent in FRACTIONS:
            for init in INITS:
                out = osp.join(self.out, 'frozen', f'{init}_{percent}pct.json')
                # lambda by cross-validation on the labelled images, as the zoo's evaluation table
                argv = ['--checkpoint', self.checkpoint, '--data-root', self.full_root, '--percent', str(percent),
                        '--protocol', 'knn', 'logreg', '--out', out, '--cache-dir', osp.join(self.out, 'feature_cache'),
                        '--workers', str(2 if self.s['workers'] is None else self.s['workers'])]
                if self.s.get('frozen_lambd'):  # too few labels per class for cross-validation
                    argv += ['--lambd', str(self.s['frozen_lambd'])]
                report = frozen_eval.main(argv + (['--random-init'] if init == 'random' else []))
                for protocol, result in report['results'].items():
                    results[f'{protocol}/{percent}/{init}'] = round(result['top1'], 2)
                print(f'      frozen {percent:>2}% {init:<10} ' + '  '.join(
                    f'{p} {r["top1"]:.2f}' for p, r in report['results'].items()), flush=True)
        return results

    def stage_finetune(self):
        results = dict(checkpoint=self.checkpoint)
        per_class = self.state['data']['labelled_pool'] // len(CLASSES)
        for percent in self.s['finetune_fractions']:
            epochs, batch = self.s['finetune_epochs'][percent], self.s['finetune_batch'][percent]
            options = {f'{loader}.dataset.data_root': self.full_root
                       for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')}
            if epochs:  # a shortened schedule (the quick setting); else the config's own
                labelled = len(CLASSES) * max(1, round(per_class * percent / 100))  # as balanced_subset draws
                iters = max(1, labelled // batch) * epochs  # drop_last
                options.update({'train_dataloader.batch_size': batch, 'train_cfg.max_epochs': epochs,
                                'train_cfg.val_interval': epochs,
                                'param_scheduler': cosine_schedule(max(1, iters // 10), iters, eta_min=1e-6),
                                'default_hooks.checkpoint.interval': epochs})
            for init in INITS:
                work_dir = osp.join(self.out, 'finetune', f'{init}_{percent}pct')
                runner, _ = run_config(FINETUNE_CONFIGS[percent], work_dir, dict(
                    options, **{'model.pretrained': self.checkpoint if init == 'pretrained' else None}),
                    self.progress, f'fine-tune {percent}% {init}', self.s['workers'])
                results[f'finetune/{percent}/{init}'] = scalar(runner, 'val/accuracy/top1')
                results[f'iters/{percent}'] = runner.max_iters
        return results

    def stage_segmentation(self):
        iters, results = self.s['seg_iters'], {}
        for init in INITS:
            work_dir = osp.join(self.out, 'segmentation', init)
            runner, _ = run_config(SEG_CONFIG, work_dir, {
                'model.pretrained': self.checkpoint if init == 'pretrained' else None,
                'train_dataloader.dataset.data_root': self.ade_root,
                'val_dataloader.dataset.data_root': self.ade_root,
                'test_dataloader.dataset.data_root': self.ade_root,
                'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
                'param_scheduler': cosine_schedule(max(1, iters // 10), iters),
                'default_hooks.checkpoint.interval': iters}, self.progress, f'segmentation {init}', self.s['workers'])
            results[init] = scalar(runner, 'val/mIoU')
            results['checkpoint'] = self.checkpoint
            results[f'overlay/{init}'] = segmentation_overlays(runner, osp.join(self.out, f'seg_overlay_{init}.png'))
        return results

    def stage_analysis(self):
        from PIL import Image
        class_dir = osp.join(self.full_root, 'val', 'ankle-boot')
        image = osp.join(class_dir, sorted(os.listdir(class_dir))[0])
        upscaled = osp.join(self.out, 'analysis_input.png')
        Image.open(image).convert('RGB').resize((128, 128), Image.NEAREST).save(upscaled)
        common = ['--checkpoint', self.checkpoint, '--image', upscaled, '--img-size', '32']
        pictures = dict(checkpoint=self.checkpoint)
        for name, extra in (('attention_maps', []),
                            ('feature_inversion', ['--steps', str(self.s['inversion_steps']), '--log-every', '0']),
                            ('locality_probe', ['--num-crops', str(self.s['locality_crops'])])):
            out = osp.join(self.out, f'{name}.png')
            load_tool(f'tools/analysis/{name}.py').main(common + extra + ['--out', out])
            pictures[name] = osp.basename(out)
        locality = osp.join(self.out, 'locality_probe.json')
        if osp.exists(locality):
            pictures['locality_spearman'] = json.load(open(locality))['spearman_similarity_vs_iou']
        return pictures

    def stage_reproduction(self):
        work_dir = osp.join(self.out, 'reproduction')
        load_tool('tools/reproduce.py').main(['all', '--data-root', self.full_root, '--work-dir', work_dir]
                                             + self.s['reproduction'])
        return dict(report=osp.join('reproduction', 'reproduction.md'))

    def stage_report(self):
        write_plots(self.out, self.state)
        write_report(self.out, self.state, self.s)
        return dict(report='report.md')


def segmentation_overlays(runner, path: str, count: int = 4) -> str:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    runner.model.eval()
    samples = []
    with torch.no_grad():
        for batch in runner.val_dataloader:  # the validation loader may hold one image per batch
            samples += runner.model.val_step(batch)
            if len(samples) >= count:
                break
    samples = samples[:count]
    from PIL import Image
    fig, axes = plt.subplots(2, len(samples), figsize=(2.2 * len(samples), 4.4), squeeze=False)
    for i, sample in enumerate(samples):
        image = np.asarray(Image.open(sample.img_path).convert('RGB'))
        pred = sample.pred_sem_seg.data[0].numpy()
        gt = sample.gt_sem_seg.data[0].numpy().astype(float)
        gt[gt == 255] = np.nan
        axes[0, i].imshow(image)
        axes[0, i].imshow(pred, cmap='tab20', alpha=0.5, vmin=0, vmax=19)
        axes[1, i].imshow(gt, cmap='tab20', vmin=0, vmax=19)
        for ax in axes[:, i]:
            ax.axis('off')
    axes[0, 0].set_title('prediction', loc='left', fontsize=9)
    axes[1, 0].set_title('ground truth', loc='left', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return osp.basename(path)


def write_plots(out: str, state: dict) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    history = json.load(open(osp.join(out, 'pretrain', 'history.json')))
    fig, (loss_ax, std_ax, momentum_ax) = plt.subplots(1, 3, figsize=(12, 3.2))
    loss_ax.plot(history['loss'])
    title = LOSS_TITLES.get(state['pretrain'].get('loss_type'), 'loss')
    loss_ax.set(title=f'pretraining loss ({title})', xlabel='iteration')
    std_ax.plot(history.get('feat_std', []), label='teacher targets')
    std_ax.axhline(state['pretrain']['proj_dim'] ** -0.5, color='grey', ls='--', label='1/sqrt(dim): spread out')
    std_ax.set(title='std of the l2-normalised outputs (0: collapse)', xlabel='iteration', ylim=(0, None))
    std_ax.legend(fontsize=7)
    momentum_ax.plot(history['momentum'])
    momentum_ax.set(title='EMA momentum', xlabel='iteration')
    fig.tight_layout()
    fig.savefig(osp.join(out, 'pretraining.png'), dpi=90)
    plt.close(fig)
    results = dict(state.get('frozen', {}), **state.get('finetune', {}))
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for protocol in ('knn', 'logreg', 'finetune'):
        for init, style in (('pretrained', '-o'), ('random', '--o')):
            values = [results.get(f'{protocol}/{p}/{init}') for p in FRACTIONS]
            if all(v is not None for v in values):
                ax.plot(FRACTIONS, values, style, label=f'{protocol}, {init}')
    ax.set(xscale='log', xticks=FRACTIONS, xticklabels=[f'{p}%' for p in FRACTIONS], xlabel='labelled fraction',
           ylabel='top-1 (%)', title='Fashion-MNIST accuracy against labels')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(osp.join(out, 'accuracy_vs_labels.png'), dpi=90)
    plt.close(fig)


def describe_checkpoint(path: str) -> str:
    from extrema.evaluation.frozen import file_sha256
    shown = osp.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path
    kind = 'the model zoo entry' if shown == ZOO_WEIGHTS else "this run's pretraining"
    return f'`{shown}` ({kind}, sha256 {file_sha256(path)[:16]}...)'


def write_report(out: str, state: dict, settings: dict) -> None:
    results = dict(state.get('frozen', {}), **state.get('finetune', {}))
    seg = state.get('segmentation', {})
    rows = []
    for protocol, name in (('knn', 'k-NN (k=20)'), ('logreg', 'logistic regression'), ('finetune', 'fine-tune')):
        for percent in FRACTIONS:
            pre, rand = results.get(f'{protocol}/{percent}/pretrained'), results.get(f'{protocol}/{percent}/random')
            if pre is not None and rand is not None:
                rows.append(f'| {name} | {percent}% | {pre:.2f} | {rand:.2f} | {pre - rand:+.2f} |')
    pretrain = state['pretrain']
    used = {stage: describe_checkpoint(state[stage]['checkpoint'])
            for stage in TRANSFER_STAGES if state.get(stage, {}).get('checkpoint')}
    finetune = state.get('finetune', {})
    feat_std = pretrain.get('final_feat_std')
    lines = [
        '# ExtreMA on Fashion-MNIST: the main job',
        '',
        f'Pretraining from scratch in this run: tiny ExtreMA (192-d, 6 blocks, 4-px patches, 80% x 5 masks, '
        f'{LOSS_TITLES.get(pretrain.get("loss_type"), "?")} loss) for {pretrain["iters"]} '
        f'iterations on {state["data"]["pretrain_images"]:,} images; final loss {pretrain["final_loss"]}'
        + (f', std of the normalised teacher targets {feat_std} (1/sqrt(dim) = {pretrain["proj_dim"] ** -0.5:.4f} '
           'when they spread over the sphere, 0 when they collapse)' if feat_std is not None else '') + '.',
        '',
        '![pretraining](pretraining.png)',
        '',
        f'## Classification with 1% and 10% of the {state["data"]["labelled_pool"]:,} training labels '
        f'(top-1 % on {state["data"]["test_images"]:,} test images)',
        '',
        f'"pretrained": frozen tables from {used.get("frozen", "?")}; fine-tuning from {used.get("finetune", "?")}. '
        '"random init": the same architecture, freshly initialised (seed 0). Logistic regression: lambda chosen '
        'by 3-fold cross-validation on the labelled images. Fine-tuning: '
        + ', '.join(f'{finetune[f"iters/{p}"]} iterations at {p}%' for p in FRACTIONS if f'iters/{p}' in finetune)
        + ' (the fine-tuning configs\' schedules unless shortened; on a CPU the main job fine-tunes at 1% only: '
        'the 10% runs are in the zoo entry\'s table).',
        '',
        '| protocol | labels | pretrained | random init | gain |',
        '|---|---|---|---|---|',
        *rows,
        '',
        '![accuracy](accuracy_vs_labels.png)',
        '',
        '## Segmentation (UperNet on Fashion-ADE, mIoU %)',
        '',
        f'Backbone from {used.get("segmentation", "?")}, {settings["seg_iters"]} iterations, one seed.',
        '',
        '| backbone | mIoU |',
        '|---|---|',
        f'| pretrained | {seg.get("pretrained", float("nan")):.2f} |',
        f'| random init | {seg.get("random", float("nan")):.2f} |',
        '',
        f'Pretrained backbone, validation scenes: ![overlays]({seg.get("overlay/pretrained", "")})',
        '',
        f'## Representation analyses (teacher of {used.get("analysis", "?")})',
        '',
    ]
    analysis = state.get('analysis', {})
    for name in ('attention_maps', 'feature_inversion', 'locality_probe'):
        if name in analysis:
            lines += [f'![{name}]({analysis[name]})', '']
    if analysis.get('locality_spearman') is not None:
        lines += [f'Locality probe: Spearman correlation of feature similarity with box IoU '
                  f'{analysis["locality_spearman"]:.3f}.', '']
    if state.get('reproduction'):  # the GPU setting: its own pretraining runs, named in its tables
        path = state['reproduction']['report']
        with open(osp.join(out, path)) as f:
            body = f.read().splitlines()[1:]
        lines += [f'## The whole small-scale reproduction ([{path}]({path}))', '',
                  *(('#' + line if line.startswith('#') else line.replace('](', '](reproduction/'))
                    for line in body)]
    with open(osp.join(out, 'report.md'), 'w') as f:
        f.write('\n'.join(lines))


def main(argv=None):
    import torch
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='outputs/demo')
    parser.add_argument('--data-dir', default=None, help='where the datasets go (default: data/, or OUT/data with --quick)')
    parser.add_argument('--quick', action='store_true', help='the smallest setting, for tests')
    parser.add_argument('--fresh', action='store_true', help='redo every stage')
    parser.add_argument('--stages', nargs='+', choices=STAGES, default=list(STAGES))
    parser.add_argument('--transfer', choices=['zoo', 'pretrained'],
                        help=f'checkpoint of the transfer tables: the zoo entry ({ZOO_WEIGHTS}) or this run\'s '
                             'pretraining (default: zoo on a CPU, pretrained with a GPU)')
    args = parser.parse_args(argv)
    settings = SETTINGS['quick' if args.quick else 'gpu' if torch.cuda.is_available() else 'default']
    data_dir = args.data_dir or (osp.join(args.out, 'data') if args.quick else osp.join(ROOT, 'data'))
    Demo(args.out, data_dir, settings, args.fresh, args.transfer).run(set(args.stages))


if __name__ == '__main__':
    main()
