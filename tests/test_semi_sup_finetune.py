"""End-to-end fine-tuning: the classifier, its checkpoint loading, the configs, the Runner path."""
import os

import pytest
import torch
from mmengine.config import Config

import extrema.checkpoint as checkpoint_module
from extrema.engine.launch import build_runner, setup_config
from extrema.engine.layer_decay import LayerDecayOptimWrapperConstructor
from extrema.data.fashion_mnist import CLASSES
from extrema.evaluation.metrics import Accuracy
from extrema.models.classifier import ExtreMAClassifier
from extrema.models.data_preprocessor import ClassifierDataPreprocessor
from extrema.registry import MODELS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, 'semi_sup', 'configs')
TINY_CLASSIFIER = dict(arch=dict(embed_dim=64, depth=2, num_heads=2), img_size=32, patch_size=8)


def official_checkpoint(model, path):
    """The released layout: DDP-wrapped MoCo-v3-style keys under 'state_dict'. The teacher is
    perturbed so that loading the wrong branch would be visible."""
    def official(key):  # the official code calls the projector 'head'
        return 'head.' + key[len('projector.'):] if key.startswith('projector.') else key
    state = {f'module.base_encoder.{official(k)}': v for k, v in model.student.state_dict().items()}
    state.update({f'module.momentum_encoder.{official(k)}': v + 0.5 if v.is_floating_point() else v
                  for k, v in model.teacher.state_dict().items()})
    state.update({f'module.predictor.{k}': v for k, v in model.predictor.state_dict().items()})
    torch.save(dict(state_dict=state, arch='vit_tiny', epoch=300), path)
    return state


@pytest.fixture
def log_lines(monkeypatch):
    lines = []
    monkeypatch.setattr(checkpoint_module, 'print_log', lambda msg, *a, **k: lines.append(msg))
    return lines


@pytest.mark.parametrize('branch,prefix', [('student', 'module.base_encoder.'),
                                           ('teacher', 'module.momentum_encoder.')])
def test_official_checkpoint_loads_every_trunk_weight(tiny_extrema, tmp_path, log_lines, branch, prefix):
    path = str(tmp_path / 'official.pth')
    state = official_checkpoint(tiny_extrema, path)
    classifier = ExtreMAClassifier(num_classes=10, **TINY_CLASSIFIER, pretrained=path, pretrained_branch=branch)
    head_before = classifier.head.weight.clone()
    classifier.init_weights()
    trunk = classifier.backbone.state_dict()
    assert trunk.keys() >= {'pos_embed', 'patch_embed.proj.weight', 'blocks.1.mlp.fc2.bias'}
    for key, value in trunk.items():
        assert torch.equal(value, state[prefix + key]), key
    assert torch.equal(classifier.head.weight, head_before)
    report = [line for line in log_lines if line.startswith('Loaded')]
    assert len(report) == 1
    assert f'Loaded {len(trunk)}/{len(trunk)} tensors' in report[0]
    assert 'missing keys: none; unexpected keys: none' in report[0]
    instance_keys = [k for k in tiny_extrema.student.state_dict() if k not in trunk]
    assert all(k.startswith(('cls_token', 'blocks_token.', 'norm.', 'projector.')) for k in instance_keys)
    assert f'ignored on purpose: {len(instance_keys)} [' in report[0]


def test_class_attention_pooling_loads_the_instance_branch(tiny_extrema, tmp_path, log_lines):
    path = str(tmp_path / 'official.pth')
    state = official_checkpoint(tiny_extrema, path)
    classifier = ExtreMAClassifier(num_classes=10, **TINY_CLASSIFIER, pooling='class_attention',
                                   pretrained=path, pretrained_branch='teacher')
    classifier.init_weights()
    loaded = classifier.backbone.state_dict()
    assert {'cls_token', 'blocks_token.1.gamma_2', 'norm.weight'} <= loaded.keys()
    for key, value in loaded.items():
        assert torch.equal(value, state['module.momentum_encoder.' + key]), key
    assert 'missing keys: none; unexpected keys: none' in log_lines[-1] and 'projector.0.weight' in log_lines[-1]
    images = torch.randn(2, 3, 32, 32)
    teacher = tiny_extrema.teacher
    teacher.load_state_dict({k[len('module.momentum_encoder.'):]: v for k, v in state.items()
                             if k.startswith('module.momentum_encoder.')})
    classifier.eval()
    assert torch.allclose(classifier.extract_feat(images), teacher.forward_features(images)['instance'], atol=1e-5)


def test_incomplete_or_foreign_checkpoints_fail_clearly(tiny_extrema, tmp_path, log_lines):
    path = str(tmp_path / 'official.pth')
    state = official_checkpoint(tiny_extrema, path)
    del state['module.base_encoder.blocks.1.attn.qkv.weight']
    torch.save(dict(state_dict=state), path)
    classifier = ExtreMAClassifier(num_classes=10, **TINY_CLASSIFIER)
    with pytest.raises(KeyError, match='blocks.1.attn.qkv.weight'):
        classifier.load_pretrained(path, strict=True)
    missing, unexpected = classifier.load_pretrained(path, strict=False)
    assert missing == ['blocks.1.attn.qkv.weight'] and unexpected == []
    wider = ExtreMAClassifier(num_classes=10, arch=dict(embed_dim=96, depth=2, num_heads=2), img_size=32,
                              patch_size=8)
    with pytest.raises(ValueError, match=r"embed_dim': 64.*embed_dim': 96.*model.arch"):
        wider.load_pretrained(path)
    with pytest.raises(FileNotFoundError, match='model.pretrained=None'):
        ExtreMAClassifier(num_classes=10, **TINY_CLASSIFIER, pretrained=str(tmp_path / 'absent.pth'))


def test_preprocessor_normalises_with_the_pretraining_statistics(tiny_extrema, tmp_path, monkeypatch):
    """Without mean/std in the config, the classifier takes those its checkpoint stores for the
    pretraining (here the Fashion-MNIST ones, far from ImageNet's), and says which it used."""
    import extrema.models.classifier as classifier_module
    lines = []
    monkeypatch.setattr(classifier_module, 'print_log', lambda msg, *a, **k: lines.append((msg, k.get('level'))))
    ours = str(tmp_path / 'ours.pth')
    torch.save(dict(state_dict={f'{branch}.{k}': v for branch in ('student', 'teacher')
                                for k, v in tiny_extrema.student.state_dict().items()},
                    meta=dict(cfg="model = dict(data_preprocessor=dict(type='TwoViewDataPreprocessor', "
                                  "mean=(72.9, 72.9, 72.9), std=(90.0, 90.0, 90.0)))")), ours)
    stored = ExtreMAClassifier(num_classes=10, **TINY_CLASSIFIER, pretrained=ours).data_preprocessor
    assert stored.mean.flatten().tolist() == pytest.approx([72.9] * 3)
    assert stored.std.flatten().tolist() == pytest.approx([90.0] * 3)
    assert 'the pretraining statistics stored in' in lines[-1][0] and lines[-1][1] == 20

    given = ExtreMAClassifier(num_classes=10, **TINY_CLASSIFIER, pretrained=ours,
                              data_preprocessor=dict(type='ClassifierDataPreprocessor', mean=(1., 2., 3.),
                                                     std=(4., 5., 6.))).data_preprocessor
    assert given.mean.flatten().tolist() == [1., 2., 3.] and given.std.flatten().tolist() == [4., 5., 6.]
    assert 'set in model.data_preprocessor' in lines[-1][0]

    official = str(tmp_path / 'official.pth')
    official_checkpoint(tiny_extrema, official)
    imagenet = ExtreMAClassifier(num_classes=10, **TINY_CLASSIFIER, pretrained=official).data_preprocessor
    assert imagenet.mean.flatten().tolist() == pytest.approx([123.675, 116.28, 103.53])
    assert 'official release' in lines[-1][0] and lines[-1][1] == 20

    bare = str(tmp_path / 'bare.pth')
    torch.save(dict(state_dict=tiny_extrema.student.state_dict()), bare)
    ExtreMAClassifier(num_classes=10, **TINY_CLASSIFIER, pretrained=bare)
    assert 'stores no pixel normalisation' in lines[-1][0] and lines[-1][1] == 30
    with pytest.raises(ValueError, match='sets mean but not std'):
        ExtreMAClassifier(num_classes=10, **TINY_CLASSIFIER, pretrained=ours,
                          data_preprocessor=dict(type='ClassifierDataPreprocessor', mean=(1., 2., 3.)))


def test_head_init_and_layer_decay_groups():
    torch.manual_seed(0)
    classifier = ExtreMAClassifier(num_classes=1000, **TINY_CLASSIFIER, init_scale=0.001)
    assert classifier.head.weight.std().item() == pytest.approx(0.02 * 0.001, rel=0.1)
    assert torch.all(classifier.head.bias == 0)
    constructor = LayerDecayOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
        dict(num_layers=2, decay_rate=0.5))
    wrapper = constructor(classifier)
    scale = {name: group['lr_scale'] for group in wrapper.optimizer.param_groups for name in group['param_names']}
    assert scale['backbone.patch_embed.proj.weight'] == 0.5 ** 3
    assert scale['backbone.blocks.1.attn.qkv.weight'] == 0.5
    assert scale['fc_norm.weight'] == scale['head.weight'] == 1.0


def test_preprocessor_targets():
    labels = torch.tensor([1, 0, 2, 2])
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    plain = ClassifierDataPreprocessor(num_classes=3, label_smoothing=0.3)
    train = plain(dict(inputs=images, data_samples=labels), training=True)['data_samples']
    assert torch.allclose(train[0], torch.tensor([0.1, 0.8, 0.1]))
    assert torch.equal(plain(dict(inputs=images, data_samples=labels))['data_samples'], labels)
    mixing = ClassifierDataPreprocessor(num_classes=3, mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0),
                                        random_erasing=dict(probability=1.0, mode='pixel'))
    mixed = mixing(dict(inputs=images, data_samples=labels), training=True)
    assert torch.allclose(mixed['data_samples'].sum(1), torch.ones(4))
    assert not torch.allclose(mixed['inputs'], plain.normalize(images))
    with pytest.raises(ValueError, match='even batch'):
        mixing(dict(inputs=images[:3], data_samples=labels[:3]), training=True)


def test_accuracy_metric_weights_batches_by_size():
    metric = Accuracy(topk=(1, 5))
    first = [dict(pred_score=torch.tensor([0.1, 0.7, 0.2]), gt_label=torch.tensor(1)),
             dict(pred_score=torch.tensor([0.6, 0.3, 0.1]), gt_label=torch.tensor(2)),
             dict(pred_score=torch.tensor([0.2, 0.3, 0.5]), gt_label=torch.tensor(2))]
    second = [dict(pred_score=torch.tensor([0.5, 0.4, 0.1]), gt_label=torch.tensor(1))]
    metric.process(None, first)
    metric.process(None, second)
    result = metric.compute_metrics(metric.results)
    assert result['top1'] == pytest.approx(50.0) and result['top5'] == pytest.approx(100.0)


def fmnist_finetune_cfg(tmp_path, data_root, checkpoint, **extra):
    options = {
        'model.arch': TINY_CLASSIFIER['arch'], 'model.patch_size': 8, 'model.pretrained': checkpoint,
        'optim_wrapper.paramwise_cfg.num_layers': 2, 'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 1,
        'train_dataloader.batch_size': 16, 'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False, 'train_dataloader.dataset.data_root': data_root,
        'train_dataloader.dataset.percent': 50, 'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False, 'val_dataloader.dataset.data_root': data_root,
        'param_scheduler.0.end': 1, 'param_scheduler.1.begin': 1, 'param_scheduler.1.end': 2,
        'param_scheduler.1.T_max': 1, 'default_hooks.checkpoint.interval': 1,
        'default_hooks.logger.interval': 1}
    options.update(extra)
    return setup_config(os.path.join(CONFIGS, 'finetune_extrema-tiny_fashion-mnist-1pct.py'),
                        work_dir=str(tmp_path / 'work'), cfg_options=options)


def test_finetune_config_trains_and_validates(tiny_extrema, fashion_mnist_folder, tmp_path):
    path = str(tmp_path / 'ours.pth')
    torch.save(dict(state_dict=tiny_extrema.state_dict(), meta=dict(extrema_config=tiny_extrema.config)), path)
    imagenet_recipe = {  # exercise the full-size regularisation on the Runner path
        'model.data_preprocessor.mixup.prob': 1.0,
        'model.data_preprocessor.random_erasing.probability': 0.25,
        'train_dataloader.dataset.transform.auto_augment': 'rand-m9-mstd0.5-inc1'}
    runner = build_runner(fmnist_finetune_cfg(tmp_path, fashion_mnist_folder, path, **imagenet_recipe))
    runner.train()
    scalars = runner.message_hub.log_scalars
    assert {'val/accuracy/top1', 'val/accuracy/top5'} <= scalars.keys()
    top1 = scalars['val/accuracy/top1'].current()
    assert 0 <= top1 <= scalars['val/accuracy/top5'].current() <= 100
    train_set = runner.train_dataloader.dataset
    assert train_set.metainfo['classes'] == tuple(sorted(CLASSES)) and len(train_set) == 100
    work = os.listdir(tmp_path / 'work')
    assert 'epoch_2.pth' in work and any(f.startswith('best_accuracy_top1') for f in work)
    pretrained = tiny_extrema.student.blocks[0].attn.qkv.weight
    tuned = runner.model.backbone.blocks[0].attn.qkv.weight
    assert not torch.equal(pretrained, tuned) and torch.allclose(pretrained, tuned, atol=0.05)


def test_class_count_mismatch_stops_before_training(fashion_mnist_folder, tmp_path):
    runner = build_runner(fmnist_finetune_cfg(tmp_path, fashion_mnist_folder, None, **{'model.num_classes': 7}))
    with pytest.raises(ValueError, match='10 classes but model.num_classes is 7'):
        runner.train()
    assert runner.iter == 0


BUILT_MODELS = {}


@pytest.mark.parametrize('config', ['finetune_extrema-vit-b-p16_8xb32-800e_in1k-1pct.py',
                                    'finetune_extrema-vit-b-p16_8xb64-200e_in1k-10pct.py',
                                    'finetune_extrema-tiny_fashion-mnist-1pct.py',
                                    'finetune_extrema-tiny_fashion-mnist-10pct.py'])
def test_full_size_configs_build_and_run_forward(config):
    cfg = Config.fromfile(os.path.join(CONFIGS, config))
    assert cfg.model.pretrained and cfg.optim_wrapper.constructor == 'LayerDecayOptimWrapperConstructor'
    cfg.model.pretrained = None
    key = repr(cfg.model.to_dict())
    if key not in BUILT_MODELS:  # the two ViT-B configs share one model
        model = MODELS.build(cfg.model).eval()
        size = cfg.model.img_size
        with torch.no_grad():
            BUILT_MODELS[key] = model.backbone.depth, model(torch.randn(1, 3, size, size)).shape
    depth, logits_shape = BUILT_MODELS[key]
    assert cfg.optim_wrapper.paramwise_cfg.num_layers == depth
    assert logits_shape == (1, cfg.model.num_classes)
