"""The README's main job, in its smallest setting."""
import os
import re
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, 'tools'))
import demo  # noqa: E402


def test_main_job_quick_writes_a_filled_report(tmp_path):
    out = tmp_path / 'demo'
    demo.main(['--quick', '--out', str(out)])
    report = (out / 'report.md').read_text()
    rows = [line for line in report.splitlines() if re.match(r'\| (k-NN|logistic|fine-tune|pretrained|random)', line)]
    assert len(rows) == 6 + 2  # 3 protocols x 2 label fractions, 2 segmentation backbones
    for row in rows:
        numbers = [cell.strip() for cell in row.strip('|').split('|')[1:] if cell.strip() and not cell.strip().endswith('%')]
        assert numbers and all(re.fullmatch(r'[+-]?\d+\.\d+', n) for n in numbers), row
    for picture in re.findall(r'\]\(([^)]+\.png)\)', report):
        assert (out / picture).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'Spearman correlation' in report
    # every transfer table names the model zoo entry it started from (the CPU default)
    assert report.count('the model zoo entry, sha256 9af53b0b') == 4  # frozen, fine-tune, segmentation, analyses
    # a second run reuses every finished stage: the pretrained checkpoint is not rewritten
    checkpoint = out / 'pretrain' / 'epoch_2.pth'
    written = checkpoint.stat().st_mtime_ns
    demo.main(['--quick', '--out', str(out)])
    assert checkpoint.stat().st_mtime_ns == written
