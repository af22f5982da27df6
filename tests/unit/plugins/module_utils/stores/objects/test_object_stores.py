# -*- coding: utf-8 -*-
"""The s3 and swift stores against a real radosgw: layout, the engine's imports, copies and deletions, dedup,
resumed uploads, leases, a stopped radosgw, wrong credentials."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import LockError, StoreError, TransferInterrupted
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export
from ansible_collections.vmimages.multistore.plugins.module_utils.images.transaction import Transfer
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE, SliceList
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration, describe
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.objectstore import READ_AHEAD

from image_files import slice_bytes
from tests.ceph.pytest_ceph import rgw_stopped

pytestmark = pytest.mark.ceph


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def sha512_of(path):
    digest = hashlib.sha512()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def slice_keys(keys):
    return sorted(key.rsplit('/', 1)[1] for key in keys if key.startswith('slices/'))


def export(registry, name, store, dest):
    catalog = Catalog(registry)
    Export(catalog, catalog.find(name=name), store, dest).run()
    return sha512_of(dest)


def bucket_of_backend(backend):
    return backend.blobs.bucket if backend.kind == 's3' else backend.blobs.container


def put_slices(writer, seeds):
    for index, seed in enumerate(seeds):
        writer.put(sha256(slice_bytes(seed)), memoryview(bytearray(slice_bytes(seed))), index)


def wait_uploaded(writer, count):
    """Let the writer's threads finish at least ``count`` uploads (abort stops the uploads still queued)."""
    deadline = time.time() + 30
    while len(writer.staged_digests()) < count and time.time() < deadline:
        time.sleep(0.01)
    assert len(writer.staged_digests()) >= count


# ---- identity, layout, engine


def test_identity_creates_the_bucket_and_reads_back(kind, make_backend, bucket_keys, registry, declare_object):
    backend = make_backend(kind)
    bucket = backend.blobs.bucket if kind == 's3' else backend.blobs.container
    assert backend.check_root() is None
    assert backend.read_identity() is None  # no bucket yet: no store, not an error
    assert backend.status() == 'disconnected'
    backend.write_identity({'id': 'x', 'type': kind})
    assert bucket_keys(bucket) == {'multistore.json': len(json.dumps({'id': 'x', 'type': kind}, indent=1, sort_keys=True)) + 1}
    assert backend.read_identity() == {'id': 'x', 'type': kind}
    assert backend.status() == 'connected' and backend.writable_problem() is None
    assert backend.stats() == {'capacity': None, 'free': None, 'used': 0, 'image_count': 0, 'slice_count': 0}
    # through the store module's logic: declared once, idempotent, found again with its id
    declared = declare_object('objects', kind)
    store = registry.open('objects')
    assert store.status() == 'connected' and store.identity['type'] == kind
    params = dict(registry.declaration('objects'), name='objects')
    assert StoreDeclaration(registry, params).present(check_mode=False) is False
    assert describe(store)['status'] == 'connected'
    assert declared.location('abc') == '%s://%s/%s/images/abc' % (kind, declared.blobs.endpoint.split('/')[2], bucket_of_backend(declared))


def test_bad_names_are_problems_before_any_request(kind, make_backend):
    backend = make_backend(kind, bucket='Not_A_Bucket/x')
    assert 'not a valid' in backend.check_root()
    with pytest.raises(StoreError, match='not a valid'):
        backend.read_identity()


def test_import_through_the_engine_keeps_the_file_store_layout(kind, declare_object, image_request, make_raw, bucket_keys):
    backend = declare_object('objects', kind)
    bucket = bucket_of_backend(backend)
    src = make_raw('a.raw', [1, 1, 2, None, 1], tail=b'tail')
    request = image_request(name='img', src=src, stores=['objects'], tags=['x'])
    assert request.present(check_mode=False) is True
    info = request.result()
    assert info['status'] == 'active' and info['stores'] == ['objects']
    assert info['os_hash_value'] == sha512_of(src) and info['size'] == 5 * SLICE_SIZE + 4
    assert info['locations'][0]['url'] == backend.location(info['id'])
    keys = bucket_keys(bucket)
    expected = sorted(sha256(data) for data in (slice_bytes(1), slice_bytes(2), b'tail'))
    assert slice_keys(keys) == expected
    assert all(key == 'slices/%s/%s' % (key.rsplit('/', 1)[1][:2], key.rsplit('/', 1)[1]) for key in keys if key.startswith('slices/'))
    assert sorted(key for key in keys if not key.startswith('slices/')) == [
        'images/%s/record.json' % info['id'], 'images/%s/slices.json' % info['id'], 'multistore.json',  # no lease left
        'names/%s/%s' % (sha256(b'img'), info['id']), 'names/complete.json']  # the name index
    slice_list = SliceList.from_dict(json.loads(backend.blobs.get_object('images/%s/slices.json' % info['id']).decode()))
    assert slice_list.slices[3] is None and slice_list.slices[0] == slice_list.slices[1] == slice_list.slices[4]
    stats = backend.stats()
    assert stats['image_count'] == 1 and stats['slice_count'] == 3 and stats['capacity'] is None
    # slices and images; not the identity or the name index (bookkeeping, tens of bytes)
    assert stats['used'] == sum(size for key, size in keys.items() if key.startswith(('slices/', 'images/')))
    assert image_request(name='img', src=src, stores=['objects']).present(check_mode=False) is False


def test_a_second_image_uploads_only_its_new_slices(kind, declare_object, image_request, make_raw, writers, bucket_keys):
    backend = declare_object('objects', kind)
    image_request(name='a', src=make_raw('a.raw', [1, 2, 3, 1]), stores=['objects']).present(False)
    assert writers[-1].new_bytes == 3 * SLICE_SIZE  # slice 1 twice in the image, sent once
    image_request(name='b', src=make_raw('b.raw', [2, 3, 4]), stores=['objects']).present(False)
    assert writers[-1].new_bytes == SLICE_SIZE and writers[-1].staged_digests() == [sha256(slice_bytes(4))]
    assert len(slice_keys(bucket_keys(bucket_of_backend(backend)))) == 4


def test_copy_file_to_s3_to_swift_to_file_is_identical(registry, declare, declare_object, image_request, make_raw, tmp_path, writers):
    declare('central')
    declare_object('s3', 's3')
    declare_object('swift', 'swift')
    declare('back')
    src = make_raw('a.raw', [1, 2, None, 3, 2], tail=b'x' * 1000)
    image_request(name='a', src=src, stores=['central']).present(False)
    for target, previous in (('s3', 'central'), ('swift', 's3'), ('back', 'swift')):
        copy = image_request(name='a', stores=[target])
        assert copy.present(False) is True and copy.actions == ['copy to %s from %s' % (target, previous)]
        assert export(registry, 'a', target, str(tmp_path / ('%s.raw' % target))) == sha512_of(src)
        drop = image_request(name='a', stores=[previous], state='absent')
        assert drop.absent(False) is True
        assert copy.result()['stores'] == [target]
    assert [writer.new_bytes for writer in writers] == [3 * SLICE_SIZE + 1000] * 2
    assert copy.result()['os_hash_value'] == sha512_of(src)


def test_delete_keeps_shared_slices_and_removes_the_others(kind, declare_object, image_request, make_raw, bucket_keys):
    backend = declare_object('objects', kind)
    bucket = bucket_of_backend(backend)
    image_request(name='a', src=make_raw('a.raw', [1, 2]), stores=['objects']).present(False)
    image_request(name='b', src=make_raw('b.raw', [2, 3]), stores=['objects']).present(False)
    request = image_request(name='a', state='absent')
    assert request.absent(check_mode=False) is True
    assert request.released == SLICE_SIZE
    keys = bucket_keys(bucket)
    assert slice_keys(keys) == sorted(sha256(slice_bytes(seed)) for seed in (2, 3))
    assert not [key for key in keys if key.startswith('locks/')]
    assert len([key for key in keys if key.startswith('images/')]) == 2  # b's record and slice list
    assert image_request(name='a', state='absent').absent(check_mode=False) is False


def test_read_slices_in_order_with_read_ahead_and_a_clear_error_for_a_missing_one(kind, make_backend):
    backend = make_backend(kind)
    backend.write_identity({'id': 'x'})
    seeds = list(range(1, READ_AHEAD + 6))
    writer = backend.slice_writer('img')
    put_slices(writer, seeds)
    writer.commit()
    digests = [sha256(slice_bytes(seed)) for seed in reversed(seeds)]
    assert [(digest, sha256(data)) for digest, data in backend.read_slices(digests)] == [(digest, digest) for digest in digests]
    absent = sha256(b'absent')
    assert backend.missing_slices(digests[:3] + [absent]) == [absent]
    with pytest.raises(StoreError, match='slice %s is missing' % absent):
        list(backend.read_slices(digests[:2] + [absent]))
    stream = backend.read_slices(digests)
    next(stream)
    stream.close()  # a reader that stops early leaves nothing running


def test_prefixes_keep_two_stores_apart_in_one_bucket(kind, make_backend, new_bucket, bucket_keys):
    bucket = new_bucket()
    one = make_backend(kind, 'one', bucket=bucket, prefix='one')
    two = make_backend(kind, 'two', bucket=bucket, prefix='two/')
    for backend in (one, two):
        backend.write_identity({'name': backend.name})
    one.write_record('abc', {'id': 'abc', 'status': 'active'})
    assert one.image_ids() == ['abc'] and two.image_ids() == []
    assert two.read_identity() == {'name': 'two'}
    assert sorted(bucket_keys(bucket)) == ['one/images/abc/record.json', 'one/multistore.json', 'two/multistore.json']
    assert one.location('abc').endswith('/%s/one/images/abc' % bucket)


def test_store_cleanup_removes_what_interrupted_and_cut_short_runs_left(
        kind, registry, declare_object, image_request, make_raw, writers, monkeypatch, bucket_keys, s3_admin, tmp_path):
    from ansible_collections.vmimages.multistore.plugins.module_utils.images.cleanup import StoreCleanup
    backend = declare_object('objects', kind)
    bucket = bucket_of_backend(backend)
    src = make_raw('a.raw', [1, 2])
    image_request(name='a', src=src, stores=['objects']).present(False)
    image_request(name='b', src=make_raw('b.raw', [2, 3]), stores=['objects']).present(False)
    kept = dict(bucket_keys(bucket))

    def interrupting_refresher(_transfer, locks, progress, sinks):
        def refresh(index):
            if index == 3:
                wait_uploaded(writers[-1], 2)
                raise KeyboardInterrupt()
        return refresh
    monkeypatch.setattr(Transfer, '_refresher', interrupting_refresher)
    with pytest.raises(KeyboardInterrupt):
        image_request(name='c', src=make_raw('c.raw', [7, 8, 9, 10, 11]), stores=['objects']).present(False)
    orphans = set(writers[-1].staged_digests())
    assert orphans and set(slice_keys(bucket_keys(bucket))) == set(slice_keys(kept)) | orphans  # kept for a re-run
    # what a deletion cut short between its two deletes leaves, a lease of a run gone elsewhere, an old probe
    b_id = [key.split('/')[1] for key in kept if key.endswith('record.json')]
    b_id = [image_id for image_id in b_id if backend.read_record(image_id)['name'] == 'b'][0]
    s3_admin.delete_object(Bucket=bucket, Key='images/%s/record.json' % b_id)
    backend.blobs.write_json('locks/%s/gone' % b_id, {'token': 'gone', 'host': 'elsewhere', 'pid': 1, 'expires_at': time.time() - 1})
    backend.blobs.put_object('locks/probe-1000-abcd', b'')
    before = dict(bucket_keys(bucket))
    changed, report = StoreCleanup(registry.open('objects'), 0).run(check_mode=True)
    assert changed and bucket_keys(bucket) == before
    changed, report = StoreCleanup(registry.open('objects'), 0).run(check_mode=False)
    assert sorted(report['removed_staging']) == sorted(
        ['images/%s (no record)' % b_id, 'names/%s/%s (no image)' % (sha256(b'b'), b_id), 'locks/%s/gone' % b_id, 'locks/probe-1000-abcd'])
    assert report['removed_slices'] == len(orphans) + 1  # slice 3 belonged to b only
    left = bucket_keys(bucket)
    assert slice_keys(left) == sorted(sha256(slice_bytes(seed)) for seed in (1, 2))
    assert not [key for key in left if key.startswith('locks/')]
    assert export(registry, 'a', 'objects', str(tmp_path / 'a.out')) == sha512_of(src)
    assert StoreCleanup(registry.open('objects'), 0).run(check_mode=False)[0] is False


# ---- writers


def test_abort_deletes_what_it_uploaded_unless_another_transfer_runs(kind, make_backend, bucket_keys):
    backend = make_backend(kind)
    backend.write_identity({'id': 'x'})
    bucket = bucket_of_backend(backend)
    with backend.slice_guard(exclusive=False):  # the transfer's own shared hold does not stop its cleanup
        writer = backend.slice_writer('img')
        put_slices(writer, [1, 2, 3])
        wait_uploaded(writer, 3)
        writer.abort()
    assert slice_keys(bucket_keys(bucket)) == [] and bucket_keys(bucket, 'locks/') == {}
    # another run's transfer holds the slice guard (shared): it may have found these slices with HEAD
    other = make_backend(kind, 'other', bucket=bucket)
    with other.slice_guard(exclusive=False):
        with backend.slice_guard(exclusive=False):
            writer = backend.slice_writer('img')
            put_slices(writer, [1, 2])
            wait_uploaded(writer, 2)
            writer.abort()
    assert len(slice_keys(bucket_keys(bucket))) == 2
    writer = backend.slice_writer('img')
    put_slices(writer, [1, 2, 4])
    wait_uploaded(writer, 1)
    writer.abort(keep=True)  # interrupted: everything stays for the next run
    assert len(slice_keys(bucket_keys(bucket))) == 3 and writer.new_bytes == SLICE_SIZE
    writer = backend.slice_writer('img')
    put_slices(writer, [5])
    writer.commit()
    writer.abort()  # a later failure elsewhere: committed slices may be referenced already, they stay
    assert len(slice_keys(bucket_keys(bucket))) == 4


def test_an_upload_that_fails_surfaces_at_a_later_put_or_commit(kind, make_backend):
    backend = make_backend(kind)  # its bucket was never created: every PUT fails
    writer = backend.slice_writer('img')
    with pytest.raises(StoreError, match="does not exist") as failure:
        put_slices(writer, [1, 2, 3, 4])
        writer.commit()
    assert not isinstance(failure.value, TransferInterrupted)
    assert writer.new_bytes == 0 and writer.staged_digests() == []


def test_s3_signs_a_slice_with_its_sha256_without_hashing_it_again_and_radosgw_checks_it(make_backend, bucket_keys, monkeypatch):
    import botocore.auth
    backend = make_backend('s3')
    backend.blobs.create()
    hashed = []
    real = botocore.auth.sha256
    monkeypatch.setattr(botocore.auth, 'sha256', lambda *data: (hashed.append(len(data[0]) if data else 0), real(*data))[1])
    data = bytearray(slice_bytes(7))
    backend.blobs.put_slice('slices/known', data, sha256(data))
    assert backend.blobs.get_object('slices/known') == bytes(data)
    assert max(hashed) < 4096  # botocore hashed its canonical request, never the 4 MiB body
    # the signature carries the digest and radosgw checks the body against it: a wrong one is refused
    with pytest.raises(StoreError, match='XAmzContentSHA256Mismatch'):
        backend.blobs.put_slice('slices/wrong', data, sha256(b'other bytes'))
    assert 'slices/wrong' not in bucket_keys(backend.blobs.bucket)
    backend.blobs.put_object('plain', b'{}')  # other requests sign as botocore does
    assert backend.blobs.get_object('plain') == b'{}'


# ---- leases


def test_a_second_image_lock_gets_a_lock_error_until_the_first_is_released(kind, make_backend, bucket_keys):
    first = make_backend(kind, 'objects')
    first.write_identity({'id': 'x'})
    second = make_backend(kind, 'objects', bucket=bucket_of_backend(first))
    lock = first.image_lock('img-1')
    with lock:
        assert second.image_lock('img-1').busy() and not second.image_lock('img-2').busy()
        contender = second.image_lock('img-1')
        contender.wait = 1
        with pytest.raises(LockError) as failure:
            contender.acquire()
        message = str(failure.value)
        assert "image img-1 in store 'objects' is locked by" in message and 'pid %d' % os.getpid() in message
        assert '/locks/img-1/%s' % lock.token in message
        lock.refresh()
    assert not second.image_lock('img-1').busy()
    with second.image_lock('img-1'):
        pass
    assert [key for key in bucket_keys(bucket_of_backend(first)) if key.startswith('locks/')] == []


def test_an_expired_lease_of_another_host_is_broken(kind, make_backend, bucket_keys):
    backend = make_backend(kind)
    backend.write_identity({'id': 'x'})
    backend.blobs.write_json('locks/img/dead', {'token': 'dead', 'host': 'elsewhere', 'pid': 1, 'expires_at': time.time() - 1})
    backend.blobs.write_json('locks/img/live', {'token': 'live', 'host': 'elsewhere', 'pid': 1, 'expires_at': time.time() + 60})
    contender = backend.image_lock('img')
    contender.wait = 0.5
    with pytest.raises(LockError, match='elsewhere'):
        contender.acquire()
    assert sorted(bucket_keys(bucket_of_backend(backend), 'locks/')) == ['locks/img/live']
    backend.blobs.delete_object('locks/img/live')
    with backend.image_lock('img'):
        pass


def test_image_leases_exclude_each_other_under_contention(kind, make_backend):
    """Four runs (four store objects) take the same lock three times each: never two holders at once."""
    bucket = bucket_of_backend(make_backend(kind))
    backends = [make_backend(kind, 'objects', bucket=bucket) for dummy in range(4)]
    backends[0].write_identity({'id': 'x'})
    holders = []
    overlaps = []
    errors = []

    def run(backend):
        try:
            for dummy in range(3):
                with backend.image_lock('contended'):
                    holders.append(backend)
                    if len(holders) > 1:
                        overlaps.append(len(holders))
                    time.sleep(0.05)
                    holders.remove(backend)
        except Exception as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(backend,)) for backend in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and overlaps == []


def test_the_exclusive_guard_waits_for_shared_holders(kind, make_backend):
    first = make_backend(kind, 'objects')
    first.write_identity({'id': 'x'})
    second = make_backend(kind, 'objects', bucket=bucket_of_backend(first))
    shared = first.slice_guard(exclusive=False).__enter__()
    with second.slice_guard(exclusive=False):
        pass  # shared holders do not exclude each other
    exclusive = second.slice_guard(exclusive=True)
    exclusive.wait = 1
    with pytest.raises(LockError, match="the slices of store 'objects' are busy: an import or copy"):
        exclusive.acquire()
    acquired = []
    waiter = second.slice_guard(exclusive=True)
    thread = threading.Thread(target=lambda: acquired.append(waiter.acquire()))
    thread.start()
    time.sleep(1.5)
    assert acquired == []
    shared.__exit__(None, None, None)
    thread.join(30)
    assert acquired == [waiter]
    transfer = first.slice_guard(exclusive=False)
    transfer.wait = 1
    with pytest.raises(LockError, match='a slice deletion'):
        transfer.acquire()
    waiter.release()
    with first.slice_guard(exclusive=False):
        pass


# ---- failures


def test_an_upload_interrupted_by_a_stopped_radosgw_resumes_with_only_the_rest(
        kind, declare_object, image_request, make_raw, writers, ceph_cluster, monkeypatch, bucket_keys):
    backend = declare_object('objects', kind)
    seeds = list(range(20, 32))
    src = make_raw('a.raw', seeds)
    stopped = []

    def interrupting_refresher(_transfer, locks, progress, sinks):
        def refresh(index):
            if index == 4 and not stopped:
                deadline = time.time() + 30
                while len(writers[-1].staged_digests()) < 2 and time.time() < deadline:
                    time.sleep(0.01)
                stopped.append(rgw_stopped(ceph_cluster))
                stopped[0].__enter__()
        return refresh
    monkeypatch.setattr(Transfer, '_refresher', interrupting_refresher)
    try:
        with pytest.raises(TransferInterrupted) as failure:
            image_request(name='a', src=src, stores=['objects']).present(False)
    finally:
        if stopped:
            stopped[0].__exit__(None, None, None)
    assert 'cannot reach' in str(failure.value) and 'run again to resume' in str(failure.value)
    sent_first = set(writers[0].staged_digests())
    # abort(keep=True) kept them (a PUT the stop cut short may have landed too: the bucket is the truth)
    there = set(slice_keys(bucket_keys(bucket_of_backend(backend))))
    assert 2 <= len(sent_first) and sent_first <= there and len(there) < len(seeds)
    request = image_request(name='a', src=src, stores=['objects'])
    assert request.present(False) is True
    assert request.result()['os_hash_value'] == sha512_of(src)
    assert writers[-1].new_bytes == (len(seeds) - len(there)) * SLICE_SIZE
    assert not set(writers[-1].staged_digests()) & there


def test_a_stopped_radosgw_reads_as_disconnected_and_everything_is_intact_after(
        kind, registry, declare_object, image_request, make_raw, tmp_path, ceph_cluster):
    backend = declare_object('objects', kind)
    src = make_raw('a.raw', [1, 2, 3])
    image_request(name='a', src=src, stores=['objects']).present(False)
    before = backend.stats()
    endpoint = ceph_cluster['rgw_endpoint']
    with rgw_stopped(ceph_cluster):
        store = registry.open('objects')
        assert store.identity is None and store.status() == 'disconnected'
        assert "cannot reach %s" % endpoint in store.unreachable and "'%s'" % bucket_of_backend(backend) in store.unreachable
        assert 'connection refused' in store.unreachable and "store 'objects'" in store.unreachable
        assert describe(store)['status'] == 'disconnected'
        with pytest.raises(StoreError, match='cannot reach'):
            backend.stats()
        with pytest.raises(StoreError, match='disconnected') as failure:
            image_request(name='b', src=make_raw('b.raw', [4]), stores=['objects']).present(False)
        assert 'Traceback' not in str(failure.value)
        assert Catalog(registry).find(name='a') is None  # the only store holding it is not reachable
    assert registry.open('objects').status() == 'connected'
    assert backend.stats() == before
    assert export(registry, 'a', 'objects', str(tmp_path / 'out.raw')) == sha512_of(src)


def test_a_wrong_secret_key_is_a_clear_error_without_the_key(kind, registry, declare_object, store_params, ceph_cluster):
    good = declare_object('objects', kind)
    wrong = 'Wr0ng' + ceph_cluster['s3_secret_key' if kind == 's3' else 'swift_key'][5:]
    params = store_params(kind, bucket_of_backend(good), secret_key=wrong, name='objects')
    with pytest.raises(StoreError) as failure:
        StoreDeclaration(registry, params).present(check_mode=False)
    message = str(failure.value)
    assert 'check access_key' in message and 'and secret_key' in message and ceph_cluster['rgw_endpoint'] in message
    assert wrong not in message and wrong[5:15] not in message
    broken = type(good)('objects', dict(good.config, secret_key=wrong))
    for call in (broken.read_identity, broken.stats, lambda: broken.write_record('x', {})):
        with pytest.raises(StoreError) as failure:
            call()
        assert 'secret_key' in str(failure.value) and wrong not in str(failure.value)
    assert broken.status() == 'disconnected' and wrong not in broken.writable_problem()


@pytest.mark.parametrize('library', ['boto3', 'swiftclient'])
def test_without_the_client_library_the_error_says_what_to_install(library, tmp_path):
    """A Python where the library cannot be imported: Debian's python3 once had neither, but the cinder back end's
    packages bring both, so the import is blocked the way Python itself supports (a None entry in sys.modules makes
    ``import`` raise ImportError), in a fresh interpreter."""
    python = sys.executable
    script = (
        'import sys\n'
        'sys.modules[%(library)r] = None\n'
        'from ansible_collections.vmimages.multistore.plugins.module_utils.stores.%(module)s import %(cls)s\n'
        'store = %(cls)s("objects", {"endpoint": "http://127.0.0.1:9/auth/1.0", "bucket": "bbb", "container": "bbb"})\n'
        'try:\n'
        '    store.read_identity()\n'
        'except Exception as exc:\n'
        '    print(type(exc).__name__, exc)\n'
    ) % {'module': 's3' if library == 'boto3' else 'swift', 'cls': 'S3Store' if library == 'boto3' else 'SwiftStore', 'library': library}
    collections_root = os.path.dirname(list(sys.modules['ansible_collections'].__path__)[0])
    output = subprocess.check_output([python, '-c', script], env=dict(os.environ, PYTHONPATH=collections_root), universal_newlines=True)
    expected = 'install python3-boto3' if library == 'boto3' else 'install python3-swiftclient'
    assert output.startswith('StoreError ') and expected in output
