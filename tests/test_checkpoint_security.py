"""Loading a checkpoint never runs code from it, through every loader of the toolkit.

Two payloads hide in ``meta`` next to real weights: the getattr route to ``eval``
(``getattr(getattr, '__self__')`` is the builtins module, and torch's allowed
``_rebuild_from_type_v2`` calls what it is given) and a classic ``__reduce__``. Both
would create a marker file; every loader must refuse the file and leave no marker,
also with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``.
"""
import importlib.util
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner import Runner
from PIL import Image

import extrema
from extrema.checkpoint import _history_buffer_statistic, load_file
from extrema.evaluation.frozen import FrozenEncoder
from extrema.models import ExtreMAViT
from extrema.models.classifier import ExtreMAClassifier

from conftest import ROOT, TINY_EXTREMA

SEG_CONFIG = osp.join(ROOT, 'mmseg_configs', 'upernet_extrema-tiny-p4_1xb8-500it_fashion-ade-48x48.py')


def _tool(*path):
    name = '_'.join(path).replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, *path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Reduce:
    """Pickles as ``fn(*args)``."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def payload(kind: str, marker: str):
    code = f"(open({marker!r}, 'w').write('ran'), __import__('torch').zeros(1))[1]"
    if kind == 'getattr_eval':
        builtins_module = Reduce(getattr, getattr, '__self__')
        return Reduce(torch._tensor._rebuild_from_type_v2, Reduce(getattr, builtins_module, 'eval'),
                      torch.Tensor, (code,), {})
    return Reduce(eval, code)


@pytest.fixture(params=['getattr_eval', 'reduce'])
def crafted(request, tmp_path, tiny_extrema, monkeypatch):
    """(path of real tiny weights with a payload in meta, marker the payload would create)."""
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = str(tmp_path / 'payload_ran')
    path = str(tmp_path / f'{request.param}.pth')
    torch.save(dict(state_dict=tiny_extrema.state_dict(),
                    meta=dict(extrema_config=tiny_extrema.config, note=payload(request.param, marker))), path)
    return path, marker


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('image') / 'grey.png')
    Image.new('RGB', (32, 32), (120, 120, 120)).save(path)
    return path


@pytest.fixture(scope='module')
def fashion_ade(tmp_path_factory):
    from extrema.data.fashion_ade import generate_fashion_ade
    root = str(tmp_path_factory.mktemp('fashion_ade'))
    generate_fashion_ade(root, train_images=1, val_images=1, min_side=48, max_side=48)
    return root


def _runner(tmp_path, path, resume):
    model = extrema.ExtreMA(**TINY_EXTREMA)
    return Runner(model=model, work_dir=str(tmp_path / 'work'), load_from=path, resume=resume)


LOADERS = {
    'load_pretrained': lambda path, tmp, _: extrema.load_pretrained(path),
    'convert_checkpoint': lambda path, tmp, _: _tool('tools', 'convert_checkpoint.py').main(
        [path, str(tmp / 'out.pth'), '--to', 'backbone']),
    'frozen_eval': lambda path, tmp, _: _tool('semi_sup', 'frozen_eval.py').main(
        ['--checkpoint', path, '--data-root', str(tmp), '--percent', '10', '--workers', '0']),
    'mmseg_backbone_init_cfg': lambda path, tmp, _: ExtreMAViT(
        arch=TINY_EXTREMA['arch'], img_size=32, patch_size=8, out_indices=(1,),
        init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights(),
    'classifier_pretrained': lambda path, tmp, _: ExtreMAClassifier(
        num_classes=10, arch=TINY_EXTREMA['arch'], img_size=32, patch_size=8, pretrained=path).init_weights(),
    'runner_load_from': lambda path, tmp, _: _runner(tmp, path, resume=False).load_or_resume(),
    'runner_resume': lambda path, tmp, _: _runner(tmp, path, resume=True).load_or_resume(),
    'tools_test': lambda path, tmp, data: _tool('tools', 'test.py').main(
        [SEG_CONFIG, path, '--work-dir', str(tmp / 'test'), '--cfg-options',
         f'test_dataloader.dataset.data_root={data()}', 'test_dataloader.num_workers=0',
         'test_dataloader.persistent_workers=False']),
    'attention_maps': lambda path, tmp, data: _tool('tools', 'analysis', 'attention_maps.py').main(
        ['--checkpoint', path, '--image', data(image=True), '--out', str(tmp / 'maps.png')]),
}


@pytest.mark.parametrize('loader', sorted(LOADERS))
def test_no_loader_runs_a_payload(loader, crafted, tmp_path, request):
    path, marker = crafted

    def data(image=False):
        return request.getfixturevalue('image' if image else 'fashion_ade')

    with pytest.raises(RuntimeError, match='Cannot read checkpoint') as error:
        LOADERS[loader](path, tmp_path, data)
    assert not osp.exists(marker)
    assert 'weights_only' not in str(error.value)


def test_the_payloads_are_live(crafted):
    """Without the protection each payload runs: the test above can fail."""
    path, marker = crafted
    torch.load(path, weights_only=False)
    assert osp.exists(marker)
    os.remove(marker)
    if 'getattr' in path:  # builtins.getattr on the allow-list lets it through weights_only=True
        with torch.serialization.safe_globals([getattr]):
            torch.load(path, weights_only=True)
        assert osp.exists(marker)


def test_mmengine_checkpoints_still_load_and_nothing_is_allowed_process_wide(tmp_path):
    hub = MessageHub('security_test')
    for value in (1.5, np.float64(2.5)):
        hub.update_scalar('train/loss', value)
    path = str(tmp_path / 'mmengine.pth')
    torch.save(dict(message_hub=hub.state_dict(), rng=np.random.get_state(), state_dict={}), path)
    loaded = load_file(path)
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.mean() == 2.0 and buffer.statistics('max') == 2.5
    assert np.array_equal(loaded['rng'][1], np.random.get_state()[1])
    process_wide = [g[0] if isinstance(g, tuple) else g for g in torch.serialization.get_safe_globals()]
    assert not {getattr, _history_buffer_statistic, HistoryBuffer, np.ndarray} & set(process_wide)
    assert _history_buffer_statistic(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for owner, name in ((getattr, '__self__'), (HistoryBuffer, '__init__'), (os, 'system')):
        with pytest.raises(RuntimeError, match='never needs'):
            _history_buffer_statistic(owner, name)


def test_stored_config_text_is_read_as_data(tmp_path, tiny_extrema):
    marker = str(tmp_path / 'config_ran')
    text = (f"open({marker!r}, 'w').write('ran')\n"
            "model = dict(type='ExtreMA', data_preprocessor=dict(type='TwoViewDataPreprocessor', "
            "mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0)))\n")
    path = str(tmp_path / 'with_cfg.pth')
    torch.save(dict(state_dict=tiny_extrema.state_dict(), meta=dict(extrema_config=tiny_extrema.config, cfg=text)),
               path)
    assert FrozenEncoder(path).normalisation == ((1., 2., 3.), (4., 5., 6.))
    assert extrema.load_pretrained(path).data_preprocessor.mean.flatten().tolist() == [1., 2., 3.]
    assert not osp.exists(marker)
    Config.fromstring(text, '.py')  # executing the text would run it
    assert osp.exists(marker)


def test_unreadable_files_never_advise_weights_only_false(tmp_path):
    truncated = tmp_path / 'truncated.pth'
    torch.save({'state_dict': {'a': torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    for path in (truncated, text):
        with pytest.raises(RuntimeError, match='Cannot read checkpoint') as error:
            load_file(str(path))
        assert 'weights_only' not in str(error.value)


def test_remote_schemes_are_refused_not_unpickled():
    from mmengine.runner.checkpoint import CheckpointLoader
    with pytest.raises(ValueError, match='Download the file'):
        CheckpointLoader.load_checkpoint('https://example.invalid/model.pth')
