# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A file store on a lab host reached with a password (paramiko), host key checked, copies both ways."""

import hashlib
import os
import subprocess
import sys

import pytest

from labrun import ROOT, lab_cmd as lab

NAME = 'ci-pw'
ADDRESS = '10.214.0.11'
PASSWORD = 'lab-only-Pa55word'


@pytest.fixture
def password_host(tmp_path):
    if os.geteuid() != 0:
        pytest.skip('the lab needs root')
    state = str(tmp_path / NAME)
    lab('create', '--name', NAME, '--state-dir', state, '--hosts', 'store1', '--mgmt-net', '10.214.0.0/24')
    try:
        lab('exec', '--name', NAME, '--state-dir', state, '--host', 'store1', '--', 'sh', '-c',
            'echo root:%s | chpasswd && printf "PasswordAuthentication yes\\nPermitRootLogin yes\\n" '
            '> /etc/ssh/sshd_config.d/password.conf && systemctl reload ssh' % PASSWORD)
        # the store is declared on its own host, with the collection's own module, through Ansible
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'))
        subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible'), '-i', os.path.join(state, 'inventory.yml'), 'store1',
                        '-m', 'vmimages.multistore.store', '-a', 'name=store1 path=/srv/store1'],
                       check=True, env=env, cwd=ROOT, stdout=subprocess.PIPE, universal_newlines=True, timeout=600)
        yield state
    finally:
        lab('destroy', '--name', NAME, '--state-dir', state)


@pytest.mark.lab
def test_store_reached_with_a_password(password_host, tmp_path):
    sys.path.insert(0, os.path.join(ROOT, '.venv'))
    # pylint: disable=import-outside-toplevel
    from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError
    from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
    from ansible_collections.vmimages.multistore.plugins.module_utils.images.request import ImageRequest
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration, describe
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.registry import Registry

    known_hosts = os.path.join(password_host, 'ssh', 'known_hosts')
    registry = Registry(str(tmp_path / 'registry'))
    remote = {'name': 'store1', 'path': '/srv/store1', 'host': ADDRESS, 'user': 'root', 'known_hosts': known_hosts}
    with pytest.raises(StoreError, match='unreachable|Authentication'):
        StoreDeclaration(registry, dict(remote, password='wrong')).present(check_mode=False)
    assert StoreDeclaration(registry, dict(remote, password=PASSWORD)).present(check_mode=False) is True
    assert describe(registry.open('store1'))['status'] == 'connected'
    assert registry.declaration('store1')['password'] == PASSWORD and oct(os.stat(registry._path('store1')).st_mode & 0o777) == '0o600'

    StoreDeclaration(registry, {'name': 'here', 'path': str(tmp_path / 'here')}).present(check_mode=False)
    src = str(tmp_path / 'disk.raw')
    with open(src, 'wb') as handle:
        for index in range(6):
            handle.write(hashlib.sha512(b'%d' % index).digest() * (4 * 1024 * 1024 // 64))
    ImageRequest(Catalog(registry), {'name': 'disk', 'src': src, 'stores': ['store1']}).present(check_mode=False)
    pull = ImageRequest(Catalog(registry), {'name': 'disk', 'stores': ['here']})
    assert pull.present(check_mode=False) is True and pull.actions == ['copy to here from store1']
    info = pull.result()
    with open(src, 'rb') as handle:
        assert info['os_hash_value'] == hashlib.sha512(handle.read()).hexdigest()
    assert info['stores'] == ['here', 'store1']

    # a host key that is not the one in known_hosts is refused even with the right password
    other = str(tmp_path / 'other_known_hosts')
    with open(other, 'w') as handle:
        handle.write('%s ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMUb8fJc6p2Ay5bJ5FqQhW7oMhHjJ1Y0mW0nqXjJb6Xo\n' % ADDRESS)
    with pytest.raises(StoreError, match='Host key verification failed'):
        StoreDeclaration(Registry(str(tmp_path / 'registry2')), dict(remote, password=PASSWORD, known_hosts=other)).present(False)
