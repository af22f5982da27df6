# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store_host role against the real Ceph of tests/ceph (fixture ceph_cluster): ceph.conf and keyring
written, an rbd, an s3 and a swift store registered and connected, no key or secret in the output (-v --diff),
idempotent, check mode writes nothing.

The lab containers cannot reach a Ceph on this machine's 127.0.0.1, so the role runs on the controller itself
(ansible_connection: local) with every path it writes in pytest's tmp_path: the Ceph directory, the store
registry, the store agent, the sync key and known_hosts. Nothing that needs a separate host is configured
(no filesystems, networks or remote stores) and no package is installed (multistore_install_packages: false).
Runs as root (the role sets root ownership).

    CEPH_LAB_DIR=<cephlab dir> .venv/bin/python -m pytest tests/ceph/test_store_host_ceph.py -q -p no:cacheprovider
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import stat
import subprocess

import pytest

# ceph_cluster comes from tests/ceph/conftest.py (tests.ceph.pytest_ceph)

pytestmark = pytest.mark.ceph

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.join(ROOT, '.venv')
ANSIBLE_PLAYBOOK = os.path.join(VENV, 'bin', 'ansible-playbook')
# the venv was made with --system-site-packages: Debian's python3-rbd/python3-rados import in it
PYTHON = os.path.join(VENV, 'bin', 'python')

ROLE_PLAY = """\
- name: Prepare the controller as a store host
  hosts: localhost
  gather_facts: false
  roles:
    - role: vmimages.multistore.store_host
"""

INFO_PLAY = """\
- name: Report the stores of the controller
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Read the stores
      vmimages.multistore.store_info:
        registry: "{{ multistore_registry }}"
      register: info

    - name: Keep the report
      ansible.builtin.copy:
        content: "{{ info.stores | to_nice_json }}"
        dest: "{{ report }}"
        mode: "0600"
"""

S3_BUCKET = 'vmimages-store-host-role'
SWIFT_CONTAINER = 'vmimages-store-host-role-swift'
RECAP = re.compile(r'^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)


def keyring_key(path):
    with open(path) as handle:
        match = re.search(r'^\s*key\s*=\s*(\S+)\s*$', handle.read(), re.M)
    assert match, 'no key in %s' % path
    return match.group(1)


def ansible_playbook(work, playbook, variables, *options):
    """Run a playbook on localhost with `variables` (written to a file, not on the command line);
    returns (stdout + stderr, changed count of the recap)."""
    play_path = os.path.join(work, 'info.yml' if playbook is INFO_PLAY else 'role.yml')
    with open(play_path, 'w') as handle:
        handle.write(playbook)
    vars_path = os.path.join(work, 'vars.json')
    with open(vars_path, 'w') as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump(variables, handle)
    env = dict(os.environ,
               ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'),
               ANSIBLE_COLLECTIONS_PATH=VENV,
               ANSIBLE_NOCOLOR='1',
               ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_RETRY_FILES_ENABLED='0',
               ANSIBLE_LOCALHOST_WARNING='0',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    env.pop('ANSIBLE_STDOUT_CALLBACK', None)
    cmd = [ANSIBLE_PLAYBOOK, '-i', 'localhost,', '-e', '@' + vars_path] + list(options) + [play_path]
    res = subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    recap = RECAP.findall(res.stdout)
    assert res.returncode == 0 and recap, '%s failed (exit %d):\n%s' % (' '.join(cmd), res.returncode, res.stdout[-20000:])
    _ok, changed, unreachable, failed = (int(n) for n in recap[-1])
    assert unreachable == 0 and failed == 0, res.stdout[-20000:]
    return res.stdout, changed


def role_variables(work, cluster, stores):
    ceph_dir = os.path.join(work, 'ceph')
    return {
        'ansible_connection': 'local',
        'ansible_python_interpreter': PYTHON,
        'multistore_install_packages': False,
        'multistore_apt_update_cache': False,
        'multistore_filesystems': [],
        'multistore_networks': {},
        'multistore_remote_stores': [],
        'multistore_registry': os.path.join(work, 'registry'),
        'multistore_ceph_conf_dir': ceph_dir,
        'multistore_agent_library': os.path.join(work, 'agent', 'lib'),
        'multistore_agent_command': os.path.join(work, 'agent', 'vmimages-multistore-agent'),
        'multistore_sync_key': os.path.join(work, 'ssh', 'vmimages_multistore_sync'),
        'multistore_known_hosts': os.path.join(work, 'known_hosts', 'known_hosts'),
        'multistore_ceph_clusters': [{
            'name': 'ceph',
            'fsid': cluster['fsid'],
            'mon_host': cluster['mon_host'],
            'options': {'rados osd op timeout': 30, 'ms bind ipv6': False},
            # the least-privilege user of the lab (mon 'profile rbd', osd 'profile rbd pool=images')
            'keyrings': [{'user': 'client.' + cluster['rbd_user'], 'key': keyring_key(cluster['rbd_keyring'])}],
        }],
        'multistore_stores': stores,
    }


def stores(work, cluster):
    ceph_dir = os.path.join(work, 'ceph')
    return [
        {'name': 'role-rbd', 'type': 'rbd', 'pool': cluster['rbd_pool'], 'user': cluster['rbd_user'],
         'ceph_conf': os.path.join(ceph_dir, 'ceph.conf'),
         'keyring': os.path.join(ceph_dir, 'ceph.client.%s.keyring' % cluster['rbd_user']),
         'zone': 'zone-ceph', 'site_role': 'central'},
        {'name': 'role-s3', 'type': 's3', 'endpoint': cluster['rgw_endpoint'], 'bucket': S3_BUCKET, 'prefix': 'role/',
         'access_key': cluster['s3_access_key'], 'secret_key': cluster['s3_secret_key'], 'region': cluster['s3_region'],
         'validate_certs': False, 'zone': 'zone-s3'},
        {'name': 'role-swift', 'type': 'swift', 'endpoint': cluster['swift_auth_url'], 'container': SWIFT_CONTAINER,
         'access_key': cluster['swift_user'], 'secret_key': cluster['swift_key'], 'site_role': 'edge'},
    ]


def store_report(work, variables):
    report = os.path.join(work, 'store_info.json')
    ansible_playbook(work, INFO_PLAY, dict(variables, report=report))
    with open(report) as handle:
        return dict((store['name'], store) for store in json.load(handle))


@pytest.fixture
def work(tmp_path):
    if os.geteuid() != 0:
        pytest.fail('the store_host role runs as root (it sets root ownership): run this test as root', pytrace=False)
    return str(tmp_path)


def test_role_writes_ceph_client_files_and_registers_rbd_s3_swift_stores(work, ceph_cluster):
    cluster = ceph_cluster
    key = keyring_key(cluster['rbd_keyring'])
    secrets = {'keyring key': key, 'S3 secret key': cluster['s3_secret_key'], 'Swift key': cluster['swift_key']}
    variables = role_variables(work, cluster, stores(work, cluster))
    ceph_dir = variables['multistore_ceph_conf_dir']
    conf = os.path.join(ceph_dir, 'ceph.conf')
    keyring = os.path.join(ceph_dir, 'ceph.client.%s.keyring' % cluster['rbd_user'])

    def no_secret_in(output, run):
        shown = sorted(what for what, secret in secrets.items() if secret in output)
        assert not shown, 'the %s show(s) in the output of ansible-playbook %s' % (', '.join(shown), run)

    # check mode on a fresh host: nothing written (the rbd store, whose files do not exist yet, is skipped)
    output, _changed = ansible_playbook(work, ROLE_PLAY, variables, '--check', '--diff', '-v')
    no_secret_in(output, '--check --diff -v (fresh)')
    assert not os.path.exists(ceph_dir) and not os.path.exists(variables['multistore_registry'])

    output, changed = ansible_playbook(work, ROLE_PLAY, variables, '--diff', '-v')
    assert changed > 0
    no_secret_in(output, '--diff -v (first run)')

    with open(conf) as handle:
        text = handle.read()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith('#')]
    assert lines[0] == '[global]'
    assert 'fsid = %s' % cluster['fsid'] in lines
    assert 'mon host = %s' % cluster['mon_host'] in lines
    assert 'keyring = %s/ceph.$name.keyring' % ceph_dir in lines
    assert 'rados osd op timeout = 30' in lines and 'ms bind ipv6 = false' in lines
    assert key not in text
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o644

    info = os.stat(keyring)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == (0, 0)
    with open(keyring) as handle:
        assert handle.read() == '[client.%s]\n\tkey = %s\n' % (cluster['rbd_user'], key)

    # the ceph.conf finds its keyring by itself (its keyring setting): the rbd CLI needs no --keyring
    listed = subprocess.run(['rbd', '--conf', conf, '--id', cluster['rbd_user'], '--client-mount-timeout', '15',
                             'ls', cluster['rbd_pool']], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr

    output, changed = ansible_playbook(work, ROLE_PLAY, variables, '--diff', '-v')
    no_secret_in(output, '--diff -v (second run)')
    assert changed == 0, 'second run not idempotent:\n%s' % output[-20000:]

    report = store_report(work, variables)
    assert sorted(report) == ['role-rbd', 'role-s3', 'role-swift']
    for store in report.values():
        assert store['status'] == 'connected', store
    rbd, s3, swift = report['role-rbd'], report['role-s3'], report['role-swift']
    assert (rbd['type'], rbd['pool'], rbd['user'], rbd['zone'], rbd['site_role']) == (
        'rbd', cluster['rbd_pool'], cluster['rbd_user'], 'zone-ceph', 'central')
    assert rbd['ceph_conf'] == conf
    assert (s3['type'], s3['zone'], s3['bucket'], s3['prefix']) == ('s3', 'zone-s3', S3_BUCKET, 'role/')
    assert (swift['type'], swift['site_role'], swift['container']) == ('swift', 'edge', SWIFT_CONTAINER)
    no_secret_in(json.dumps(report), 'store_info')

    # what the store module was given: every option passed through (the secrets too, kept in the 0600 registry)
    declared = {}
    for name in report:
        path = os.path.join(variables['multistore_registry'], name + '.json')
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path) as handle:
            declared[name] = json.load(handle)
    assert dict((k, declared['role-rbd'].get(k)) for k in ('pool', 'user', 'ceph_conf', 'keyring')) == {
        'pool': cluster['rbd_pool'], 'user': cluster['rbd_user'], 'ceph_conf': conf, 'keyring': keyring}
    assert dict((k, declared['role-s3'].get(k)) for k in ('endpoint', 'access_key', 'secret_key', 'region', 'validate_certs')) == {
        'endpoint': cluster['rgw_endpoint'], 'access_key': cluster['s3_access_key'], 'secret_key': cluster['s3_secret_key'],
        'region': cluster['s3_region'], 'validate_certs': False}
    assert dict((k, declared['role-swift'].get(k)) for k in ('endpoint', 'access_key', 'secret_key')) == {
        'endpoint': cluster['swift_auth_url'], 'access_key': cluster['swift_user'], 'secret_key': cluster['swift_key']}
