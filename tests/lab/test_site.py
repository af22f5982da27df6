# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/site.yml end to end on a fresh 3-host lab (central + 2 edges), twice.

The first run prepares every host with the store_host role, imports an image at central and
distributes it to the edges over the image-sync network; the second run must change nothing.
"""

import os
import re
import subprocess
import sys

import pytest

from labrun import ROOT, lab_cmd as lab

PLAYBOOK_BIN = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
NAME = 'ci-site'
RECAP = re.compile(r'^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.MULTILINE)


def site(state_dir):
    env = dict(os.environ, LAB_NAME=NAME, LAB_STATE_DIR=state_dir, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'),
               ANSIBLE_FORCE_COLOR='0', ANSIBLE_NOCOLOR='1')
    run = subprocess.run([PLAYBOOK_BIN, '-i', os.path.join(ROOT, 'inventories', 'lab'), os.path.join(ROOT, 'playbooks', 'site.yml')],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=env, cwd=ROOT,
                         check=False, timeout=1800)
    recap = dict((host, tuple(int(n) for n in numbers)) for host, *numbers in RECAP.findall(run.stdout))
    return run, recap


@pytest.mark.lab
def test_site_playbook_distributes_an_image_and_is_idempotent(tmp_path):
    if os.geteuid() != 0:
        pytest.skip('the lab needs root')
    state_dir = str(tmp_path / NAME)
    lab('create', '--name', NAME, '--state-dir', state_dir, '--hosts', 'central,edge1,edge2', '--mgmt-net', '10.213.0.0/24')
    try:
        first, recap = site(state_dir)
        assert first.returncode == 0, first.stdout[-6000:]
        assert sorted(recap) == ['central', 'edge1', 'edge2']
        assert all(failed == 0 and unreachable == 0 for _ok, _changed, unreachable, failed in recap.values())
        second, recap = site(state_dir)
        assert second.returncode == 0, second.stdout[-6000:]
        assert dict((host, numbers[1]) for host, numbers in recap.items()) == {'central': 0, 'edge1': 0, 'edge2': 0}, second.stdout[-6000:]
        # each edge's image task reports the image active at central and at that edge (image_info's view)
        for edge in ('edge1', 'edge2'):
            assert re.search(r'site-disk \([0-9a-f-]{36}\) is active in central, %s' % edge, second.stdout), second.stdout[-6000:]
    finally:
        lab('destroy', '--name', NAME, '--state-dir', state_dir)
