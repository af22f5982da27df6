# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""molecule verify (testinfra): what the store_host role must have left on the two lab hosts.

Runs through Ansible's connection to the lab hosts (molecule passes the inventory). The last test copies
an image from central to edge1 and checks, in central's sshd log, that the copy came over the
image-sync network.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import shlex

import pytest
import testinfra

INVENTORY = os.environ.get('MOLECULE_INVENTORY_FILE')

EXPECTED = {
    'central': {
        'mgmt_interface': 'eth0',
        'data': ('eth1', '10.202.0.11/24'),
        'sync': ('eth2', '10.203.0.11/24'),
        'mount_path': '/cloud_bs',
        'fstype': 'xfs',
        'loop_file': '/srv/vmimages/cloud_bs.img',
        'fstab_opts': 'defaults,noatime,loop',
        'store': 'central',
        'site_role': 'central',
    },
    'edge1': {
        'mgmt_interface': 'eth0',
        'data': ('eth1', '10.202.0.12/24'),
        'sync': ('eth2', '10.203.0.12/24'),
        'mount_path': '/edge_bs',
        'fstype': 'ext4',
        'loop_file': '/srv/vmimages/edge_bs.img',
        'fstab_opts': 'defaults,loop',
        'store': 'edge1',
        'site_role': 'edge',
    },
}
NFS_FSTAB = 'nfs1.example.org:/export/images /mnt/nfs-images nfs4 ro,vers=4.2,_netdev 0 0'
AGENT = '/usr/local/sbin/vmimages-multistore-agent'
SYNC_KEY = '/root/.ssh/vmimages_multistore_sync'
KNOWN_HOSTS = '/etc/vmimages-multistore/known_hosts'
IMAGE = '/var/tmp/molecule-disk.qcow2'

pytestmark = pytest.mark.skipif(not INVENTORY, reason='run by molecule verify (MOLECULE_INVENTORY_FILE)')

_hosts = {}


def lab(name):
    if name not in _hosts:
        _hosts[name] = testinfra.get_host('ansible://%s' % name, ansible_inventory=INVENTORY)
    return _hosts[name]


def module(host, name, args, check=False):
    result = host.ansible(name, args, check=check)
    assert not result.get('failed'), result.get('msg', result)
    return result


def addresses(host, interface):
    links = json.loads(host.check_output('ip -j addr show dev %s' % interface))
    return ['%s/%s' % (a['local'], a['prefixlen']) for link in links for a in link.get('addr_info', [])]


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_filesystem_mounted_from_its_loop_file(name):
    host, want = lab(name), EXPECTED[name]
    mount = host.mount_point(want['mount_path'])
    assert mount.exists
    assert mount.filesystem == want['fstype']
    assert re.match(r'^/dev/loop\d+$', mount.device)
    backing = host.check_output('losetup --noheadings --output BACK-FILE %s' % mount.device).strip()
    assert backing == want['loop_file']
    if name == 'central':
        assert 'noatime' in mount.options
        assert 'reflink=1' in host.check_output('xfs_info %s' % want['mount_path'])
    directory = host.file(want['mount_path'])
    assert directory.user == 'root' and directory.group == 'root' and directory.mode == 0o755


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_fstab_has_the_mount(name):
    host, want = lab(name), EXPECTED[name]
    fields = [line.split() for line in host.file('/etc/fstab').content_string.splitlines()]
    assert [want['loop_file'], want['mount_path'], want['fstype'], want['fstab_opts'], '0', '0'] in fields


def test_nfs_entry_is_in_fstab_but_not_mounted():
    host = lab('central')
    assert NFS_FSTAB.split() in [line.split() for line in host.file('/etc/fstab').content_string.splitlines()]
    assert not host.mount_point('/mnt/nfs-images').exists
    assert host.package('nfs-common').is_installed


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_store_addresses_on_their_interfaces(name):
    host, want = lab(name), EXPECTED[name]
    for network in ('data', 'sync'):
        interface, address = want[network]
        assert address in addresses(host, interface)
        unit = host.file('/etc/systemd/network/60-vmimages-multistore-%s.network' % network)
        assert unit.is_file
        assert 'Name=%s\n' % interface in unit.content_string
        assert 'Address=%s\n' % address in unit.content_string
        assert 'LinkLocalAddressing=no\n' in unit.content_string
    service = host.service('systemd-networkd')
    assert service.is_running and service.is_enabled


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_management_interface_left_alone(name):
    host, want = lab(name), EXPECTED[name]
    assert host.run('grep -rlx "Name=%s" /etc/systemd/network' % want['mgmt_interface']).stdout == ''
    states = dict(line.split()[1:5:3] for line in host.check_output('networkctl list --no-legend --no-pager').splitlines())
    assert states[want['mgmt_interface']] == 'unmanaged'
    assert states[want['data'][0]] == 'configured' and states[want['sync'][0]] == 'configured'
    assert any(a.startswith('10.') for a in addresses(host, want['mgmt_interface']))


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_store_identity_written(name):
    host, want = lab(name), EXPECTED[name]
    identity = json.loads(host.file('%s/multistore.json' % want['mount_path']).content_string)
    assert identity['name'] == want['store']
    assert identity['site_role'] == want['site_role']
    assert identity['sync_network'] == want['sync'][1]
    assert identity['data_network'] == want['data'][1]


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_agent_installed(name):
    host = lab(name)
    agent = host.file(AGENT)
    assert agent.is_file and agent.mode == 0o755
    assert 'python3 -m ansible_collections.vmimages.multistore.plugins.module_utils.stores.agent' in agent.content_string
    assert host.file(SYNC_KEY).mode == 0o600


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_sshd_ends_the_sessions_of_vanished_clients(name):
    host = lab(name)
    drop_in = host.file('/etc/ssh/sshd_config.d/vmimages-multistore.conf')
    assert drop_in.is_file and 'ClientAliveInterval 15' in drop_in.content_string
    # what the running sshd uses (sshd -T prints its effective configuration)
    effective = host.check_output('sshd -T | grep -E "^clientalive(interval|countmax) "').splitlines()
    assert sorted(effective) == ['clientalivecountmax 3', 'clientaliveinterval 15']


def test_sync_key_authorized_on_central_for_its_store_root_only():
    central, edge = lab('central'), lab('edge1')
    public = ' '.join(edge.file(SYNC_KEY + '.pub').content_string.split()[:2])
    entries = [line for line in central.file('/root/.ssh/authorized_keys').content_string.splitlines() if public in line]
    assert entries == ['restrict,command="%s --root /cloud_bs" %s vmimages-multistore-sync@edge1' % (AGENT, public)]
    # edge1 is not trusted by anyone (it owns no store central reaches)
    central_public = ' '.join(central.file(SYNC_KEY + '.pub').content_string.split()[:2])
    assert central_public not in edge.file('/root/.ssh/authorized_keys').content_string


def test_known_hosts_names_central_by_its_store_host_name():
    central, edge = lab('central'), lab('edge1')
    host_key = ' '.join(central.file('/etc/ssh/ssh_host_ed25519_key.pub').content_string.split()[:2])
    lines = [line for line in edge.file(KNOWN_HOSTS).content_string.splitlines() if line and not line.startswith('#')]
    assert lines == ['central %s' % host_key]


def test_sync_key_runs_only_the_store_agent():
    edge = lab('edge1')
    command = ('ssh -T -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s -o HostKeyAlias=central '
               '-o IdentitiesOnly=yes -i %s root@10.203.0.11 %s </dev/null' % (KNOWN_HOSTS, SYNC_KEY, shlex.quote('echo pwned')))
    result = edge.run(command)
    assert result.rc == 0, result.stderr
    assert 'pwned' not in result.stdout
    assert '"agent":"vmimages.multistore"' in result.stdout


def test_edge_reaches_the_central_store():
    result = module(lab('edge1'), 'vmimages.multistore.store_info', '', check=True)
    stores = dict((store['name'], store) for store in result['stores'])
    assert stores['central']['status'] == 'connected', stores['central']
    assert stores['central']['host'] == 'central'
    assert stores['edge1']['status'] == 'connected'


def test_image_copy_central_to_edge_uses_the_sync_network():
    central, edge = lab('central'), lab('edge1')
    central.check_output(
        'test -e {0} || {{ qemu-img create -q -f raw {0}.raw 64M && '
        'head -c 6M /dev/urandom | dd of={0}.raw bs=1M seek=8 conv=notrunc status=none && '
        'qemu-img convert -q -f raw -O qcow2 {0}.raw {0} && rm -f {0}.raw; }}'.format(IMAGE))
    digest = central.check_output('sha256sum %s' % IMAGE).split()[0]
    module(central, 'vmimages.multistore.image',
           'name=molecule-disk src=%s checksum=sha256:%s disk_format=qcow2 stores=central' % (IMAGE, digest))

    since = central.check_output('date +%s').strip()
    copied = module(edge, 'vmimages.multistore.image', 'name=molecule-disk stores=edge1')
    assert sorted(copied['image']['stores']) == ['central', 'edge1']

    exported = module(edge, 'vmimages.multistore.image_export', 'name=molecule-disk store=edge1 dest=/var/tmp/exported.qcow2')
    assert exported['export']['dest'] == '/var/tmp/exported.qcow2'
    assert edge.check_output('sha256sum /var/tmp/exported.qcow2').split()[0] == digest

    fingerprint = edge.check_output('ssh-keygen -lf %s.pub' % SYNC_KEY).split()[1]
    log = central.check_output('journalctl -u ssh.service --no-pager -o cat --since @%d' % (int(since) - 1))
    sources = re.findall(r'Accepted publickey for root from (\S+) port \d+ ssh2: ED25519 %s' % re.escape(fingerprint), log)
    assert sources, "no login of edge1's sync key in central's sshd log since the copy started:\n%s" % log
    assert set(sources) <= {'10.203.0.12'}, 'the sync key logged in from %s, not the sync address 10.203.0.12' % sorted(set(sources))
