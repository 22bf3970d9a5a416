"""Label subsets: SimCLR split files, class-balanced subsets, validation labels."""
import hashlib
import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT
from extrema.data.subsets import (SPLITS_DIR, LabelledImageFolder, balanced_subset, read_split_file,
                                  resolve_split_file)

SIMCLR_MD5 = {'1percent': 'b61c91b8ddb75fabdb02a9bb2ae3bd74', '10percent': 'b0d861160cc9531910d069ff547fc1b6'}
SMALL = dict(input_size=16, crop_pct=1.0)


def test_split_files_ship_in_the_wheel(tmp_path):
    """A non-editable install finds the split files: build the wheel (from a copy of the sources, so
    the build leaves nothing in the repository), unpack it into a folder and import extrema from
    there, with the repository off sys.path."""
    import shutil
    import subprocess
    import sys
    import zipfile
    source = tmp_path / 'source'
    shutil.copytree(os.path.join(ROOT, 'extrema'), source / 'extrema',
                    ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copy(os.path.join(ROOT, 'pyproject.toml'), source)
    build = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
                            '-w', str(tmp_path / 'dist'), str(source)], capture_output=True, text=True,
                           cwd=str(tmp_path))
    assert build.returncode == 0, build.stderr[-2000:]
    wheel, = (tmp_path / 'dist').glob('extrema_toolkit-*.whl')
    site = tmp_path / 'site'
    zipfile.ZipFile(wheel).extractall(site)
    script = ("import sys, hashlib; sys.path = [p for p in sys.path if p not in ('', {root!r})]; "
              "sys.path.insert(0, {site!r}); "
              "from extrema.data.subsets import resolve_split_file, SPLITS_DIR; "
              "path = resolve_split_file('1percent'); "
              "print(path.startswith({site!r}), hashlib.md5(open(path, 'rb').read()).hexdigest(), "
              "sorted(__import__('os').listdir(SPLITS_DIR)))").format(root=ROOT, site=str(site))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, cwd=str(tmp_path),
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[:2] == ['True', SIMCLR_MD5['1percent']]
    assert "['10percent.txt', '1percent.txt', 'NOTICE', 'README.md']" in done.stdout


def write_image(path, value=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new('RGB', (16, 16), (value, value, value)).save(path, format='JPEG')


@pytest.fixture(scope='module')
def fake_imagenet(tmp_path_factory):
    """train/<wnid>/ for 3 wnids of the real 1% split: 2 listed images and 2 unlisted ones each,
    plus a class with no listed image; val/<wnid>/ with one image per class."""
    root = tmp_path_factory.mktemp('imagenet')
    listed_all = read_split_file(resolve_split_file('1percent'))
    wnids = sorted({name.split('_')[0] for name in listed_all})[:3] + ['n99999999']
    listed = []
    for wnid in wnids:
        mine = [n for n in listed_all if n.startswith(wnid + '_')][:2]
        listed += mine
        for name in mine + [f'{wnid}_{900000 + i}.JPEG' for i in range(2)]:
            write_image(str(root / 'train' / wnid / name))
        write_image(str(root / 'val' / wnid / f'ILSVRC2012_val_{wnid}.JPEG'))
    return str(root), wnids, listed


def test_shipped_splits_are_the_simclr_files():
    one, ten = (read_split_file(resolve_split_file(s)) for s in ('1percent', '10percent'))
    assert (len(one), len(ten)) == (12811, 128116)
    assert set(one) <= set(ten)
    assert len({n.split('_')[0] for n in one}) == 1000
    for name, md5 in SIMCLR_MD5.items():
        with open(os.path.join(SPLITS_DIR, f'{name}.txt'), 'rb') as f:
            assert hashlib.md5(f.read()).hexdigest() == md5
    notice = open(os.path.join(SPLITS_DIR, 'NOTICE')).read()
    assert 'google-research/simclr' in notice and 'Apache License' in notice


def test_split_selects_exactly_the_listed_images(fake_imagenet, tmp_path):
    root, wnids, listed = fake_imagenet
    split_file = tmp_path / 'split.txt'
    split_file.write_text('\n'.join(listed) + '\n')
    with pytest.raises(ValueError, match=r"no labelled image of 1 of the 4 classes, e.g. \['n99999999'\]"):
        LabelledImageFolder(root, split=str(split_file), transform=SMALL)
    dataset = LabelledImageFolder(root, split=str(split_file), allow_missing=True, transform=SMALL)
    assert dataset.classes == wnids
    expected = {(os.path.join(root, 'train', n.split('_')[0], n), wnids.index(n.split('_')[0])) for n in listed}
    assert set(dataset.samples) == expected and len(dataset) == len(listed)
    assert dataset.split_md5 == hashlib.md5(split_file.read_bytes()).hexdigest()
    item = dataset[len(dataset) - 1]
    assert item['inputs'].shape == (3, 16, 16) and item['data_samples'] == dataset.samples[-1][1]


def test_real_split_with_missing_images(fake_imagenet):
    root, wnids, listed = fake_imagenet
    with pytest.raises(FileNotFoundError, match=f'{12811 - len(listed)} of 12811 images listed') as error:
        LabelledImageFolder(root, split='1percent', transform=SMALL)
    assert 'allow_missing' in str(error.value)
    missing_example = str(error.value).split('e.g. [')[1].split(',')[0].strip("'")
    assert missing_example in read_split_file(resolve_split_file('1percent')) and missing_example not in listed
    dataset = LabelledImageFolder(root, split='1percent', allow_missing=True, transform=SMALL)
    assert sorted(os.path.basename(p) for p, _ in dataset.samples) == sorted(listed)
    assert dataset.metainfo['split_md5'] == SIMCLR_MD5['1percent']


def test_bad_split_inputs(fake_imagenet, tmp_path):
    root, _, _ = fake_imagenet
    with pytest.raises(FileNotFoundError, match="'1percent', '10percent'"):
        LabelledImageFolder(root, split='2percent', transform=SMALL)
    bad = tmp_path / 'bad.txt'
    bad.write_text('train/n01440764/a.JPEG\n')
    with pytest.raises(ValueError, match='not <class>_<id>'):
        LabelledImageFolder(root, split=str(bad), transform=SMALL)
    with pytest.raises(ValueError, match='either split'):
        LabelledImageFolder(root, split='1percent', percent=1, transform=SMALL)


def test_validation_labels_follow_the_training_classes(fake_imagenet, tmp_path):
    root, wnids, _ = fake_imagenet
    val = LabelledImageFolder(root, 'val', transform=SMALL)
    assert [(os.path.basename(os.path.dirname(p)), y) for p, y in val.samples] == \
        [(w, i) for i, w in enumerate(wnids)]
    ann = tmp_path / 'val.txt'
    ann.write_text(f'{wnids[2]}/ILSVRC2012_val_{wnids[2]}.JPEG {wnids[2]}\n'
                   f'{wnids[0]}/ILSVRC2012_val_{wnids[0]}.JPEG 0\n')
    annotated = LabelledImageFolder(root, 'val', ann_file=str(ann), transform=SMALL)
    assert [y for _, y in annotated.samples] == [2, 0]
    ann.write_text(f'{wnids[0]}/ILSVRC2012_val_{wnids[0]}.JPEG 7\n')
    with pytest.raises(ValueError, match='not one of the 4 training classes'):
        LabelledImageFolder(root, 'val', ann_file=str(ann), transform=SMALL)
    os.makedirs(os.path.join(root, 'val_extra', 'n00000001'))
    write_image(os.path.join(root, 'val_extra', 'n00000001', 'x.JPEG'))
    with pytest.raises(ValueError, match='not training classes'):
        LabelledImageFolder(root, 'val_extra', transform=SMALL)


def test_balanced_subset_draws_percent_of_every_class():
    sizes = [200, 50, 7]
    samples = [(f'{c}/{i}.png', c) for c, n in enumerate(sizes) for i in range(n)]
    subset = balanced_subset(samples, 10, seed=0)
    counts = np.bincount([y for _, y in subset])
    assert counts.tolist() == [20, 5, 1]
    assert set(subset) <= set(samples) and subset == sorted(subset, key=samples.index)
    assert balanced_subset(samples, 10, seed=0) == subset
    assert balanced_subset(samples, 10, seed=1) != subset
    with pytest.raises(ValueError, match=r'\(0, 100\]'):
        balanced_subset(samples, 0)


def test_percent_subset_of_an_image_folder(fashion_mnist_folder):
    dataset = LabelledImageFolder(fashion_mnist_folder, percent=10, seed=3, transform=dict(input_size=32))
    assert np.bincount([y for _, y in dataset.samples]).tolist() == [2] * 10
    assert dataset.split_md5 is None and len(dataset.classes) == 10


def test_frozen_eval_cli_on_an_imagenet_layout(fake_imagenet, tiny_extrema, tmp_path):
    """The documented ImageNet command, on the fake tree: the shipped 1% split selects the images."""
    root, wnids, listed = fake_imagenet
    checkpoint = str(tmp_path / 'tiny.pth')
    torch.save(dict(state_dict=tiny_extrema.state_dict(), meta=dict(extrema_config=tiny_extrema.config)),
               checkpoint)
    spec = importlib.util.spec_from_file_location(
        'frozen_eval', os.path.join(ROOT, 'semi_sup', 'frozen_eval.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    args = ['--checkpoint', checkpoint, '--data-root', root, '--split', '1percent', '--protocol', 'knn', 'linear',
            '--linear-aug', 'none', '--linear-epochs', '2', '--linear-warmup-epochs', '1', '--workers', '0',
            '--cache-dir', '', '--out', str(tmp_path / 'out.json')]
    with pytest.raises(FileNotFoundError, match='--allow-missing'):
        cli.main(args)
    report = cli.main(args + ['--allow-missing'])
    assert report['split_md5'] == SIMCLR_MD5['1percent'] and report['num_labelled'] == len(listed)
    assert report['num_val'] == len(wnids) and json.load(open(tmp_path / 'out.json'))['num_classes'] == 4
    assert report['results']['linear']['batch_size'] == len(listed)  # capped at the labelled-set size


def test_augmentation_of_an_item_depends_on_seed_epoch_and_index_only(fashion_mnist_folder):
    """What makes a fine-tuning run resumed with persistent workers exact: after set_epoch,
    item i of epoch e is the same whatever was drawn before it."""
    dataset = LabelledImageFolder(fashion_mnist_folder, percent=50, transform=dict(
        input_size=32, is_training=True, scale=(0.2, 1.0), hflip=0.5))
    dataset.set_epoch(1, seed=0)
    first = dataset[3]['inputs']
    torch.rand(100), dataset[5]  # other draws in between
    assert torch.equal(dataset[3]['inputs'], first)
    dataset.set_epoch(2, seed=0)
    assert not torch.equal(dataset[3]['inputs'], first)


def test_randaugment_posterize_to_zero_bits_gives_a_black_image(fashion_mnist_folder):
    """m9 + magnitude noise reaches m10, where the 'inc1' policy keeps 0 bits (Pillow 13 raises)."""
    from timm.data.auto_augment import RandAugment
    dataset = LabelledImageFolder(fashion_mnist_folder, percent=10, transform=dict(
        input_size=32, is_training=True, auto_augment='rand-m9-mstd0.5-inc1'))
    augment = next(t for t in dataset.transform.transforms if isinstance(t, RandAugment))
    posterize_op = next(op for op in augment.ops if op.name == 'PosterizeIncreasing')
    image = Image.new('RGB', (8, 8), (200, 100, 50))
    assert posterize_op.aug_fn(image, 0).getextrema() == ((0, 0),) * 3
    assert posterize_op.aug_fn(image, 2).getpixel((0, 0)) == (192, 64, 0)


def test_fashion_mnist_reexport_leaves_no_stale_images(tmp_path):
    """A second export with other counts replaces the first; a foreign folder is refused."""
    from extrema.data.fashion_mnist import export_image_folder

    def count(split):
        return sum(len(files) for _, _, files in os.walk(tmp_path / 'out' / split) if files) - 1  # marker

    assert export_image_folder(str(tmp_path / 'out'), 32, 3, 2) == dict(train=30, val=20)
    assert (count('train'), count('val')) == (30, 20)
    assert export_image_folder(str(tmp_path / 'out'), 32, 2, 1) == dict(train=20, val=10)
    assert (count('train'), count('val')) == (20, 10)
    os.makedirs(tmp_path / 'foreign' / 'train')
    write_image(str(tmp_path / 'foreign' / 'train' / 'mine.jpg'))
    with pytest.raises(FileExistsError, match='not a Fashion-MNIST export'):
        export_image_folder(str(tmp_path / 'foreign'), 32, 1, 1)
    assert os.path.exists(tmp_path / 'foreign' / 'train' / 'mine.jpg')
