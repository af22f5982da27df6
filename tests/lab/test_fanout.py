# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Store hosts syncing directly, and an image fanned out to 4 edges down a chain (images/fanout.py).

A 5-host lab (central, edge1..edge4), every host addressed on the sync network (eth2) with a file store;
each host registers the stores of the others (the lab's key as the store-to-store key), as the store_host
role does with multistore_remote_stores. Bytes are counted on the hosts' interfaces:
- a copy central -> edge1 run on edge4 (a third host) goes host to host: nothing through edge4;
- a copy from central to edge1..edge4 sends the image about once over central's sync link, each edge
  fetching from the one before it; every edge exports it byte-identical;
- so does an import on central into central and edge1..edge4 (written into central, fetched down the chain);
- edge2's sync link cut mid-fan-out: edge2 fails alone, the others complete, the re-run sends edge2 only
  what it lacks.
"""

import json
import os
import subprocess

import pytest

import labrun
from labrun import ROOT, lab_cmd as lab, module

NAME = 'ci-fanout'
MGMT_NET = '10.219.0.0/24'
EDGES = ['edge1', 'edge2', 'edge3', 'edge4']
HOSTS = tuple(['central'] + EDGES)
SYNC = dict((host, '10.203.0.%d/24' % (11 + index)) for index, host in enumerate(HOSTS))
MIB = 1 << 20


def run_on(state, host, command, data=None):
    return labrun.run_on(NAME, state, host, command, data)


def sync_bytes(state, hosts=HOSTS):
    """{host: (rx, tx)} of the hosts' sync interfaces."""
    return dict((host, labrun.interface_bytes(NAME, state, host, ('eth2',))['eth2']) for host in hosts)


def all_bytes(state, host):
    """rx + tx over every interface of ``host``."""
    return sum(rx + tx for rx, tx in labrun.interface_bytes(NAME, state, host).values())


def store(host):
    return {'name': host, 'path': '/srv/%s' % host, 'site_role': 'central' if host == 'central' else 'edge',
            'sync_network': '10.203.0.0/24'}


def registration(host):
    return {'name': host, 'path': '/srv/%s' % host, 'host': host, 'private_key': '/root/lab_key', 'known_hosts': '/root/lab_known_hosts'}


def playbook(state, plays, name):
    path = os.path.join(state, '%s.json' % name)
    with open(path, 'w') as handle:
        json.dump(plays, handle)
    proc = subprocess.run([os.path.join(os.path.dirname(labrun.ANSIBLE_BIN), 'ansible-playbook'), '-i', os.path.join(state, 'inventory.yml'),
                           path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=labrun.ansible_env(),
                          cwd=ROOT, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def random_image(state, name, mib):
    path = '/srv/%s.raw' % name
    run_on(state, 'central', ['dd', 'if=/dev/urandom', 'of=%s' % path, 'bs=1M', 'count=%d' % mib, 'status=none'])
    imported = module(state, 'central', 'image', {'name': name, 'src': path, 'disk_format': 'raw', 'stores': ['central']})
    assert imported['changed'] and not imported.get('failed'), imported
    return run_on(state, 'central', ['sha256sum', path]).split()[0]


def exported_digest(state, host, name):
    dest = '/srv/%s.out' % name
    exported = module(state, host, 'image_export', {'name': name, 'store': host, 'dest': dest})
    assert not exported.get('failed'), exported
    return run_on(state, host, ['sha256sum', dest]).split()[0]


@pytest.fixture(scope='module')
def fan_lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip('the lab needs root')
    state = str(tmp_path_factory.mktemp('lab') / NAME)
    lab('create', '--name', NAME, '--state-dir', state, '--hosts', ','.join(HOSTS), '--mgmt-net', MGMT_NET)
    try:
        with open(os.path.join(state, 'ssh', 'id_ed25519'), 'rb') as handle:
            key = handle.read()
        with open(os.path.join(state, 'ssh', 'known_hosts'), 'rb') as handle:
            known = handle.read()
        for host in HOSTS:
            run_on(state, host, ['ip', 'addr', 'add', SYNC[host], 'dev', 'eth2'])
            run_on(state, host, ['sh', '-c', 'umask 077 && cat > /root/lab_key'], key)
            run_on(state, host, ['sh', '-c', 'cat > /root/lab_known_hosts'], known)
            # sshd ends the sessions of a client whose link was cut (the store_host role sets this on store hosts)
            run_on(state, host, ['sh', '-c', 'printf "ClientAliveInterval 5\\nClientAliveCountMax 3\\n" > '
                                             '/etc/ssh/sshd_config.d/keepalive.conf && systemctl reload ssh'])
        # each host declares its store, then registers every other host's store (as multistore_remote_stores does)
        plays = [{'name': 'store of %s' % host, 'hosts': host, 'gather_facts': False,
                  'tasks': [{'vmimages.multistore.store': store(host)}]} for host in HOSTS]
        plays += [{'name': 'registrations on %s' % host, 'hosts': host, 'gather_facts': False,
                   'tasks': [{'vmimages.multistore.store': registration(other)} for other in HOSTS if other != host]} for host in HOSTS]
        playbook(state, plays, 'setup')
        yield state
    finally:
        lab('destroy', '--name', NAME, '--state-dir', state)


@pytest.mark.lab
def test_a_copy_between_two_other_hosts_does_not_pass_through_the_host_running_the_task(fan_lab):
    image_bytes = 48 * MIB
    digest = random_image(fan_lab, 'direct', 48)
    before, through_edge4 = sync_bytes(fan_lab), all_bytes(fan_lab, 'edge4')
    copied = module(fan_lab, 'edge4', 'image', {'name': 'direct', 'stores': ['central', 'edge1']})
    after, through_edge4 = sync_bytes(fan_lab), all_bytes(fan_lab, 'edge4') - through_edge4
    print('\ndirect copy: %s; bytes through edge4: %d' % (copied.get('actions'), through_edge4))
    assert copied['changed'] and not copied.get('failed'), copied
    assert copied['actions'] == ['copy to edge1 from central (store to store: edge1 from central)'], copied
    assert after['edge1'][0] - before['edge1'][0] >= image_bytes and after['central'][1] - before['central'][1] >= image_bytes
    assert through_edge4 < image_bytes // 20
    assert exported_digest(fan_lab, 'edge1', 'direct') == digest


@pytest.mark.lab
def test_a_fan_out_to_four_edges_sends_the_image_about_once_over_the_central_link(fan_lab):
    image_bytes = 64 * MIB
    digest = random_image(fan_lab, 'fan', 64)
    before = sync_bytes(fan_lab)
    fanned = module(fan_lab, 'central', 'image', {'name': 'fan', 'stores': list(HOSTS)})
    after = sync_bytes(fan_lab)
    sent = dict((host, after[host][1] - before[host][1]) for host in HOSTS)
    received = dict((host, after[host][0] - before[host][0]) for host in HOSTS)
    print('\nfan-out: %s\nsent on eth2: %s\nreceived on eth2: %s' % (fanned.get('actions'), sent, received))
    assert fanned['changed'] and not fanned.get('failed'), fanned
    assert fanned['actions'] == ['copy to %s from central (store to store: edge1 from central, edge2 from edge1, '
                                 'edge3 from edge2, edge4 from edge3)' % ', '.join(EDGES)], fanned
    assert image_bytes <= sent['central'] < 1.5 * image_bytes, sent
    assert all(received[edge] >= image_bytes for edge in EDGES), received
    for edge in EDGES:
        assert exported_digest(fan_lab, edge, 'fan') == digest
    assert not module(fan_lab, 'central', 'image', {'name': 'fan', 'stores': list(HOSTS)})['changed']


@pytest.mark.lab
def test_an_import_into_central_and_four_edges_sends_the_image_about_once_over_the_central_link(fan_lab):
    image_bytes = 64 * MIB
    path = '/srv/fan-import.raw'
    run_on(fan_lab, 'central', ['dd', 'if=/dev/urandom', 'of=%s' % path, 'bs=1M', 'count=64', 'status=none'])
    digest = run_on(fan_lab, 'central', ['sha256sum', path]).split()[0]
    params = {'name': 'fan-import', 'src': path, 'disk_format': 'raw', 'stores': list(HOSTS)}
    before = sync_bytes(fan_lab)
    imported = module(fan_lab, 'central', 'image', params)
    after = sync_bytes(fan_lab)
    sent = dict((host, after[host][1] - before[host][1]) for host in HOSTS)
    print('\nimport fan-out: %s\nsent on eth2: %s' % (imported.get('actions'), sent))
    assert imported['changed'] and not imported.get('failed'), imported
    assert imported['actions'] == ['import %s into %s (store to store: edge1 from central, edge2 from edge1, edge3 from edge2, '
                                   'edge4 from edge3)' % (path, ', '.join(HOSTS))], imported
    assert image_bytes <= sent['central'] < 1.5 * image_bytes, sent
    for edge in EDGES:
        assert exported_digest(fan_lab, edge, 'fan-import') == digest
    assert not module(fan_lab, 'central', 'image', params)['changed']


@pytest.mark.lab
def test_an_edge_cut_off_mid_fan_out_fails_alone_and_the_rerun_sends_it_only_what_it_lacks(fan_lab):
    image_mib = 96
    image_bytes = image_mib * MIB
    digest = random_image(fan_lab, 'cut', image_mib)
    for host in HOSTS:  # about 10 s per hop: time to cut edge2 off in the middle
        run_on(fan_lab, host, ['tc', 'qdisc', 'replace', 'dev', 'eth2', 'root', 'tbf', 'rate', '80mbit', 'burst', '64kb', 'latency', '400ms'])
    try:
        result, arrived = labrun.cut_mid_run(NAME, fan_lab, 'central', {'module': 'image', 'name': 'cut', 'stores': list(HOSTS), 'allow_failure': True},
                                             'edge2', image_bytes // 3)
        print('\ncut fan-out: %s\nfailed: %s\nedge2 had received %d of %d bytes' % (
            result.get('actions'), result.get('failed_import'), arrived, image_bytes))
        assert result['changed'] and not result.get('failed'), result.get('msg')
        assert [failure['store'] for failure in result['failed_import']] == ['edge2'], result
        assert sorted(result['image']['stores']) == sorted(['central', 'edge1', 'edge3', 'edge4']), result
        seen = module(fan_lab, 'edge2', 'image_info', {'name': 'cut', 'store': 'edge2'})['images']
        assert not any('edge2' in (image.get('stores') or []) for image in seen), seen
        # the link is back: the re-run sends edge2 what it lacks
        before = sync_bytes(fan_lab, ['edge2'])['edge2'][0]
        again = module(fan_lab, 'central', 'image', {'name': 'cut', 'stores': list(HOSTS)})
        resent = sync_bytes(fan_lab, ['edge2'])['edge2'][0] - before
        print('re-run: %s; %d bytes on edge2\'s sync link' % (again.get('actions'), resent))
        assert again['changed'] and not again.get('failed'), again
        assert resent < image_bytes - image_bytes // 4, (resent, arrived)
    finally:
        for host in HOSTS:
            run_on(fan_lab, host, ['tc', 'qdisc', 'del', 'dev', 'eth2', 'root'])
    for edge in EDGES:
        assert exported_digest(fan_lab, edge, 'cut') == digest
    assert not module(fan_lab, 'central', 'image', {'name': 'cut', 'stores': list(HOSTS)})['changed']
