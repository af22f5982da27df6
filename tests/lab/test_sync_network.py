# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A store's sync network given as a network (10.203.0.0/24): resolved on its host, and copies go over it.

edge1 declares its file store with ``sync_network: 10.203.0.0/24`` through Ansible; central registers it
as a remote store and copies an image there. The bytes are counted on edge1's interfaces: they must
arrive on eth2 (sync), not on eth0 (management) nor eth1 (data).
"""

import json
import os

import pytest

import labrun
from labrun import lab_cmd as lab, module

NAME = 'ci-syncnet'
MGMT_NET = '10.218.0.0/24'
# eth1 = data, eth2 = sync: up without addresses in a fresh lab; the store host's role would configure them.
ADDRESSES = {'central': {'eth1': '10.202.0.11/24', 'eth2': '10.203.0.11/24'},
             'edge1': {'eth1': '10.202.0.12/24', 'eth2': '10.203.0.12/24'}}
IMAGE_MIB = 48


def run_on(state, host, command, data=None):
    return labrun.run_on(NAME, state, host, command, data)


def rx_bytes(state, host):
    """Bytes received per interface."""
    return dict((interface, counts[0]) for interface, counts in labrun.interface_bytes(NAME, state, host).items())


@pytest.fixture(scope='module')
def sync_lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip('the lab needs root')
    state = str(tmp_path_factory.mktemp('lab') / NAME)
    lab('create', '--name', NAME, '--state-dir', state, '--hosts', 'central,edge1', '--mgmt-net', MGMT_NET)
    try:
        for host, addresses in ADDRESSES.items():
            for interface, address in addresses.items():
                run_on(state, host, ['ip', 'addr', 'add', address, 'dev', interface])
        # central reaches edge1 with the lab's key; known_hosts names edge1 (the store's host), as the role writes it
        with open(os.path.join(state, 'ssh', 'id_ed25519'), 'rb') as handle:
            run_on(state, 'central', ['sh', '-c', 'umask 077 && cat > /root/lab_key'], handle.read())
        with open(os.path.join(state, 'ssh', 'known_hosts'), 'rb') as handle:
            run_on(state, 'central', ['sh', '-c', 'cat > /root/lab_known_hosts'], handle.read())
        yield state
    finally:
        lab('destroy', '--name', NAME, '--state-dir', state)


EDGE1 = {'name': 'edge1', 'path': '/srv/edge1', 'site_role': 'edge', 'sync_network': '10.203.0.0/24', 'data_network': '10.202.0.0/24'}


@pytest.mark.lab
def test_a_network_without_an_address_of_the_host_declares_nothing(sync_lab):
    result = module(sync_lab, 'edge1', 'store', {'name': 'nowhere', 'path': '/srv/nowhere', 'sync_network': '10.99.0.0/24'})
    assert result.get('failed'), result
    assert result['msg'].startswith("store 'nowhere': sync_network 10.99.0.0/24: this host has no address in it (its addresses: "), result
    assert '10.203.0.12/24 on eth2' in result['msg'] and 'multistore_networks' in result['msg']
    leftovers = run_on(sync_lab, 'edge1', ['sh', '-c', 'ls -d /srv/nowhere /var/lib/vmimages-multistore/stores/nowhere.json 2>/dev/null; true'])
    assert leftovers == ''


@pytest.mark.lab
def test_the_sync_network_is_resolved_on_the_store_host_and_carries_the_copy(sync_lab):
    check = module(sync_lab, 'edge1', 'store', EDGE1, check=True)
    assert check['changed'] and check['diff']['after']['sync_address'] == '10.203.0.12/24', check
    first = module(sync_lab, 'edge1', 'store', EDGE1)
    assert first['changed'], first
    store = first['store']
    assert (store['sync_network'], store['sync_address'], store['data_network'], store['data_address']) == \
        ('10.203.0.0/24', '10.203.0.12/24', '10.202.0.0/24', '10.202.0.12/24')
    again = module(sync_lab, 'edge1', 'store', EDGE1)
    assert not again['changed'], again

    assert not module(sync_lab, 'central', 'store', {'name': 'central', 'path': '/srv/central', 'site_role': 'central'}).get('failed')
    remote = {'name': 'edge1', 'path': '/srv/edge1', 'host': 'edge1', 'private_key': '/root/lab_key', 'known_hosts': '/root/lab_known_hosts'}
    registered = module(sync_lab, 'central', 'store', remote)
    assert registered['changed'] and registered['diff']['after']['sync_address'] == '10.203.0.12/24', registered
    assert (registered['store']['address'], registered['store']['address_note']) == ('10.203.0.12', None), registered
    assert not module(sync_lab, 'central', 'store', remote)['changed']

    run_on(sync_lab, 'central', ['dd', 'if=/dev/urandom', 'of=/srv/disk.raw', 'bs=1M', 'count=%d' % IMAGE_MIB, 'status=none'])
    imported = module(sync_lab, 'central', 'image', {'name': 'disk', 'src': '/srv/disk.raw', 'disk_format': 'raw', 'stores': ['central']})
    assert imported['changed'] and not imported.get('failed'), imported
    before = rx_bytes(sync_lab, 'edge1')
    copied = module(sync_lab, 'central', 'image', {'name': 'disk', 'stores': ['central', 'edge1']})
    after = rx_bytes(sync_lab, 'edge1')
    assert copied['changed'] and not copied.get('failed'), copied
    received = dict((interface, after[interface] - before[interface]) for interface in after)
    print('\nedge1 received during the copy of %d MiB: %s' % (IMAGE_MIB, json.dumps(received, sort_keys=True)))
    image_bytes = IMAGE_MIB << 20
    assert received['eth2'] >= image_bytes, received
    assert received['eth0'] < image_bytes // 20 and received['eth1'] < image_bytes // 20, received
    listed = run_on(sync_lab, 'edge1', ['sh', '-c', 'ls /srv/edge1/images'])
    assert len(listed.split()) == 1


CUT_MIB = 64
SHAPED = '80mbit'  # a copy of CUT_MIB takes about 7 s: time to cut the link in its middle


def edge1_sync_rx(state):
    return rx_bytes(state, 'edge1')['eth2']


@pytest.mark.lab
def test_a_sync_link_cut_mid_copy_fails_alone_and_the_rerun_sends_only_the_rest(sync_lab):
    """`ip link set down` on edge1's sync interface while central copies an image there: the task fails with a message
    that names the store and the lost connection, nothing of the image is visible at edge1, and once the link is back
    the re-run completes, sending only what had not arrived; the copy exports byte-identical at edge1."""
    assert not module(sync_lab, 'edge1', 'store', EDGE1).get('failed')
    assert not module(sync_lab, 'central', 'store', {'name': 'central', 'path': '/srv/central', 'site_role': 'central'}).get('failed')
    remote = {'name': 'edge1', 'path': '/srv/edge1', 'host': 'edge1', 'private_key': '/root/lab_key', 'known_hosts': '/root/lab_known_hosts'}
    assert not module(sync_lab, 'central', 'store', remote).get('failed')
    # A cut connection leaves edge1's sshd, and the store agent under it holding the image lock, waiting for a client
    # that is gone: sshd's keepalive ends such sessions (the store host's setting; without it the re-run waits for
    # the lock and fails with "another run is working on it" until TCP gives up).
    run_on(sync_lab, 'edge1', ['sh', '-c', 'printf "ClientAliveInterval 5\\nClientAliveCountMax 3\\n" > /etc/ssh/sshd_config.d/keepalive.conf'
                                           ' && systemctl reload ssh'])
    run_on(sync_lab, 'central', ['dd', 'if=/dev/urandom', 'of=/srv/cut.raw', 'bs=1M', 'count=%d' % CUT_MIB, 'status=none'])
    digest = run_on(sync_lab, 'central', ['sha256sum', '/srv/cut.raw']).split()[0]
    imported = module(sync_lab, 'central', 'image', {'name': 'cut', 'src': '/srv/cut.raw', 'disk_format': 'raw', 'stores': ['central']})
    assert imported['changed'] and not imported.get('failed'), imported
    image_bytes = CUT_MIB << 20
    run_on(sync_lab, 'central', ['tc', 'qdisc', 'replace', 'dev', 'eth2', 'root', 'tbf', 'rate', SHAPED, 'burst', '64kb', 'latency', '400ms'])
    try:
        result, sent_before_cut = labrun.cut_mid_run(NAME, sync_lab, 'central', {'module': 'image', 'name': 'cut', 'stores': ['central', 'edge1']},
                                                     'edge1', image_bytes // 3)
        print('\ncut copy: %d of %d bytes arrived; %s' % (sent_before_cut, image_bytes, result.get('msg')))
        assert result.get('failed'), result
        assert "'edge1'" in result['msg'] and 'Traceback' not in result['msg'], result['msg']
        # nothing of the image is visible at edge1
        seen = module(sync_lab, 'edge1', 'image_info', {'name': 'cut'})['images']
        print('image_info at edge1 after the cut: %s' % [(image['status'], image.get('stores'), image.get('importing_to_stores'),
                                                          image.get('failed_import')) for image in seen])
        assert [image['status'] for image in seen] in ([], ['importing'], ['killed']), seen
        assert not any(image.get('stores') for image in seen), seen
        # the link is back: the re-run sends what had not arrived, no more
        before = edge1_sync_rx(sync_lab)
        again = module(sync_lab, 'central', 'image', {'name': 'cut', 'stores': ['central', 'edge1']})
        resent = edge1_sync_rx(sync_lab) - before
        print('re-run: %d bytes on edge1\'s sync link (%d had arrived before the cut); %s %s' % (
            resent, sent_before_cut, again.get('actions'), again.get('msg')))
        assert again['changed'] and not again.get('failed'), again
        assert resent < image_bytes - image_bytes // 4, (resent, sent_before_cut)
    finally:
        run_on(sync_lab, 'central', ['tc', 'qdisc', 'del', 'dev', 'eth2', 'root'])
    exported = module(sync_lab, 'edge1', 'image_export', {'name': 'cut', 'store': 'edge1', 'dest': '/srv/cut.out'})
    assert not exported.get('failed'), exported
    assert run_on(sync_lab, 'edge1', ['sha256sum', '/srv/cut.out']).split()[0] == digest
    assert not module(sync_lab, 'central', 'image', {'name': 'cut', 'stores': ['central', 'edge1']})['changed']
