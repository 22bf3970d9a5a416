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


def test_gpu_setting_adds_the_whole_reproduction_to_the_report(tmp_path, monkeypatch):
    """The GPU setting's extra stage calls `reproduce.py all` on the demo's data and puts its
    summary in the report (the reproduction itself: tests/test_reproduce.py)."""
    calls = []

    class FakeReproduce:
        @staticmethod
        def main(argv):
            calls.append(argv)
            work_dir = argv[argv.index('--work-dir') + 1]
            os.makedirs(work_dir)
            with open(os.path.join(work_dir, 'reproduction.md'), 'w') as f:
                f.write('# The small-scale reproduction\n\n## Ablations\n\n![ablations](ablations.png)\n')

    out = tmp_path / 'demo'
    real_load_tool = demo.load_tool
    monkeypatch.setattr(demo, 'load_tool', lambda path: FakeReproduce if path == 'tools/reproduce.py'
                        else real_load_tool(path))
    settings = dict(demo.SETTINGS['quick'], reproduction=demo.SETTINGS['gpu']['reproduction'])
    runner = demo.Demo(str(out), str(tmp_path / 'data'), settings, fresh=True)
    runner.run({'reproduction'})
    assert calls == [['all', '--data-root', runner.full_root, '--work-dir', str(out / 'reproduction'),
                      *demo.SETTINGS['gpu']['reproduction']]]
    assert runner.state['reproduction'] == dict(report=os.path.join('reproduction', 'reproduction.md'))
    state = dict(runner.state, data=dict(pretrain_images=1, labelled_pool=1, test_images=1),
                 pretrain=dict(iters=1, final_loss=0., loss_type='infonce', proj_dim=128))
    demo.write_report(str(out), state, settings)
    report = (out / 'report.md').read_text()
    assert '## The whole small-scale reproduction ([reproduction/reproduction.md]' in report
    assert '### Ablations' in report and '![ablations](reproduction/ablations.png)' in report
    # without a GPU the stage is skipped
    cpu = demo.Demo(str(tmp_path / 'cpu'), str(tmp_path / 'data'), demo.SETTINGS['quick'], fresh=True)
    cpu.run({'reproduction'})
    assert 'reproduction' not in cpu.state and len(calls) == 1
