# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test lab itself: a 2-host lab boots, answers SSH with strict host key checking, can use loop
devices and filesystems, and leaves nothing behind when destroyed.

    sudo .venv/bin/python -m pytest tests/lab -m lab

The tests run in file order on one lab (module fixture); the last one destroys it.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from labrun import lab_cmd

HOSTS = ('central', 'edge1')
# Not the lab's default subnets, so a developer's lab (defaults) can run at the same time.
NETS = {'mgmt': '10.201.250.0/24', 'data': '10.202.250.0/24', 'sync': '10.203.250.0/24'}


def _missing_tools():
    return [t for t in ('systemd-nspawn', 'debootstrap', 'zstd', 'ssh', 'losetup') if not shutil.which(t)]


pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason='the lab needs root (network namespaces, mounts, systemd-nspawn)'),
    pytest.mark.skipif(bool(_missing_tools()), reason='missing tools: %s (see tests/lab/README.md, "Requirements")'
                       % ', '.join(_missing_tools())),
]


def losetup_list():
    out = subprocess.run(['losetup', '--list', '--json', '--output', 'NAME,BACK-FILE,BACK-MAJ:MIN'],
                         stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
    items = json.loads(out).get('loopdevices', []) if out.strip() else []
    return [(i['name'], (i.get('back-file') or '').strip(), (i.get('back-maj:min') or '').strip()) for i in items]


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def ssh_pids(marker):
    """ssh processes (ControlPersist masters included) whose command line mentions marker."""
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            exe = os.path.basename(os.readlink('/proc/%s/exe' % entry))
            with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                args = handle.read().decode(errors='replace')
        except OSError:
            continue
        if exe == 'ssh' and marker in args:
            pids.append(int(entry))
    return pids


class Lab:
    def __init__(self, name, state, summary):
        self.name = name
        self.state = state
        self.summary = summary
        self.ssh_config = summary['ssh_config']

    def ssh(self, host, script, check=True, options=None):
        cmd = ['ssh', '-F', self.ssh_config] + (options or []) + [host, script]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=300, check=False)
        if check:
            assert proc.returncode == 0, 'ssh %s %r failed:\n%s\n%s' % (host, script, proc.stdout, proc.stderr)
        return proc


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    name = 'pytest-%d' % os.getpid()
    state = str(tmp_path_factory.mktemp('lab') / 'state')
    args = ['create', '--name', name, '--state-dir', state, '--hosts', ','.join(HOSTS)]
    for net, cidr in NETS.items():
        args += ['--%s-net' % net, cidr]
    try:
        proc = lab_cmd(*args)
        yield Lab(name, state, json.loads(proc.stdout))
    finally:
        lab_cmd('destroy', '--name', name, '--state-dir', state, check=False)


def test_create_reports_hosts_and_is_idempotent(lab):
    hosts = lab.summary['hosts']
    assert sorted(hosts) == sorted(HOSTS)
    assert hosts['central']['mgmt_address'] == '10.201.250.11'
    assert hosts['edge1']['mgmt_address'] == '10.201.250.12'
    for item in hosts.values():
        assert item['interfaces'] == {'eth0': 'mgmt', 'eth1': 'data', 'eth2': 'sync'}
        assert item['netns'].startswith('lab-%s-' % lab.name)
        assert os.path.isfile(item['key']) and os.path.isfile(item['known_hosts'])
    with open(lab.summary['inventory']) as handle:
        inventory = handle.read()
    for needle in ('ansible_host: 10.201.250.11', 'ansible_user: root', 'ansible_ssh_private_key_file:',
                   'StrictHostKeyChecking=yes', 'ansible_python_interpreter: /usr/bin/python3'):
        assert needle in inventory

    again = json.loads(lab_cmd('create', '--name', lab.name, '--state-dir', lab.state, '--hosts', ','.join(HOSTS),
                               *['--%s-net=%s' % item for item in NETS.items()]).stdout)
    assert again['booted'] == []
    assert {h: i['pid'] for h, i in again['hosts'].items()} == {h: i['pid'] for h, i in hosts.items()}
    status = json.loads(lab_cmd('status', '--name', lab.name, '--state-dir', lab.state).stdout)
    assert all(item['running'] and item['ssh_open'] for item in status['hosts'].values())


def test_ssh_checks_host_keys(lab, tmp_path):
    assert lab.ssh('central', 'hostname').stdout.strip() == 'central'
    assert lab.ssh('edge1', 'hostname').stdout.strip() == 'edge1'
    empty = tmp_path / 'known_hosts'
    empty.write_text('')
    proc = lab.ssh('central', 'true', check=False, options=['-o', 'UserKnownHostsFile=%s' % empty])
    assert proc.returncode != 0
    assert 'Host key verification failed' in proc.stderr


def test_loop_device_mkfs_mount(lab):
    script = '''set -e
    truncate -s 320M /root/lab-test.img
    dev=$(losetup -f --show /root/lab-test.img)
    for fs in xfs ext4; do
        mkfs.$fs -q $( [ $fs = xfs ] && echo -f || echo -F ) "$dev"
        mkdir -p /mnt/lab-test
        mount "$dev" /mnt/lab-test
        echo "written on $fs" > /mnt/lab-test/file
        sync
        cat /mnt/lab-test/file
        umount /mnt/lab-test
    done
    losetup -d "$dev"
    rm /root/lab-test.img
    '''
    out = lab.ssh('edge1', script).stdout
    assert 'written on xfs' in out and 'written on ext4' in out


def test_python3_works(lab):
    out = lab.ssh('central', '/usr/bin/python3 -c "import apt, json, sys; print(sys.version_info[0])"').stdout
    assert out.strip() == '3'


def test_hosts_reach_each_other_over_management(lab):
    lab.ssh('central', 'ping -c 1 -W 2 edge1')
    lab.ssh('edge1', 'ping -c 1 -W 2 10.201.250.11')
    lab.ssh('central', '/usr/bin/python3 -c "import socket; socket.create_connection((\'edge1\', 22), 3)"')


def test_data_and_sync_interfaces_exist_without_addresses(lab):
    for host in HOSTS:
        links = {item['ifname']: item for item in json.loads(lab.ssh(host, 'ip -j addr show').stdout)}
        assert {'eth0', 'eth1', 'eth2'} <= set(links)
        inet = {name: [a['local'] for a in item.get('addr_info', []) if a['family'] == 'inet']
                for name, item in links.items()}
        assert inet['eth0'] == [lab.summary['hosts'][host]['mgmt_address']]
        assert inet['eth1'] == [] and inet['eth2'] == []


def test_ansible_ping_with_lab_inventory(lab):
    ansible = os.path.join(os.path.dirname(sys.executable), 'ansible')
    if not os.access(ansible, os.X_OK):
        ansible = shutil.which('ansible')
    if not ansible:
        pytest.skip('ansible not installed next to %s nor on PATH' % sys.executable)
    proc = subprocess.run([ansible, '-i', lab.summary['inventory'], 'all', '-m', 'ping'], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.count('"pong"') == len(HOSTS)


def test_destroy_leaves_nothing(lab):
    with open(os.path.join(lab.state, 'lab.json')) as handle:
        recorded = json.load(handle)
    overlay_devs = {item['overlay_dev'] for item in recorded['hosts'].values()}
    pids = [item[k] for item in recorded['hosts'].values() for k in ('pid', 'leader') if item.get(k)]
    assert pids and all(alive(p) for p in pids)
    # Leave work behind that destroy must undo: an attached, mounted loop device and an ssh master.
    lab.ssh('edge1', 'truncate -s 64M /srv/left.img && mkfs.ext4 -q -F /srv/left.img && mkdir -p /srv/left '
                     '&& mount "$(losetup -f --show /srv/left.img)" /srv/left')
    assert any(item[2] in overlay_devs for item in losetup_list())
    control = os.path.join(lab.state, 'cm-%C')
    subprocess.run(['ssh', '-F', lab.ssh_config, '-o', 'ControlMaster=yes', '-o', 'ControlPersist=300',
                    '-o', 'ControlPath=' + control, '-f', '-N', 'central'], check=True, timeout=60)
    assert ssh_pids(lab.state)

    result = json.loads(lab_cmd('destroy', '--name', lab.name, '--state-dir', lab.state).stdout)
    assert result['destroyed'] and result['leftovers'] == []

    netns = subprocess.run(['ip', 'netns', 'list'], stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    assert lab.name not in netns
    links = subprocess.run(['ip', '-o', 'link', 'show'], stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    assert recorded['root_if'] + ':' not in links and recorded['root_if'] + '@' not in links
    with open('/proc/self/mountinfo') as handle:
        assert lab.state not in handle.read()
    for name, back, dev in losetup_list():
        assert dev not in overlay_devs and not back.startswith(lab.state), 'loop device %s left: %s' % (name, back)
    assert not [p for p in pids if alive(p)]
    assert not [p for p in ssh_pids(lab.state) if alive(p)]
    assert not os.path.exists(lab.state)
    assert not os.path.exists('/run/vmimages-multistore-lab/%s' % lab.name)

    again = json.loads(lab_cmd('destroy', '--name', lab.name, '--state-dir', lab.state).stdout)
    assert again['destroyed']
