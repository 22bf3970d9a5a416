"""The benchmark's scenarios (``tools/benchmark.py`` is their command line): each times ExtreMA
beside its baselines in one process and adds its rows to the results.

See ``tools/benchmark.py`` for what each scenario measures and docs/benchmark.md for the numbers.
"""
import datetime
import gc
import json
import os
import os.path as osp
import platform
import tempfile
import time
import warnings
from functools import partial

import torch
from mmengine.logging import MMLogger

from ..models.extrema import ExtreMA
from ..models.masking import num_visible
from ..models.short_attention import MAX_LENGTH as MAX_SHORT_LENGTH
from ..models.short_attention import supports_short_attention
from ..models.vit import ViTTrunk, resolve_arch
from . import flops as flop_count
from .steps import (SDPA_BACKENDS, SupervisedViT, attention_step, build_optim_wrapper, extrema_step,
                    inference_step, masks_of, random_uint8_images, supervised_step, teacher_per_mask_loss,
                    with_sdpa_backend)
from .timing import matmul_flops_per_s, median, peak_memory, synchronize, time_interleaved

SCENARIOS = ('pretrain-step', 'seg-step', 'backbone-inference', 'data')
MICRO_ARCH = dict(embed_dim=64, depth=2, num_heads=2)
# Dense peak FLOP/s by device name, for MFU against the datasheet.
DATASHEET_PEAK_TFLOPS = {
    ('H100', 'bfloat16'): 989.4, ('H100', 'float16'): 989.4, ('H100', 'float32'): 66.9,
    ('H200', 'bfloat16'): 989.4, ('H200', 'float16'): 989.4, ('H200', 'float32'): 66.9,
    ('A100', 'bfloat16'): 312.0, ('A100', 'float16'): 312.0, ('A100', 'float32'): 19.5,
}
FULL_BATCH = {'cpu': {'small': 16, 'base': 8, 'large': 4}, 'cuda': {'small': 256, 'base': 256, 'large': 128}}


def arch_of(name: str) -> dict:
    return dict(MICRO_ARCH) if name == 'micro' else resolve_arch(name)


def gflops(value: float) -> float:
    return value / 1e9


def peak_flops(args) -> float:
    """Nominal dense peak FLOP/s of the device for the run's dtype, or None."""
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    if args.device.type != 'cuda':
        return None
    name = torch.cuda.get_device_name(args.device)
    for (card, dtype), tflops in DATASHEET_PEAK_TFLOPS.items():
        if card in name and dtype == (args.amp or 'float32'):
            return tflops * 1e12
    return None


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()


def summarise(times, cpu_times, flops_per_step, images_per_step, memory, roofline, roofline_cpu, peak):
    """One variant's row. ``cpu_times`` (CPU only): per-CPU-second figures, which
    other processes on the machine do not distort."""
    step = median(times)
    row = dict(step_s=step, images_per_s=images_per_step / step, gflop_per_step=gflops(flops_per_step),
               achieved_gflop_s=gflops(flops_per_step / step), times_s=times, **memory)
    row['mfu_vs_roofline'] = flops_per_step / step / roofline
    if cpu_times:
        per_cpu_s = flops_per_step / median(cpu_times)
        row.update(cpu_s=median(cpu_times), gflop_per_cpu_s=gflops(per_cpu_s),
                   cpu_mfu_vs_roofline=per_cpu_s / roofline_cpu)
    if peak:
        row['mfu_vs_peak'] = flops_per_step / step / peak
    return row


# ------------------------------------------------------------------ pretrain-step
def student_uses_short_attention(args, arch: dict, ratio: float) -> bool:
    length = num_visible((args.img_size // args.patch_size) ** 2, ratio)
    qkv = torch.empty(1, length, 3 * arch['embed_dim'], device=args.device, dtype=getattr(torch, args.amp or 'float32'))
    return supports_short_attention(qkv, arch['num_heads'])


def pretrain_steps(args, arch: dict, batch: int, ratio: float, num_masks: int, sdpa_backends=()):
    """{variant: step} and {variant: FLOPs per step}; the ExtreMA variants share one model.
    ``sdpa_backends``: one eager variant each, with attention restricted to that backend.
    Where the student's attention runs in the Triton short-sequence kernel, ``[sdpa]``
    variants time the same step with every attention through SDPA, side by side."""
    device = args.device
    torch.manual_seed(0)
    head = dict(proj_hidden_dim=args.proj_hidden_dim, proj_dim=args.proj_dim,
                pred_hidden_dim=args.proj_hidden_dim) if getattr(args, 'proj_dim', None) else {}
    model = ExtreMA(arch=arch, img_size=args.img_size, patch_size=args.patch_size,
                    mask_ratio=ratio, num_masks=num_masks, **head).to(device)
    optim_wrapper = build_optim_wrapper(model, device, args.amp)
    generator = torch.Generator().manual_seed(0)
    crops = random_uint8_images(batch, args.img_size, device, generator)
    data = dict(inputs=crops)  # the data preprocessor makes the two colour views in the step
    steps = {'extrema': extrema_step(model, optim_wrapper, data)}
    flops = {'extrema': flop_count.extrema_step_flops(model.config, batch)['total']}
    sdpa_variants = [None] if student_uses_short_attention(args, arch, ratio) else []
    for backend in sdpa_variants + list(sdpa_backends):
        name = 'extrema[sdpa]' if backend is None else f'extrema[sdpa={backend}]'
        steps[name] = with_sdpa_backend(steps['extrema'], backend)
        flops[name] = flops['extrema']
    if args.compile:
        for mode in args.compile_modes:
            name = 'extrema+compile' + ('' if mode == 'default' else f'({mode})')
            steps[name] = extrema_step(model, optim_wrapper, data, torch.compile(model.loss, mode=mode))
            flops[name] = flops['extrema']
            if sdpa_variants:
                steps[f'{name}[sdpa]'] = with_sdpa_backend(steps[name])
                flops[f'{name}[sdpa]'] = flops['extrema']
    if args.no_baselines:
        return steps, flops
    steps['k1'] = extrema_step(model, optim_wrapper, data, masks_of(model, 1))
    flops['k1'] = flop_count.extrema_step_flops(dict(model.config, num_masks=1), batch)['total']
    # Eager only: compiled, Inductor merges the K identical teacher forwards into one, which makes
    # it ExtreMA's step (docs/benchmark.md).
    steps['naive_teacher'] = extrema_step(model, optim_wrapper, data, partial(teacher_per_mask_loss, model))
    flops['naive_teacher'] = flop_count.extrema_step_flops(model.config, batch, teacher_passes=num_masks)['total']
    supervised = SupervisedViT(arch, args.img_size, args.patch_size).to(device)
    labels = torch.randint(0, 1000, (batch,), generator=generator).to(device)
    steps['supervised_vit'] = supervised_step(supervised, build_optim_wrapper(supervised, device, args.amp),
                                              dict(inputs=crops, data_samples=labels))
    flops['supervised_vit'] = flop_count.vit_supervised_step_flops(arch, args.img_size, args.patch_size,
                                                                   batch)['total']
    return steps, flops


def pretrain_scenario(args, results):
    device, peak = args.device, peak_flops(args)
    rows, attention_rows = [], []
    for arch_name in args.archs:
        arch = arch_of(arch_name)
        batch = args.batch_size or FULL_BATCH[device.type].get(arch_name, 8)
        for ratio, num_masks in args.masks:
            backends = []
            if args.sdpa_backends:
                rows_by_backend = attention_by_backend(args, arch_name, batch, ratio, num_masks)
                attention_rows.extend(rows_by_backend)
                backends = [row['backend'] for row in rows_by_backend[1:] if row.get('total_ms') is not None]
            steps, flops = pretrain_steps(args, arch, batch, ratio, num_masks, backends)
            # Roofline: the student's MLP fc1, (K*B*L, D) x (D, 4D), in the run's dtype.
            tokens = num_masks * batch * num_visible((args.img_size // args.patch_size) ** 2, ratio)
            dim = arch['embed_dim']
            roofline, roofline_cpu = matmul_flops_per_s(tokens, dim, 4 * dim, device,
                                                        getattr(torch, args.amp or 'float32'),
                                                        repeats=max(args.repeats, 5))
            times, cpu_times = time_interleaved(steps, device, args.warmup, args.repeats)
            memory = {name: peak_memory(step, device) for name, step in steps.items()}
            base = median(times['extrema'])
            config = dict(arch=arch_name, masks=f'{ratio}x{num_masks}', batch=batch)
            for name in steps:
                row = dict(config, variant=name, **summarise(
                    times[name], cpu_times[name] if device.type == 'cpu' else None, flops[name], batch,
                    memory[name], roofline, roofline_cpu, peak))
                row['time_vs_extrema'] = row['step_s'] / base
                if 'extrema+compile' in times:
                    row['time_vs_compiled'] = row['step_s'] / median(times['extrema+compile'])
                rows.append(row)
            rows.append(dict(config, variant='roofline', matmul_shape=[tokens, dim, 4 * dim],
                             achieved_gflop_s=gflops(roofline), mfu_vs_peak=roofline / peak if peak else None,
                             gflop_per_cpu_s=gflops(roofline_cpu) if device.type == 'cpu' else None))
            print_table(rows[-len(steps) - 1:], PRETRAIN_COLUMNS)
            if args.profile:
                print_profile(steps[[name for name in steps if name.startswith('extrema') and '[' not in name][-1]],
                              device)
            del steps
            release_memory(device)
    results['pretrain_step'] = rows
    if attention_rows:
        results['attention'] = attention_rows


def attention_by_backend(args, arch_name: str, batch: int, ratio: float, num_masks: int):
    """Time of attention alone in one step, per SDPA backend: one call per block (depth
    calls per timed sample) on the student's K*B sequences of L visible tokens (forward
    and backward) and on the teacher's B sequences of all N tokens (forward). A backend that refuses a
    shape (dtype, device) gets no figure for it, and no step variant."""
    device, dtype, arch = args.device, getattr(torch, args.amp or 'float32'), arch_of(arch_name)
    num_tokens = (args.img_size // args.patch_size) ** 2
    shapes = dict(student=(num_masks * batch, num_visible(num_tokens, ratio), True),
                  teacher=(batch, num_tokens, False))
    steps, refused = {}, {}
    backends = ['default'] + args.sdpa_backends + (['short'] if student_uses_short_attention(args, arch, ratio) else [])
    for backend in backends:
        for branch, (seqs, length, backward) in shapes.items():
            if backend == 'short' and length > MAX_SHORT_LENGTH:
                refused[(backend, branch)] = f'{length} tokens: the Triton kernel takes at most {MAX_SHORT_LENGTH}'
                continue
            step = attention_step(seqs, length, arch['embed_dim'], arch['num_heads'], device, dtype, backward,
                                  calls=arch['depth'], short=backend == 'short')
            if backend in SDPA_BACKENDS:
                step = with_sdpa_backend(step, backend)
            try:
                step()
            except RuntimeError as error:  # e.g. no such kernel for this device or dtype
                refused[(backend, branch)] = str(error).splitlines()[0][:120]
                continue
            steps[(backend, branch)] = step
    times, _ = time_interleaved(steps, device, args.warmup, max(args.repeats, 5))
    rows = []
    for backend in backends:
        row = dict(arch=arch_name, masks=f'{ratio}x{num_masks}', batch=batch, backend=backend)
        for branch in shapes:
            key = (backend, branch)
            row[f'{branch}_ms'] = 1e3 * median(times[key]) if key in steps else None
            if key in refused:
                row[f'{branch}_refused'] = refused[key]
        if row['student_ms'] is not None and row['teacher_ms'] is not None:
            row['total_ms'] = row['student_ms'] + row['teacher_ms']
        rows.append(row)
    print('attention alone, per step (student: forward + backward, teacher: forward; one call per block;'
          ' short: the Triton kernel)')
    for (backend, branch), reason in refused.items():
        print(f'  {backend} refused the {branch} shape: {reason}')
    print_table(rows, [('arch', '{}'), ('masks', '{}'), ('batch', '{}'), ('backend', '{}'), ('student_ms', '{:.2f}'),
                       ('teacher_ms', '{:.2f}'), ('total_ms', '{:.2f}')])
    return rows


PRETRAIN_COLUMNS = [('arch', '{}'), ('masks', '{}'), ('batch', '{}'), ('variant', '{}'),
                    ('step_s', '{:.3f}'), ('time_vs_extrema', '{:.2f}x'), ('time_vs_compiled', '{:.2f}x'),
                    ('images_per_s', '{:.1f}'),
                    ('gflop_per_step', '{:.0f}'), ('achieved_gflop_s', '{:.1f}'),
                    ('mfu_vs_roofline', '{:.2f}'), ('mfu_vs_peak', '{:.2f}'), ('cpu_s', '{:.2f}'),
                    ('gflop_per_cpu_s', '{:.1f}'), ('cpu_mfu_vs_roofline', '{:.2f}'), ('peak_gib', '{:.2f}'),
                    ('step_gib', '{:.2f}')]


# ------------------------------------------------------------------ seg-step
SEG_OUT_INDICES = {12: (3, 5, 7, 11), 24: (7, 11, 15, 23)}  # mmseg's MAE/BEiT configs


def seg_models(args):
    """(ExtreMAViT UperNet, mmseg MAE UperNet) configs with the same dims."""
    arch = dict(MICRO_ARCH, depth=4) if args.seg_arch == 'micro' else resolve_arch(args.seg_arch)
    dim, depth, heads = arch['embed_dim'], arch['depth'], arch['num_heads']
    out_indices = SEG_OUT_INDICES.get(depth, tuple(range(depth - 4, depth)))
    patch = 16 if args.seg_size >= 128 else 8
    norm = dict(type='BN', requires_grad=True)  # one process: SyncBN would be plain BN anyway
    common = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
                               size=(args.seg_size, args.seg_size)),
        neck=dict(type='Feature2Pyramid', embed_dim=dim, rescales=[4, 2, 1, 0.5], norm_cfg=norm),
        decode_head=dict(type='UPerHead', in_channels=[dim] * 4, in_index=[0, 1, 2, 3],
                         pool_scales=(1, 2, 3, 6), channels=dim, dropout_ratio=0.1, num_classes=150,
                         norm_cfg=norm, align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        auxiliary_head=dict(type='FCNHead', in_channels=dim, in_index=2, channels=256, num_convs=1,
                            concat_input=False, dropout_ratio=0.1, num_classes=150, norm_cfg=norm,
                            align_corners=False,
                            loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
        train_cfg=dict(), test_cfg=dict(mode='whole'))
    ours = dict(common, backbone=dict(type='ExtreMAViT', arch=arch, img_size=args.seg_size, patch_size=patch,
                                      drop_path_rate=0.1, use_rel_pos_bias=True, out_indices=out_indices))
    mae = dict(common, backbone=dict(type='MAE', img_size=(args.seg_size, args.seg_size), patch_size=patch,
                                     embed_dims=dim, num_layers=depth, num_heads=heads, mlp_ratio=4,
                                     out_indices=out_indices, drop_path_rate=0.1,
                                     norm_cfg=dict(type='LN', eps=1e-6), init_values=0.1))
    return dict(extremavit=ours, mmseg_mae=mae)


def seg_scenario(args, results):
    try:
        from mmengine.registry import DefaultScope
        from mmengine.structures import PixelData
        from mmseg.registry import MODELS as SEG_MODELS
        from mmseg.structures import SegDataSample
        from extrema.models.seg_backbone import ExtreMAViT  # noqa: F401  (registers it)
    except ImportError as error:
        message = f'seg-step skipped: {error} (needs mmsegmentation and extrema.models.seg_backbone)'
        print(message)
        results['seg_step'] = dict(skipped=message)
        return
    device, size, batch = args.device, args.seg_size, args.seg_batch
    generator = torch.Generator().manual_seed(0)
    data = dict(inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator)
                        for _ in range(batch)], data_samples=[])
    for _ in range(batch):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, size, size), generator=generator))
        sample.set_metainfo(dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size)))
        data['data_samples'].append(sample)
    steps, params = {}, {}
    for name, cfg in seg_models(args).items():
        torch.manual_seed(0)
        with DefaultScope.overwrite_default_scope('mmseg'):
            model = SEG_MODELS.build(cfg).to(device)
        model.init_weights()
        optim_wrapper = build_optim_wrapper(model, device, args.amp, lr=1e-4)
        steps[name] = (lambda m, o: lambda: m.train_step(data, o))(model, optim_wrapper)
        params[name] = sum(p.numel() for p in model.backbone.parameters())
    times, cpu_times = time_interleaved(steps, device, args.warmup, args.repeats)
    memory = {name: peak_memory(step, device) for name, step in steps.items()}
    base = median(times['mmseg_mae'])
    rows = []
    for name in steps:
        step = median(times[name])
        rows.append(dict(backbone=name, size=size, batch=batch, step_s=step, images_per_s=batch / step,
                         time_vs_mmseg_mae=step / base, cpu_s=median(cpu_times[name]),
                         backbone_params_m=params[name] / 1e6, times_s=times[name], **memory[name]))
    print_table(rows, [('backbone', '{}'), ('size', '{}'), ('batch', '{}'), ('step_s', '{:.3f}'),
                       ('time_vs_mmseg_mae', '{:.2f}x'), ('images_per_s', '{:.2f}'),
                       ('backbone_params_m', '{:.1f}'), ('peak_gib', '{:.2f}'), ('step_gib', '{:.2f}')])
    results['seg_step'] = rows


# ------------------------------------------------------------------ backbone-inference
def inference_scenario(args, results):
    from timm.models.vision_transformer import VisionTransformer
    device, batch = args.device, args.infer_batch
    rows = []
    for arch_name in args.archs:
        arch = arch_of(arch_name)
        try:
            from extrema.models.seg_backbone import ExtreMAViT
            ours = ExtreMAViT(arch=arch, img_size=args.img_size, patch_size=args.patch_size,
                              out_indices=(arch['depth'] - 1,))
            ours_name = 'ExtreMAViT'
        except ImportError:
            ours = ViTTrunk(arch=arch, img_size=args.img_size, patch_size=args.patch_size)
            ours.forward = ours.forward_tokens
            ours_name = 'ViTTrunk'
        timm_vit = VisionTransformer(img_size=args.img_size, patch_size=args.patch_size,
                                     embed_dim=arch['embed_dim'], depth=arch['depth'],
                                     num_heads=arch['num_heads'], num_classes=0)
        models = {ours_name: ours, 'timm_vit': timm_vit}
        images = torch.randn(batch, 3, args.img_size, args.img_size,
                             generator=torch.Generator().manual_seed(0)).to(device)
        steps = {}
        for name, model in models.items():
            model.to(device).eval()
            forward = model.forward_features if name == 'timm_vit' else model
            steps[name] = inference_step(forward, images, args.amp)
        times, cpu_times = time_interleaved(steps, device, args.warmup, max(args.repeats, 3))
        base = median(times['timm_vit'])
        flops = {ours_name: flop_count.vit_inference_flops(arch, args.img_size, args.patch_size, batch),
                 'timm_vit': flop_count.vit_inference_flops(arch, args.img_size, args.patch_size, batch,
                                                            extra_tokens=1)}
        for name in steps:
            step = median(times[name])
            rows.append(dict(arch=arch_name, batch=batch, model=name, step_s=step, images_per_s=batch / step,
                             time_vs_timm=step / base, cpu_s=median(cpu_times[name]),
                             gflop_per_step=gflops(flops[name]),
                             achieved_gflop_s=gflops(flops[name] / step), times_s=times[name]))
    print_table(rows, [('arch', '{}'), ('batch', '{}'), ('model', '{}'), ('step_s', '{:.4f}'),
                       ('time_vs_timm', '{:.2f}x'), ('images_per_s', '{:.1f}'),
                       ('achieved_gflop_s', '{:.1f}')])
    results['backbone_inference'] = rows


# ------------------------------------------------------------------ data
def write_jpeg_folder(root: str, count: int, generator: torch.Generator) -> None:
    """ImageNet-like JPEGs (about 500x375, smooth content plus noise, quality 90)."""
    import numpy as np
    from PIL import Image
    folder = osp.join(root, 'train', 'class0')
    os.makedirs(folder)
    for index in range(count):
        coarse = torch.rand(3, 12, 16, generator=generator)
        image = torch.nn.functional.interpolate(coarse[None], size=(375, 500), mode='bicubic')[0]
        image = (image + 0.08 * torch.randn(image.shape, generator=generator)).clamp(0, 1)
        array = (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(array).save(osp.join(folder, f'{index:05d}.jpg'), quality=90)


def loader_images_per_s(dataset, batch: int, workers: int, batches: int, device: torch.device) -> float:
    """Images/s of a DataLoader as the configs build it, after its first batch
    (a small dataset is drawn from with replacement)."""
    from torch.utils.data import DataLoader, RandomSampler
    sampler = RandomSampler(dataset, replacement=True, num_samples=(batches + 1) * batch)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True,
                        pin_memory=device.type == 'cuda', persistent_workers=workers > 0)
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)


def data_scenario(args, results):
    """Per-worker throughput of the dataset (decode, crop, flip), and the time the data
    preprocessor takes on the device to make the two colour views of a batch."""
    from mmengine.config import Config

    from ..data import RandomCropImageFolder
    from ..models import TwoViewDataPreprocessor
    default_workers = Config.fromfile(args.data_config).train_dataloader.num_workers
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as root:
        write_jpeg_folder(root, args.data_images, torch.Generator().manual_seed(0))
        dataset = RandomCropImageFolder(root, img_size=args.data_size)
        steps = {'crop_item': lambda: [dataset[i] for i in range(len(dataset))]}
        torch.set_num_threads(1)  # as in a DataLoader worker
        try:
            times, cpu_times = time_interleaved(steps, torch.device('cpu'), 1, max(args.repeats, 3))
        finally:
            torch.set_num_threads(threads)
        images = len(dataset)
        per_worker = images / median(times['crop_item'])
        batch = args.batch_size or FULL_BATCH[args.device.type]['base']
        loader = {}
        for workers in (args.loader_workers or [default_workers]) if args.loader_batches else []:
            loader[workers] = loader_images_per_s(dataset, batch, workers, args.loader_batches, args.device)
    preprocessor = TwoViewDataPreprocessor().to(args.device)
    crops = random_uint8_images(batch, args.data_size, args.device, torch.Generator().manual_seed(0))
    view_times = time_interleaved({'views': lambda: preprocessor(dict(inputs=crops), True)},
                                  args.device, 1, max(args.repeats, 3))[0]['views']
    row = dict(images=images, size=args.data_size, per_worker_images_per_s=per_worker,
               per_worker_images_per_cpu_s=images / median(cpu_times['crop_item']),
               default_workers=default_workers, pipeline_images_per_s=per_worker * default_workers,
               times_s=times['crop_item'], device_views_batch=batch, device_views_s=median(view_times),
               device_views_images_per_s=batch / median(view_times),
               loader_images_per_s=loader.get(default_workers), loader_images_per_s_by_workers=loader or None)
    steps_run = [r for r in results.get('pretrain_step', []) if r['variant'].startswith('extrema')]
    if steps_run:
        fastest = max(steps_run, key=lambda r: r['images_per_s'])
        row.update(step_images_per_s=fastest['images_per_s'],
                   workers_needed=fastest['images_per_s'] / per_worker,
                   bottleneck=fastest['images_per_s'] > (row['loader_images_per_s'] or per_worker * default_workers),
                   device_views_share_of_step=fastest['images_per_s'] / row['device_views_images_per_s'])
    print_table([row], [('images', '{}'), ('size', '{}'), ('per_worker_images_per_s', '{:.1f}'),
                        ('per_worker_images_per_cpu_s', '{:.1f}'), ('default_workers', '{}'),
                        ('pipeline_images_per_s', '{:.0f}'), ('loader_images_per_s', '{:.0f}'),
                        ('step_images_per_s', '{:.1f}'),
                        ('workers_needed', '{:.2f}'), ('bottleneck', '{}'),
                        ('device_views_images_per_s', '{:.0f}'), ('device_views_share_of_step', '{:.1%}')])
    results['data'] = row


# ------------------------------------------------------------------ output
KERNEL_KINDS = (('matmul', ('gemm', 'nvjet', 'cutlass', 'xmma', 'cublas', 'splitk')),
                ('attention', ('flash', 'fmha', 'attention', 'cudnn_sdpa')),
                ('optimizer+EMA', ('adam', 'lerp', 'foreach')),
                ('fused elementwise (Triton)', ('triton',)),
                ('copy', ('copy', 'memcpy', 'memset', 'cat', 'index')))


def kernel_kind(name: str) -> str:
    lowered = name.lower()
    return next((kind for kind, keys in KERNEL_KINDS if any(key in lowered for key in keys)),
                'other elementwise/reduction')


def print_profile(step, device: torch.device, rows: int = 25) -> None:
    """Top operators of one step; on CUDA also its device time by kernel kind."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    with profile(activities=activities) as prof:
        step()
        synchronize(device)
    sort = 'self_cuda_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    print(prof.key_averages().table(sort_by=sort, row_limit=rows, max_name_column_width=60), flush=True)
    if device.type != 'cuda':
        return
    kinds = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kind = kernel_kind(event.name)
            kinds[kind] = kinds.get(kind, 0.) + event.device_time_total / 1e6
    busy = sum(kinds.values())
    table = [dict(kind=kind, device_ms=1e3 * t, share=t / busy) for kind, t in
             sorted(kinds.items(), key=lambda item: -item[1])]
    table.append(dict(kind='all kernels', device_ms=1e3 * busy, share=1.))
    print_table(table, [('kind', '{}'), ('device_ms', '{:.1f}'), ('share', '{:.0%}')])


def print_table(rows, columns):
    """Rows as right-aligned columns; a column that no row has is left out."""
    columns = [(name, fmt) for name, fmt in columns if any(row.get(name) is not None for row in rows)]
    header = [name for name, _ in columns]
    lines = [[fmt.format(row[name]) if row.get(name) is not None else '-' for name, fmt in columns]
             for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print('  '.join(h.rjust(w) for h, w in zip(header, widths)))
    for line in lines:
        print('  '.join(cell.rjust(w) for cell, w in zip(line, widths)))
    print(flush=True)


def environment(args) -> dict:
    import timm
    info = dict(date=datetime.datetime.now().isoformat(timespec='seconds'), device=str(args.device),
                torch=torch.__version__, timm=timm.__version__, python=platform.python_version(),
                dtype=args.amp or 'float32', threads=torch.get_num_threads(), compile=args.compile,
                cpu=platform.processor() or platform.machine(), peak_gflop_s=gflops(peak_flops(args) or 0) or None,
                load_average=os.getloadavg() if hasattr(os, 'getloadavg') else None)
    try:
        with open('/proc/cpuinfo') as f:
            info['cpu'] = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    if args.device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(args.device)
    return info

def run(args) -> dict:
    """Runs ``args.scenarios`` (the namespace of tools/benchmark.py), prints the tables and
    writes the JSON; returns the results."""
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True  # as the training configs (env_cfg)
    warnings.filterwarnings('ignore', message='.*(deprecated|will be removed|mmcv-lite).*')
    MMLogger.get_instance('benchmark', log_level='WARNING')  # no init_weights reports
    results = dict(environment=environment(args), settings={
        k: (str(v) if isinstance(v, torch.device) else v) for k, v in vars(args).items()})
    print(json.dumps(results['environment']))
    runners = {'pretrain-step': pretrain_scenario, 'seg-step': seg_scenario,
               'backbone-inference': inference_scenario, 'data': data_scenario}
    start = time.perf_counter()
    try:
        for name in SCENARIOS:
            if name in args.scenarios:
                print(f'== {name}', flush=True)
                runners[name](args, results)
    finally:
        torch.set_num_threads(threads)
    results['environment']['wall_s'] = time.perf_counter() - start
    out = args.out or osp.join('work_dirs', 'benchmark',
                               datetime.datetime.now().strftime('%Y%m%d_%H%M%S') + '.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(results, f, indent=1)
    print(f'results written to {out} ({results["environment"]["wall_s"]:.0f} s)')
    return results

