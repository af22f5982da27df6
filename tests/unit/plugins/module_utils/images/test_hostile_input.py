# -*- coding: utf-8 -*-
"""Hostile input, tried as an attacker would (issue 10, item 5): every case is refused with a message that says what is
wrong, and no store changes (records, slice lists, slices, staging, locks, the registry: every file is compared).

The corpus is one table per category; image-format cases (qcow2 headers, LUKS, ISO, GPT/MBR) are the format inspector's
and live with its tests.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import http.server
import os
import ssl
import subprocess
import sys
import threading

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import MultistoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export
from ansible_collections.vmimages.multistore.plugins.module_utils.images.request import ImageRequest
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer import sources

from image_files import slice_bytes

DATA = slice_bytes(3) + slice_bytes(4, 777)
SHA256 = hashlib.sha256(DATA).hexdigest()
SLICE_HALF = len(DATA) // 2


class World:
    """Two file stores, a with one image ('base'), and q with a quota of 1 byte; a source file, an export directory and an HTTP server."""

    def __init__(self, tmp_path, registry, http_server):
        self.tmp = tmp_path
        self.registry = registry
        self.http = http_server
        self.stores = tmp_path / 'stores'
        for name in ('a', 'b'):
            self.declare(name)
        self.declare('q', quota={'bytes': 1})
        self.src = str(tmp_path / 'disk.raw')
        with open(self.src, 'wb') as handle:
            handle.write(DATA)
        self.request(name='base', src=self.src, stores=['a']).present(False)
        self.out = tmp_path / 'out'
        self.out.mkdir()
        http_server.files['/disk.raw'] = DATA
        http_server.files['/auth/disk.raw'] = DATA

    def declare(self, name, **params):
        params.setdefault('path', str(self.stores / name))
        params['name'] = name
        StoreDeclaration(self.registry, params).present(check_mode=False)

    def request(self, **params):
        params.setdefault('container_format', 'bare')
        return ImageRequest(Catalog(self.registry), params)

    def image(self, **params):
        """Import (or update) an image into store a, for real."""
        params.setdefault('name', 'new')
        params.setdefault('stores', ['a'])
        return self.request(**params).present(False)

    def export(self, dest, **kwargs):
        catalog = Catalog(self.registry)
        export = Export(catalog, catalog.find(name='base'), 'a', dest, **kwargs)
        if export.needs_export():
            export.run()
        return export

    def link(self, name, target):
        path = str(self.tmp / name)
        os.symlink(target, path)
        return path

    def snapshot(self):
        """Every file of the stores and the registry, with its content's digest; but the empty lock files a store makes
        the first time a lock is taken (locks/*.lock): they hold nothing and stay."""
        state = {}
        for top in (str(self.stores), self.registry.directory):
            for root, dirs, files in os.walk(top):
                for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                    path = os.path.join(root, name)
                    if os.path.basename(root) == 'locks' and name.endswith('.lock') and not os.path.getsize(path):
                        continue
                    with open(path, 'rb') as handle:
                        state[path] = hashlib.sha256(handle.read()).hexdigest()
                for name in dirs:
                    state.setdefault(os.path.join(root, name) + '/', 'dir')
        return state


@pytest.fixture
def world(tmp_path, registry, http_server, monkeypatch):
    monkeypatch.setattr(sources, 'RESUME_DELAY', 0.01)
    return World(tmp_path, registry, http_server)


def refused(world, action, phrase):
    before = world.snapshot()
    with pytest.raises(MultistoreError) as raised:
        action(world)
    assert phrase in str(raised.value), str(raised.value)
    assert world.snapshot() == before, 'a refused request changed the stores'
    return str(raised.value)


# ---- names and fields: (case id, action, phrase the message must hold)
FIELDS = [
    ('name-nul', lambda w: w.image(name='evil\x00name', src=w.src), 'contains a control character'),
    ('name-newline', lambda w: w.image(name='evil\nname', src=w.src), 'contains a control character'),
    ('name-huge', lambda w: w.image(name='n' * 256, src=w.src), 'use 1-255 characters'),
    ('name-blank', lambda w: w.image(name='   ', src=w.src), 'use 1-255 characters'),
    ('id-path', lambda w: w.image(id='../../etc/passwd', src=w.src), 'is not a UUID'),
    ('property-id', lambda w: w.image(src=w.src, properties={'id': 'x'}), "property name 'id' is reserved by Glance"),
    ('property-status', lambda w: w.image(name='base', properties={'status': 'active'}), "property name 'status' is reserved"),
    ('property-locations', lambda w: w.image(name='base', properties={'locations': '[]'}), "'locations' is reserved"),
    ('property-checksum', lambda w: w.image(name='base', properties={'checksum': '0' * 32}), "'checksum' is reserved"),
    ('property-os-hash-value', lambda w: w.image(name='base', properties={'os_hash_value': 'x'}), "'os_hash_value' is reserved"),
    ('property-os-glance', lambda w: w.image(name='base', properties={'os_glance_import_method': 'x'}), "(its own fields and os_glance_*)"),
    ('property-value-nul', lambda w: w.image(name='base', properties={'note': 'a\x00b'}), "property 'note' contains a control character"),
    ('property-value-escape', lambda w: w.image(name='base', properties={'note': '\x1b[2J'}), 'contains a control character'),
    ('property-value-huge', lambda w: w.image(name='base', properties={'note': 'x' * 65536}),
     "property 'note' is 65536 characters long: Glance keeps at most 65535"),
    ('property-name-huge', lambda w: w.image(name='base', properties={'k' * 256: 'v'}), 'use 1-255 characters'),
    ('property-name-newline', lambda w: w.image(name='base', properties={'a\nb': 'v'}), 'without control characters'),
    ('property-count', lambda w: w.image(name='base', properties=dict(('p%d' % i, 'v') for i in range(129))),
     'properties: 129 given, Glance allows at most 128'),
    ('property-nested', lambda w: w.image(name='base', properties={'p': {'q': 1}}), "property 'p' is a dict: Glance properties are strings"),
    ('tag-count', lambda w: w.image(name='base', tags=['t%d' % i for i in range(129)]), 'tags: 129 tags given, Glance allows at most 128'),
    ('tag-huge', lambda w: w.image(name='base', tags=['t' * 256]), 'a tag is 1-255 characters'),
    ('tag-newline', lambda w: w.image(name='base', tags=['a\nb']), 'contains a control character'),
    ('tag-empty', lambda w: w.image(name='base', tags=['']), 'a tag is 1-255 characters'),
    ('min-disk-negative', lambda w: w.image(name='base', min_disk=-1), 'min_disk -1 is out of range: use 0-2147483647'),
    ('min-ram-negative', lambda w: w.image(name='base', min_ram=-512), 'min_ram -512 is out of range'),
    ('min-disk-overflow', lambda w: w.image(name='base', min_disk=2 ** 31), 'min_disk 2147483648 is out of range'),
    ('size-cap-negative', lambda w: w.image(src=w.src, size_cap='-1G'), 'size_cap '),
    ('size-cap-zero', lambda w: w.image(src=w.src, size_cap=0), 'size_cap 0 would refuse every image'),
    ('size-cap-garbage', lambda w: w.image(src=w.src, size_cap='lots'), "size_cap 'lots' is not a size"),
]

# ---- checksums
CHECKSUMS = [
    ('checksum-algorithm', lambda w: w.image(src=w.src, checksum='crc32:deadbeef'), "checksum algorithm 'crc32' is not supported"),
    ('checksum-length', lambda w: w.image(src=w.src, checksum='sha256:abc'), 'a sha256 digest is 64 hex digits'),
    ('checksum-not-hex', lambda w: w.image(src=w.src, checksum='sha256:' + 'g' * 64), 'a sha256 digest is 64 hex digits'),
    ('checksum-bare-odd', lambda w: w.image(src=w.src, checksum='0' * 50), 'write it as ALGORITHM:HEX'),
    ('checksum-newline', lambda w: w.image(src=w.src, checksum='sha256:%s\nx' % SHA256), 'a sha256 digest is 64 hex digits'),
    ('checksum-mismatch', lambda w: w.image(src=w.src, checksum='sha256:' + '0' * 64), 'checksum mismatch for'),
    ('checksum-other-image', lambda w: w.image(name='base', checksum='md5:' + '1' * 32), 'exists with md5'),
]

# ---- paths: sources and export destinations
PATHS = [
    ('src-relative', lambda w: w.image(src='disk.raw'), 'is relative'),
    ('src-proc', lambda w: w.image(src='/proc/self/environ'), 'is under /proc'),
    ('src-link-to-proc', lambda w: w.image(src=w.link('environ.raw', '/proc/self/environ')), 'is under /proc'),
    ('src-dev-zero', lambda w: w.image(src='/dev/zero'), 'is under /dev'),
    ('src-link-to-dev-zero', lambda w: w.image(src=w.link('zero.raw', '/dev/zero')), 'is under /dev'),
    ('src-link-to-sys', lambda w: w.image(src=w.link('sys.raw', '/sys/kernel/notes')), 'is under /sys'),
    ('src-directory', lambda w: w.image(src=str(w.tmp)), 'is not a regular file'),
    ('src-missing', lambda w: w.image(src=str(w.tmp / 'none.raw')), 'does not exist'),
    ('src-newline', lambda w: w.image(src=w.src + '\n/etc/passwd'), 'contains a control character'),
    ('src-over-size-cap', lambda w: w.image(src=w.src, size_cap=SLICE_HALF), 'more than size_cap'),
    ('export-under-proc', lambda w: w.export('/proc/self/image.raw'), 'dest /proc/self/image.raw is refused: /proc/self/image.raw is under /proc'),
    ('export-dir-link-to-proc', lambda w: w.export(os.path.join(w.link('procdir', '/proc/self'), 'x.raw')), 'is under /proc'),
    ('export-under-sys', lambda w: w.export('/sys/x.raw'), 'is under /sys'),
    ('export-relative', lambda w: w.export('out/x.raw'), 'is relative'),
    ('export-directory', lambda w: w.export(str(w.out)), 'is a directory'),
    ('export-fifo', lambda w: (os.mkfifo(str(w.out / 'fifo')), w.export(str(w.out / 'fifo'))), 'is not a regular file'),
    ('export-newline', lambda w: w.export(str(w.out / 'a\nb.raw')), 'contains a control character'),
]
# ---- URLs
URLS = [
    ('url-file', lambda w: w.image(src='file:///etc/passwd'), 'only http://, https:// and absolute paths'),
    ('url-ftp', lambda w: w.image(src='ftp://127.0.0.1/disk.raw'), 'only http://, https:// and absolute paths'),
    ('url-no-host', lambda w: w.image(src='http:///disk.raw'), 'is not a valid http(s) URL'),
    ('url-port-zero', lambda w: w.image(src='http://127.0.0.1:0/disk.raw'), 'a port from 1 to 65535'),
    ('url-port-huge', lambda w: w.image(src='http://127.0.0.1:99999/disk.raw'), 'a port from 1 to 65535'),
    ('url-newline', lambda w: w.image(src=w.http.url + '/disk.raw\r\nX-Evil: 1'), 'contains a space or a control character'),
    ('url-redirect-to-file', lambda w: w.image(src=w.http.url + '/redirect?to=file:///etc/passwd'), 'is not allowed'),
    ('url-redirect-to-ftp', lambda w: w.image(src=w.http.url + '/redirect?to=ftp://127.0.0.1:1/x'), 'cannot download'),
    ('url-404', lambda w: w.image(src=w.http.url + '/none.raw'), 'HTTP Error 404'),
    ('url-wrong-credentials', lambda w: w.image(src=w.http.url.replace('//', '//user:hunter2@') + '/auth/disk.raw'),
     'cannot download http://********@127.0.0.1'),
    ('url-two-users', lambda w: w.image(src=w.http.url.replace('//', '//user:secret@') + '/disk.raw', url_username='admin'),
     'carries a user and url_username names another'),
    ('url-short-body', lambda w: w.image(src=w.http.url + '/broken/disk.raw'), 'started over 2 times already: nothing was stored'),
    ('url-stall', lambda w: w.image(src=w.http.url + '/stall/disk.raw', url_timeout=1), 'timed out'),
    ('url-endless', lambda w: w.image(src=w.http.url + '/endless', size_cap='9M'), 'is larger than size_cap (9437184 bytes)'),
    ('url-length-over-cap', lambda w: w.image(src=w.http.url + '/disk.raw', size_cap=1000), 'announces %d bytes, more than size_cap' % len(DATA)),
    ('url-refused', lambda w: w.image(src='http://127.0.0.1:1/disk.raw'), 'Connection refused'),
    ('url-self-signed', lambda w: w.image(src=w.https_url), 'CERTIFICATE_VERIFY_FAILED'),
]

# ---- stores: CIDRs, ports, quotas, names, paths
STORES = [
    ('cidr-prefix', lambda w: w.declare('c', data_network='10.0.0.0/33'), 'is not a CIDR'),
    ('cidr-garbage', lambda w: w.declare('c', sync_network='10.0.0.0/24\n'), 'is not a CIDR'),
    ('cidr-v6-prefix', lambda w: w.declare('c', data_network='fd00::/129'), 'is not a CIDR'),
    ('port-zero', lambda w: w.declare('c', host='127.0.0.1', port=0), 'port 0 is out of range: use 1-65535'),
    ('port-huge', lambda w: w.declare('c', host='127.0.0.1', port=65536), 'port 65536 is out of range'),
    ('port-negative', lambda w: w.declare('c', host='127.0.0.1', port=-22), 'port -22 is out of range'),
    ('quota-negative', lambda w: w.declare('c', quota={'bytes': -5}), 'is negative'),
    ('quota-negative-text', lambda w: w.declare('c', quota={'bytes': '-1G'}), 'is not a size'),
    ('quota-garbage', lambda w: w.declare('c', quota={'bytes': '10 parsecs'}), 'is not a size'),
    ('store-name-path', lambda w: w.declare('../etc', path=str(w.tmp / 'x')), 'is invalid'),
    ('store-name-nul', lambda w: w.declare('a\x00b', path=str(w.tmp / 'x')), 'is invalid'),
    ('store-path-proc', lambda w: w.declare('c', path='/proc/store'), 'is forbidden'),
    ('store-path-link-to-sys', lambda w: w.declare('c', path=w.link('syslink', '/sys/kernel')), 'is forbidden'),
    ('store-path-relative', lambda w: w.declare('c', path='stores/c'), 'is relative'),
    ('quota-exceeded', lambda w: w.image(name='big', src=w.http.url + '/disk.raw', stores=['q']), "store 'q' quota exceeded"),
]


def _cases(table):
    return [pytest.param(action, phrase, id=case) for case, action, phrase in table]


@pytest.mark.parametrize('action, phrase', _cases(FIELDS))
def test_hostile_names_and_fields(world, action, phrase):
    refused(world, action, phrase)


@pytest.mark.parametrize('action, phrase', _cases(CHECKSUMS))
def test_hostile_checksums(world, action, phrase):
    refused(world, action, phrase)


@pytest.mark.parametrize('action, phrase', _cases(PATHS))
def test_hostile_paths(world, action, phrase):
    refused(world, action, phrase)


@pytest.fixture(scope='module')
def https_server(tmp_path_factory):
    """An https server with a self-signed certificate (made with openssl, once for the module)."""
    tmp_path = tmp_path_factory.mktemp('tls')
    cert, key = str(tmp_path / 'cert.pem'), str(tmp_path / 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
                    '-subj', '/CN=127.0.0.1'], check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield 'https://127.0.0.1:%d/disk.raw' % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize('action, phrase', _cases(URLS))
def test_hostile_urls(world, https_server, action, phrase):
    world.https_url = https_server
    message = refused(world, action, phrase)
    assert 'hunter2' not in message and 'secret@' not in message


@pytest.mark.parametrize('action, phrase', _cases(STORES))
def test_hostile_store_declarations(world, action, phrase):
    refused(world, action, phrase)


def test_the_corpus_is_big_enough():
    sizes = dict((name, len(table)) for name, table in
                 (('fields', FIELDS), ('checksums', CHECKSUMS), ('paths', PATHS), ('urls', URLS), ('stores', STORES)))
    assert sum(sizes.values()) >= 40, sizes


# ---- what is not refused, but must not be abused

def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_shown(world):
    url = world.http.url.replace('//', '//user:secret@') + '/auth/disk.raw'
    request = world.request(name='authed', src=url, stores=['a'])
    request.present(False)
    shown = repr((request.actions, request.download, request.result()))
    assert 'secret' not in shown and 'user:' not in shown
    assert request.actions == ['import %s into a' % url.replace('user:secret', '********')]
    assert request.result()['checksum'] == hashlib.md5(DATA).hexdigest()
    assert sources.url_secrets(url) == ['user:secret', 'secret']
    assert sources.url_secrets('http://u:p%40ss@host/x') == ['u:p%40ss', 'p@ss', 'p%40ss']


def test_export_to_a_symlink_replaces_the_link_and_never_touches_its_target(world):
    target = world.tmp / 'precious'
    target.write_bytes(b'keep me')
    os.chmod(str(target), 0o600)
    dest = str(world.out / 'image.raw')
    os.symlink(str(target), dest)
    export = world.export(dest, mode=0o644)
    assert export.replaced_symlink == str(target) and export.describe()['replaced_symlink'] == str(target)
    assert not os.path.islink(dest) and open(dest, 'rb').read() == DATA and os.stat(dest).st_mode & 0o777 == 0o644
    assert target.read_bytes() == b'keep me' and os.stat(str(target)).st_mode & 0o777 == 0o600


def test_chmod_of_an_up_to_date_export_never_follows_a_symlink(world):
    """An up-to-date export swapped for a link to its own stamped twin: the link is not up to date, it is replaced."""
    dest = str(world.out / 'image.raw')
    world.export(dest)
    twin = str(world.tmp / 'twin.raw')
    os.rename(dest, twin)
    os.symlink(twin, dest)
    catalog = Catalog(world.registry)
    export = Export(catalog, catalog.find(name='base'), 'a', dest, mode=0o600)
    assert export.needs_export() and not export.needs_chmod()
    assert export.predicted()['replaced_symlink'] == twin
    before = os.stat(twin).st_mode & 0o777
    export.run()
    assert os.stat(twin).st_mode & 0o777 == before and not os.path.islink(dest)


def test_a_store_on_another_host_keeps_an_explicit_port(world):
    from ansible_collections.vmimages.multistore.plugins.module_utils.backends import file as file_backend
    assert file_backend.configure({'path': '/srv/s', 'host': 'h', 'port': 2222})['port'] == 2222
    assert file_backend.configure({'path': '/srv/s', 'host': 'h', 'port': None})['port'] == 22
    with pytest.raises(MultistoreError, match='port 0 is out of range'):
        file_backend.configure({'path': '/srv/s', 'host': 'h', 'port': 0})


PLAYBOOK = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Import with credentials in the URL
      vmimages.multistore.image:
        registry: "{{ registry }}"
        name: "{{ image }}"
        src: "{{ src }}"
        stores: [a]
      ignore_errors: true
'''


@pytest.mark.parametrize('password, outcome', [('secret', 'changed'), ('hunter2', 'failed')])
def test_no_credential_in_vvv_output_of_a_real_playbook(world, password, outcome):
    """ansible-playbook -vvv prints the module's invocation and result: the URL's credentials are masked in both, whether
    the import worked or the server refused them."""
    playbook = world.tmp / 'play.yml'
    playbook.write_text(PLAYBOOK)
    src = world.http.url.replace('//', '//user:%s@' % password) + '/auth/disk.raw'
    executable = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')  # .venv's, beside its python
    run = subprocess.run([executable, '-vvv', '-i', 'localhost,', '-c', 'local',
                          '-e', 'ansible_python_interpreter=%s' % sys.executable, '-e', 'registry=%s' % world.registry.directory,
                          '-e', 'image=vvv-%s' % outcome, '-e', 'src=%s' % src, str(playbook)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False, cwd=str(world.tmp))
    output = run.stdout
    assert '"invocation"' in output and '********@127.0.0.1' in output, output[-3000:]
    assert password not in output and 'user:' not in output
    assert ('ok=1' if outcome == 'changed' else 'ignored=1') in output and ('changed=1' in output) == (outcome == 'changed')
