"""Checkpoint files on disk: atomic writes, finding the newest complete one, and
cleaning what a killed write left behind."""
import glob
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional

from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import print_log

CHECKPOINT_NAME = re.compile(r'(epoch|iter)_(\d+)\.pth')
TEMPORARY_NAME = re.compile(r'.+\.pth\.tmp-(\d+)')


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """``put`` writes ``path.tmp-<pid>``, fsyncs and renames it over ``path``, so a
    crash mid-write never leaves a truncated checkpoint under its final name."""

    def put(self, obj: bytes, filepath) -> None:
        filepath = str(filepath)
        os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
        tmp = f'{filepath}.tmp-{os.getpid()}'
        try:
            with open(tmp, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file: its zip directory, written last,
    is there and every member's data ends inside the file. A truncated copy fails this
    without anything being unpickled."""
    try:
        with zipfile.ZipFile(path) as archive:
            size = osp.getsize(path)
            return bool(archive.infolist()) and all(
                info.header_offset + info.compress_size <= size for info in archive.infolist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The newest complete checkpoint in ``work_dir``.

    Candidates are mmengine's ``last_checkpoint`` pointer, then ``epoch_*.pth`` /
    ``iter_*.pth`` from the newest down; the first complete one is returned and each
    incomplete one skipped is logged (writes are atomic, but a file can still be cut
    short by a copy or a full disk).
    """
    candidates: List[str] = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            path = f.read().strip()
        if path and osp.isfile(path):
            candidates.append(path)
    numbered = []
    for path in glob.glob(osp.join(work_dir, '*.pth')):
        match = CHECKPOINT_NAME.fullmatch(osp.basename(path))
        if match:
            numbered.append((int(match.group(2)), path))
    candidates += [path for _, path in sorted(numbered, reverse=True) if path not in candidates]
    for path in candidates:
        if is_complete_checkpoint(path):
            return path
        print_log(f'Skipping {path}: the file is incomplete (truncated or not a torch checkpoint); '
                  'trying the previous checkpoint.', logger='current', level=30)
    return None


def remove_stale_temporaries(work_dir: str) -> List[str]:
    """Delete ``*.pth.tmp-<pid>`` files of writes whose process no longer exists
    (a run killed while saving); returns their paths."""
    removed = []
    for path in glob.glob(osp.join(work_dir, '*.pth.tmp-*')):
        match = TEMPORARY_NAME.fullmatch(osp.basename(path))
        if match and not _process_exists(int(match.group(1))):
            os.remove(path)
            removed.append(path)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
