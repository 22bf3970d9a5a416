"""A (path, label) list held in three numpy buffers instead of millions of Python objects.

DataLoader workers are forked copies of the main process. Reading a Python object writes its
reference count, so every worker that walks a list of 1.28 M (path, label) tuples ends up with
its own copy of the pages holding them. Numpy buffers are read without writes, so their pages
stay shared between all workers. This is what mmengine's ``BaseDataset(serialize_data=True)``
does with pickled items; paths and labels need no pickling (docs/benchmark.md, "The sample list").
"""
from typing import Iterable, Iterator, Tuple, Union

import numpy as np


class SampleList:
    """Read-only sequence of ``(path, label)`` built from an iterable of such pairs.

    Paths are stored as concatenated UTF-8 bytes with end offsets, labels as int64.
    Indexing returns a ``(str, int)`` tuple (negative indices too); a slice returns a
    ``SampleList``.
    """

    def __init__(self, samples: Iterable[Tuple[str, int]]):
        paths, labels = [], []
        for path, label in samples:
            paths.append(path.encode())
            labels.append(label)
        self._bytes = np.frombuffer(b''.join(paths), dtype=np.uint8)
        self._ends = np.cumsum([len(p) for p in paths], dtype=np.int64)
        self._labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: Union[int, slice]):
        if isinstance(index, slice):
            return SampleList(self[i] for i in range(*index.indices(len(self))))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f'sample index {index} out of range for {len(self)} samples')
        start = int(self._ends[index - 1]) if index else 0
        path = self._bytes[start:int(self._ends[index])].tobytes().decode()
        return path, int(self._labels[index])

    def __iter__(self) -> Iterator[Tuple[str, int]]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other) -> bool:
        return len(self) == len(other) and all(a == tuple(b) for a, b in zip(self, other))

    @property
    def labels(self) -> np.ndarray:
        """All labels, (N,) int64 (no per-item Python objects)."""
        return self._labels

    @property
    def nbytes(self) -> int:
        return self._bytes.nbytes + self._ends.nbytes + self._labels.nbytes

    def __repr__(self) -> str:
        return f'SampleList({len(self)} samples, {self.nbytes / 2**20:.1f} MiB)'
