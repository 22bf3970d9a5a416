"""SampleList: the (path, label) list of an image folder in shared numpy buffers."""
import multiprocessing as mp

import pytest

from extrema.data import RandomCropImageFolder
from extrema.data.folder import scan_image_folder
from extrema.data.sample_list import SampleList

PAIRS = [('a/ü.jpg', 0), ('a/b.png', 0), ('c/d.jpg', 3), ('', 7)]


def test_behaves_as_the_list_it_holds():
    samples = SampleList(PAIRS)
    assert len(samples) == 4 and list(samples) == PAIRS and samples == PAIRS
    assert samples[0] == ('a/ü.jpg', 0) and samples[-1] == ('', 7) and samples[-4] == PAIRS[0]
    assert isinstance(samples[1][1], int)
    assert list(samples[1:3]) == PAIRS[1:3] and isinstance(samples[::2], SampleList)
    assert samples.labels.tolist() == [0, 0, 3, 7]
    with pytest.raises(IndexError):
        samples[4]
    with pytest.raises(IndexError):
        samples[-5]
    assert len(SampleList([])) == 0 and list(SampleList([])) == []


def _read(samples, index, queue):
    queue.put(samples[index])


def test_forked_workers_read_the_same_samples():
    samples = SampleList(PAIRS)
    ctx = mp.get_context('fork')
    queue = ctx.Queue()
    worker = ctx.Process(target=_read, args=(samples, 2, queue))
    worker.start()
    assert queue.get(timeout=30) == PAIRS[2]
    worker.join()


def test_image_folders_hold_their_samples_serialised(fashion_mnist_folder):
    samples, classes = scan_image_folder(f'{fashion_mnist_folder}/train')
    assert isinstance(samples, SampleList) and len(samples) == 200 and len(classes) == 10
    assert samples.labels.tolist() == sorted(samples.labels.tolist())
    dataset = RandomCropImageFolder(fashion_mnist_folder, 'train', img_size=32, max_samples=30)
    assert len(dataset) == 30 and dataset.samples == list(samples)[:30]
    assert dataset[29]['inputs'].shape == (3, 32, 32)
