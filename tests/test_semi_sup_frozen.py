"""Frozen-feature protocols: logistic regression, k-NN and linear probe, through the library's
``main(argv)`` and the command line that wraps it."""
import importlib.util
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import extrema.evaluation.frozen as frozen
from extrema.evaluation import frozen_eval
from extrema.data.subsets import LabelledImageFolder
from extrema.evaluation.frozen import FrozenEncoder, cached_features
from extrema.evaluation.linear_probe import LinearProbeHead, train_linear_probe, warmup_cosine
from extrema.evaluation.logistic import fit_logistic_regression, fit_path
from extrema.models.data_preprocessor import IMAGENET_MEAN, IMAGENET_STD, NormalizeDataPreprocessor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_cli():
    """semi_sup/frozen_eval.py loaded by its path, as tools/demo.py and users' scripts do."""
    spec = importlib.util.spec_from_file_location('frozen_eval_cli', os.path.join(ROOT, 'semi_sup', 'frozen_eval.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_is_the_library_entry_point():
    cli = load_cli()
    assert cli.main is frozen_eval.main and cli.parse_args is frozen_eval.parse_args
    args = cli.parse_args(['--checkpoint', 'c.pth', '--data-root', 'd', '--percent', '1'])
    assert args.protocol == list(frozen_eval.PROTOCOLS) and args.branch == 'teacher'


def save_ours(model, path):
    torch.save(dict(state_dict=model.state_dict(), meta=dict(extrema_config=model.config)), path)
    return path


def test_all_protocols_through_the_cli(tiny_extrema, fashion_mnist_folder, tmp_path):
    checkpoint = save_ours(tiny_extrema, str(tmp_path / 'tiny.pth'))
    out = str(tmp_path / 'results.json')
    report = frozen_eval.main([
        '--checkpoint', checkpoint, '--data-root', fashion_mnist_folder, '--percent', '50',
        '--protocol', 'logreg', 'knn', 'linear', '--lambd', '1e-3', '1e-1', '--cv-folds', '2',
        '--linear-epochs', '4', '--linear-warmup-epochs', '1', '--linear-batch-size', '25',
        '--batch-size', '50', '--workers', '0', '--cache-dir', str(tmp_path / 'cache'), '--out', out])
    assert json.load(open(out))['results'] == json.loads(json.dumps(report['results']))
    assert (report['num_labelled'], report['num_val'], report['num_classes']) == (100, 100, 10)
    assert report['weights']['branch'] == 'teacher' and len(report['weights']['checkpoint_sha256']) == 64
    results = report['results']
    assert set(results) == {'logreg', 'knn', 'linear'}
    assert results['logreg']['lambd'] in (1e-3, 1e-1) and set(results['logreg']['cv_top1']) == {1e-3, 1e-1}
    assert results['linear']['feature'] == 'cls' and results['knn']['feature'] == 'instance'
    for result in results.values():
        assert 0 <= result['top1'] <= result['top5'] <= 100
    # Even untrained ViT features of Fashion-MNIST are far above chance (10%).
    assert results['knn']['top1'] > 30 and results['logreg']['top1'] > 30
    # class-attention outputs of train and val; instance features are their final LN
    assert len(os.listdir(tmp_path / 'cache')) == 2


def test_logistic_regression_solves_the_msn_objective():
    from sklearn.linear_model import LogisticRegression
    generator = torch.Generator().manual_seed(0)
    features = F.normalize(torch.randn(90, 6, generator=generator, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 3, (90,), generator=generator)
    lambd = 0.3
    weights = fit_logistic_regression(features, labels, 3, lambd, tol=1e-10).requires_grad_(True)
    objective = F.cross_entropy(features @ weights.t(), labels, reduction='sum') + lambd / 2 * weights.pow(2).sum()
    objective.backward()
    assert weights.grad.abs().max() < 1e-4
    # The same optimum as scikit-learn's multinomial model with C = 1 / lambd and no intercept.
    reference = LogisticRegression(C=1 / lambd, fit_intercept=False, tol=1e-10, max_iter=10000)
    reference.fit(features.numpy(), labels.numpy())
    assert np.allclose(weights.detach().numpy(), reference.coef_, atol=1e-4)
    warm = fit_path(features, labels, 3, [1e-3, 0.3, 3.0])
    assert torch.allclose(warm[0.3], weights.detach(), atol=1e-4)


def test_feature_cache_is_keyed_by_checkpoint_contents(tiny_extrema, fashion_mnist_folder, tmp_path, monkeypatch):
    dataset = LabelledImageFolder(fashion_mnist_folder, percent=10, transform=dict(input_size=32))
    path = save_ours(tiny_extrema, str(tmp_path / 'ckpt.pth'))
    cache = str(tmp_path / 'cache')

    def features(encoder):
        return cached_features(encoder, dataset, 'instance', NormalizeDataPreprocessor(), cache, batch_size=8, workers=0)[0]

    first = features(FrozenEncoder(path))
    with torch.no_grad():
        for param in tiny_extrema.teacher.parameters():
            param.add_(0.1)
    save_ours(tiny_extrema, path)  # same path, new weights
    retrained = FrozenEncoder(path)
    second = features(retrained)
    assert len(os.listdir(cache)) == 2 and not torch.allclose(first, second)
    images = torch.stack([dataset[i]['inputs'] for i in range(len(dataset))])
    assert torch.allclose(second, retrained.embed(NormalizeDataPreprocessor().normalize(images), 'instance'), atol=1e-4)
    monkeypatch.setattr(frozen, 'extract_features', lambda *a, **k: pytest.fail('cache not used'))
    assert torch.equal(features(FrozenEncoder(path)), second)


def test_frozen_encoder_features_and_random_init(tiny_extrema, tmp_path):
    path = save_ours(tiny_extrema, str(tmp_path / 'ckpt.pth'))
    encoder = FrozenEncoder(path, branch='teacher')
    for key, value in encoder.model.state_dict().items():
        assert torch.equal(value, tiny_extrema.teacher.state_dict()[key])
    images = torch.randn(3, 3, 32, 32)
    cls = encoder.embed(images, 'cls')
    assert torch.allclose(encoder.embed(images, 'instance'), encoder.model.norm(cls))
    assert encoder.embed(images, 'mean_tokens').shape == (3, 64)
    fresh = FrozenEncoder(path, random_init=True)
    assert fresh.identity['random_init'] and 'checkpoint_sha256' not in fresh.identity
    assert not torch.equal(fresh.model.blocks[0].attn.qkv.weight, encoder.model.blocks[0].attn.qkv.weight)
    with pytest.raises(ValueError, match='feature must be one of'):
        encoder.check_feature('pooled')


def test_normalisation_comes_from_the_stored_pretraining_config(tiny_extrema, tmp_path):
    from mmengine.config import Config
    text = Config(dict(model=dict(type='ExtreMA', data_preprocessor=dict(
        type='TwoViewDataPreprocessor', mean=(72.9, 72.9, 72.9), std=(90.0, 90.0, 90.0))))).pretty_text
    path = str(tmp_path / 'with_cfg.pth')
    torch.save(dict(state_dict=tiny_extrema.state_dict(), meta=dict(extrema_config=tiny_extrema.config, cfg=text)),
               path)
    assert FrozenEncoder(path).normalisation == ((72.9,) * 3, (90.0,) * 3)
    plain = FrozenEncoder(save_ours(tiny_extrema, str(tmp_path / 'plain.pth')))
    assert plain.normalisation == (IMAGENET_MEAN, IMAGENET_STD)  # nothing stored: ImageNet, with a warning


def test_linear_probe_trains_only_the_linear_layer():
    assert [warmup_cosine(s, 100, 10) for s in (0, 5, 10, 100)] == [0, 0.5, 1, 0]
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=generator) * 3
    labels = torch.arange(4).repeat(50)
    features = centres[labels] + torch.randn(200, 16, generator=generator)

    def batches(epoch):
        order = torch.randperm(200, generator=torch.Generator().manual_seed(epoch))
        return [(features[order[i:i + 50]], labels[order[i:i + 50]]) for i in range(0, 200, 50)]

    head = train_linear_probe(batches, 4, 16, 4, epochs=10, warmup_epochs=1, lr=0.1)
    assert isinstance(head, LinearProbeHead) and not head.training
    assert [name for name, _ in head.named_parameters()] == ['1.weight', '1.bias']
    assert (head(features).argmax(1) == labels).float().mean() > 0.95


def test_one_class_evaluation_is_refused(tiny_extrema, fashion_mnist_folder, tmp_path):
    """With one class every prediction is right: top-1 would be 100% of nothing."""
    root = tmp_path / 'one_class'
    for split in ('train', 'val'):
        os.makedirs(root / split)
        os.symlink(os.path.join(fashion_mnist_folder, split, 'bag'), root / split / 'bag')
    checkpoint = save_ours(tiny_extrema, str(tmp_path / 'tiny.pth'))
    with pytest.raises(ValueError, match=r"has 1 class folder\(s\) \(\['bag'\]\).*at least 2 classes"):
        frozen_eval.main(['--checkpoint', checkpoint, '--data-root', str(root), '--percent', '50',
                                 '--protocol', 'knn', '--workers', '0', '--cache-dir', '',
                                 '--out', str(tmp_path / 'out.json')])
    assert not (tmp_path / 'out.json').exists()
