"""An mmengine file backend whose writes are atomic (temporary file + rename)."""
import os
import os.path as osp

from mmengine.fileio import LocalBackend, register_backend


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
