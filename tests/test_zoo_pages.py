"""The zoo pages of pretrain/configs/, mmseg_configs/ and semi_sup/configs/ list every config, and only existing ones."""
import glob
import os.path as osp

import pytest
import yaml

from conftest import ROOT


@pytest.mark.parametrize('folder', ['pretrain/configs', 'mmseg_configs', 'semi_sup/configs'])
def test_metafile_and_readme_cover_every_config(folder):
    configs = {osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, folder, '*.py'))}
    meta = yaml.safe_load(open(osp.join(ROOT, folder, 'metafile.yml')))
    listed = {model['Config'] for model in meta['Models']}
    aliases = {f'{folder}/{model["Alias"]}.py' for model in meta['Models'] if 'Alias' in model}
    assert listed <= configs
    assert configs == listed | aliases
    readme = open(osp.join(ROOT, folder, 'README.md')).read()
    for config in listed:
        assert f'({osp.basename(config)})' in readme, config  # a link to the file
    for model in meta['Models']:
        for result in model['Results']:
            assert 'ours, measured' in result['Notes']  # published numbers stay in the README, marked so
