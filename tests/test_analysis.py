"""Analysis tools (attention maps, feature inversion, locality probe) on tiny
checkpoints in our, the official and the mmseg format."""
import dataclasses
import importlib.util
import json
import logging
import os

import pytest
import sklearn.datasets
import torch
from mmengine.logging import MMLogger
from PIL import Image
from scipy.stats import spearmanr

from extrema.analysis import attention_maps, invert_visible_features, load_encoder, load_image, sample_boxes
from extrema.analysis.figures import PANEL_PX, TITLE_PX
from extrema.models.data_preprocessor import IMAGENET_MEAN, IMAGENET_STD
from extrema.models.vit import ExtreMAEncoder, ViTTrunk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What mmengine stores in meta['cfg']; the first line proves the text is parsed, not run.
CONFIG_TEXT = """raise RuntimeError('a checkpoint config must never be executed')
model = dict(
    arch=dict(depth=2, embed_dim=64, num_heads=2),
    data_preprocessor=dict(
        mean=(100.0, 110.0, 120.0), std=(50.0, 55.0, 60.0), type='TwoViewDataPreprocessor'))
"""
OFFICIAL_PREFIX = {'student': 'module.base_encoder', 'teacher': 'module.momentum_encoder',
                   'predictor': 'module.predictor'}


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'tools', 'analysis', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_size(path):
    with Image.open(path) as image:
        assert image.format == 'PNG'
        image.verify()
        return image.size


def panels_size(rows, cols):
    return cols * PANEL_PX, rows * (PANEL_PX + TITLE_PX)


@pytest.fixture
def checkpoints(tiny_extrema, tmp_path):
    """{'ours', 'official', 'mmseg'}: paths of the same tiny model (teacher perturbed
    away from the student) in three formats; mmseg holds the teacher trunk with
    relative position biases and a decode head."""
    with torch.no_grad():
        for param in tiny_extrema.teacher.parameters():
            param.add_(0.05 * torch.randn_like(param))
    state = tiny_extrema.state_dict()
    paths = {name: str(tmp_path / f'{name}.pth') for name in ('ours', 'official', 'mmseg')}
    torch.save(dict(state_dict=state, meta=dict(extrema_config=tiny_extrema.config, cfg=CONFIG_TEXT)),
               paths['ours'])
    official = {f'{OFFICIAL_PREFIX[k.split(".")[0]]}.{k.split(".", 1)[1]}': v for k, v in state.items()}
    torch.save(dict(state_dict=official, arch='vit_tiny', epoch=1), paths['official'])
    trunk = ViTTrunk(tiny_extrema.config['arch'], img_size=32, patch_size=8, use_rel_pos_bias=True)
    trunk.load_state_dict(tiny_extrema.teacher.state_dict(), strict=False)
    segmentor = {f'backbone.{k}': v for k, v in trunk.state_dict().items()}
    segmentor['decode_head.conv_seg.weight'] = torch.zeros(5, 64, 1, 1)
    torch.save(dict(state_dict=segmentor, meta=dict(cfg='crop_size = (32, 32)\n')), paths['mmseg'])
    return paths


@pytest.fixture
def log_messages():
    """Messages that the toolkit logs through mmengine during the test."""
    logger = MMLogger.get_current_instance()
    records = []
    collector = logging.Handler()
    collector.emit = records.append
    logger.addHandler(collector)
    yield records
    logger.removeHandler(collector)


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    """A small non-square crop of sklearn's china.jpg (CC-BY 2.0)."""
    folder = os.path.join(os.path.dirname(sklearn.datasets.__file__), 'images')
    with Image.open(os.path.join(folder, 'china.jpg')) as image:
        small = image.convert('RGB').crop((0, 0, 400, 340)).resize((48, 40), Image.BICUBIC)
    path = str(tmp_path_factory.mktemp('images') / 'china_small.png')
    small.save(path)
    return path


def test_load_encoder_reads_every_format(checkpoints, tiny_extrema):
    ours = load_encoder(checkpoints['ours'], 'teacher')
    official = load_encoder(checkpoints['official'], 'teacher', num_heads=2)
    student = load_encoder(checkpoints['ours'], 'student')
    mmseg = load_encoder(checkpoints['mmseg'])
    assert isinstance(ours.encoder, ExtreMAEncoder) and ours.has_instance_branch
    assert type(mmseg.encoder) is ViTTrunk and not mmseg.has_instance_branch
    assert (ours.checkpoint_format, official.checkpoint_format, mmseg.checkpoint_format) == \
        ('extrema', 'official', 'mmseg')
    assert ours.encoder.num_heads == 2  # from meta['extrema_config']
    assert load_encoder(checkpoints['official']).encoder.num_heads == 1  # inferred: 64-d heads
    teacher = tiny_extrema.teacher.state_dict()
    for loaded in (ours, official):
        for key, value in loaded.encoder.state_dict().items():
            assert torch.equal(value, teacher[key]), key
    assert not torch.equal(student.encoder.blocks[0].attn.qkv.weight, ours.encoder.blocks[0].attn.qkv.weight)
    assert torch.equal(mmseg.encoder.blocks[1].mlp.fc2.weight, teacher['blocks.1.mlp.fc2.weight'])
    assert mmseg.encoder.blocks[0].attn.window_size == (4, 4)
    assert mmseg.encoder.num_heads == 2  # from the relative position tables
    # Pixel statistics: parsed from meta['cfg'] (whose first line would raise if run), else ImageNet.
    assert ours.mean == (100., 110., 120.) and ours.std == (50., 55., 60.)
    assert (official.mean, official.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_attention_maps_cli(checkpoints, photo, tmp_path):
    tool = load_tool('attention_maps')
    out = str(tmp_path / 'attention.png')
    maps = tool.main(['--checkpoint', checkpoints['ours'], '--image', photo, '--out', out, '--queries', '3'])
    assert png_size(out) == panels_size(1, 5)  # input, 3 queries, class attention
    assert maps.grid == (4, 4) and len(set(maps.queries)) == 3
    assert torch.allclose(maps.query_maps.sum(dim=(1, 2)), torch.ones(3), atol=1e-5)  # softmax rows
    # The class attention also spends weight on the instance token itself, so the patches get < 1.
    assert 0 < maps.class_attention.sum() < 1 and (maps.class_attention > 0).all()
    # The official file of the same teacher draws the same maps once the inputs are normalised alike
    # (it stores no config: ImageNet statistics).
    official = tool.main(['--checkpoint', checkpoints['official'], '--image', photo, '--num-heads', '2',
                          '--out', str(tmp_path / 'official.png')])
    assert not torch.allclose(official.query_maps, maps.query_maps, atol=1e-4)
    imagenet = dataclasses.replace(load_encoder(checkpoints['ours']), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    same = attention_maps(imagenet, load_image(photo))
    assert torch.allclose(official.query_maps, same.query_maps, atol=1e-6)
    assert torch.allclose(official.class_attention, same.class_attention, atol=1e-6)


def test_attention_maps_without_class_attention_skips_ca_map(checkpoints, photo, tmp_path, log_messages):
    out = str(tmp_path / 'seg.png')
    maps = load_tool('attention_maps').main(['--checkpoint', checkpoints['mmseg'], '--image', photo,
                                             '--out', out, '--queries', '2'])
    assert maps.class_attention is None
    assert png_size(out) == panels_size(1, 3)
    assert any('Skipped the class-attention map' in r.getMessage() for r in log_messages)
    with pytest.raises(ValueError, match='relative position biases for a 4x4 grid'):
        load_tool('attention_maps').main(['--checkpoint', checkpoints['mmseg'], '--image', photo,
                                          '--out', out, '--img-size', '48'])


def test_feature_inversion_cli_lowers_the_loss(checkpoints, photo, tmp_path):
    out = str(tmp_path / 'inversion.png')
    pixels, inversions = load_tool('feature_inversion').main(
        ['--checkpoint', checkpoints['official'], '--image', photo, '--out', out, '--steps', '25',
         '--log-every', '0'])
    assert png_size(out) == panels_size(2, 4)  # input + 3 masked inputs; loss curves + 3 reconstructions
    assert [len(i.visible) for i in inversions] == [8, 4, 1]  # of 16 patches at 0.5 / 0.75 / 0.9
    for inversion in inversions:
        assert len(inversion.losses) == 25
        assert inversion.losses[-1] < 0.5 * inversion.losses[0], inversion.mask_ratio
        assert inversion.reconstruction.shape == pixels.shape
    with open(str(tmp_path / 'inversion.json')) as f:
        logged = json.load(f)
    assert [i['relative_feature_error'] for i in logged['inversions']] == [i.losses for i in inversions]


def test_inversion_without_prior_never_touches_masked_pixels(checkpoints):
    """The masked patches do not reach the visible tokens' features: with no TV
    prior they keep their initial value, while the visible ones change."""
    encoder = load_encoder(checkpoints['ours']).encoder
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(1, 3, 32, 32, generator=generator)
    init = torch.zeros_like(inputs)
    ids_keep = torch.tensor([[[0, 5, 10, 15]]])
    recovered, losses = invert_visible_features(encoder, inputs, ids_keep, init, torch.full_like(init, -9.),
                                                torch.full_like(init, 9.), steps=5, tv_weight=0.)
    changed = (recovered != init).view(3, 4, 8, 4, 8).any(dim=(0, 2, 4)).flatten()  # per patch
    assert changed.nonzero().flatten().tolist() == [0, 5, 10, 15]
    assert losses[-1] < losses[0]
    assert not any(p.grad is not None for p in encoder.parameters())


def test_locality_probe_cli(checkpoints, photo, tmp_path):
    out = str(tmp_path / 'locality.png')
    probe = load_tool('locality_probe').main(['--checkpoint', checkpoints['ours'], '--image', photo,
                                              '--out', out, '--num-crops', '12', '--top', '3'])
    assert png_size(out) == panels_size(1, 6)  # image, scatter, query, 3 matches
    with open(str(tmp_path / 'locality.json')) as f:
        summary = json.load(f)
    expected = spearmanr(probe.similarity.numpy(), probe.iou.numpy())[0]
    assert summary['spearman_similarity_vs_iou'] == pytest.approx(expected)
    assert -1 <= expected <= 1 and summary['num_crops'] == 12
    similarities = [m['similarity'] for m in summary['top_matches']]
    assert len(similarities) == 3 and similarities == sorted(similarities, reverse=True)
    assert similarities[0] == pytest.approx(probe.similarity.max().item(), abs=1e-4)
    assert summary['query_box'] == [12.0, 10.0, 36.0, 30.0]  # default: the central half of 48x40


def test_sample_boxes_stay_inside_and_cover_the_scale_range():
    boxes = sample_boxes(60., 40., 500, scale=(0.1, 0.5), generator=torch.Generator().manual_seed(0))
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 60 + 1e-4).all() and (boxes[:, 3] <= 40 + 1e-4).all()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (60 * 40)
    assert area.min() >= 0.1 - 1e-4 and area.max() <= 0.5 + 1e-4
    assert area.min() < 0.15 and area.max() > 0.45
    centers = (boxes[:, 0] + boxes[:, 2]) / 2
    assert centers.min() < 20 and centers.max() > 40


@pytest.mark.parametrize('tool', ['attention_maps', 'feature_inversion', 'locality_probe'])
def test_bad_image_fails_before_the_model_loads(tool, tmp_path):
    missing_checkpoint = str(tmp_path / 'no_such_checkpoint.pth')  # would fail if it were read first
    out = str(tmp_path / 'out.png')
    with pytest.raises(FileNotFoundError, match='Image .*missing.png.* does not exist'):
        load_tool(tool).main(['--checkpoint', missing_checkpoint, '--image', str(tmp_path / 'missing.png'),
                              '--out', out])
    not_an_image = tmp_path / 'notes.png'
    not_an_image.write_text('not a picture')
    with pytest.raises(ValueError, match='Cannot read image .*notes.png'):
        load_tool(tool).main(['--checkpoint', missing_checkpoint, '--image', str(not_an_image), '--out', out])
    with pytest.raises(ValueError, match='must be a .png file'):
        load_tool(tool).main(['--checkpoint', missing_checkpoint, '--image', str(not_an_image),
                              '--out', str(tmp_path / 'out.jpg')])
    assert not os.path.exists(out)


def test_instance_analyses_refuse_a_segmentation_backbone(checkpoints, photo, tmp_path):
    out = str(tmp_path / 'locality.png')
    with pytest.raises(ValueError, match='class-attention blocks .*mmseg checkpoint does not have'):
        load_tool('locality_probe').main(['--checkpoint', checkpoints['mmseg'], '--image', photo,
                                          '--out', out])
    assert not os.path.exists(out)


@pytest.mark.parametrize('option, message', [
    (['--img-size', '36'], 'not divisible by the patch size 8'),
    (['--mask-ratios', '0.5', '0.97'], 'leaves no visible token out of 16'),
])
def test_inversion_settings_are_checked_before_compute(checkpoints, photo, tmp_path, log_messages, option,
                                                       message):
    with pytest.raises(ValueError, match=message):
        load_tool('feature_inversion').main(['--checkpoint', checkpoints['ours'], '--image', photo,
                                             '--out', str(tmp_path / 'x.png'), '--log-every', '1'] + option)
    assert not any('relative feature error' in r.getMessage() for r in log_messages)  # no step ran
