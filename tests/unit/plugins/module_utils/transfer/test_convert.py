# -*- coding: utf-8 -*-
"""Conversion to raw before an import, with the real qemu-img: the stores get exactly what qemu-img convert makes."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import subprocess

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import (
    FormatError, ImageError, SourceError, UnsafeImageError)
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.inspector import inspect_file
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import convert
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.convert import RawPreparation, check_raw, peek_format
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.sources import LocalFileSource, make_source


def file_bytes(path):
    with open(path, 'rb') as handle:
        return handle.read()


def digest(path, name):
    return hashlib.new(name, file_bytes(path)).hexdigest()


@pytest.fixture
def disk(make_raw, tmp_path):
    """``disk(fmt, subformat=None)``: a raw disk (two data slices around a zero slice) and the same disk in ``fmt``."""
    def disk(fmt, subformat=None):
        raw = make_raw('disk.raw', [1, None, 2], tail=b'\x07' * 4096)
        path = str(tmp_path / ('disk.' + fmt))
        command = ['qemu-img', 'convert', '-q', '-f', 'raw', '-O', fmt] + (['-o', 'subformat=' + subformat] if subformat else [])
        subprocess.check_call(command + [raw, path])
        return raw, path
    return disk


def qemu_raw(path, fmt, tmp_path):
    """What qemu-img convert itself makes of ``path``."""
    out = str(tmp_path / 'qemu-made.raw')
    subprocess.check_call(['qemu-img', 'convert', '-q', '-f', fmt, '-O', 'raw', path, out])
    return file_bytes(out)


@pytest.mark.parametrize('fmt, subformat', [('qcow2', None), ('vmdk', None), ('vmdk', 'streamOptimized')])
def test_local_image_becomes_the_raw_qemu_img_makes(disk, tmp_path, fmt, subformat):
    raw, path = disk(fmt, subformat)
    work = tmp_path / 'work'
    work.mkdir()
    with RawPreparation(LocalFileSource(path), declared=fmt, work_dir=str(work)) as prepared:
        converted = prepared.source.path
        assert os.path.dirname(os.path.dirname(converted)) == str(work) and converted != path
        assert file_bytes(converted) == qemu_raw(path, fmt, tmp_path) == file_bytes(raw)
        assert os.stat(converted).st_blocks * 512 < os.path.getsize(converted) - SLICE_SIZE // 2  # the zero slice is a hole
        assert prepared.origin == {'disk_format': fmt, 'size': os.path.getsize(path), 'virtual_size': os.path.getsize(raw),
                                   'extra_digests': {}, 'properties': inspect_file(path).properties}
        assert prepared.observed is True
    assert os.listdir(str(work)) == []  # the work directory goes with the context


@pytest.mark.parametrize('algorithm', ['md5', 'sha512', 'sha256'])
def test_the_source_digest_is_kept_in_origin(disk, algorithm):
    dummy, path = disk('qcow2')
    expected = digest(path, algorithm)
    with RawPreparation(LocalFileSource(path), checksum=(algorithm, expected), declared='qcow2') as prepared:
        origin = prepared.origin
    if algorithm == 'md5':
        assert origin['checksum'] == expected and origin['extra_digests'] == {}
    elif algorithm == 'sha512':
        assert (origin['os_hash_algo'], origin['os_hash_value']) == ('sha512', expected)
    else:
        assert origin['extra_digests'] == {'sha256': expected}


def test_checksum_mismatch_is_refused_and_leaves_nothing(disk, tmp_path):
    dummy, path = disk('qcow2')
    work = tmp_path / 'work'
    work.mkdir()
    wrong = '0' * 64
    with pytest.raises(SourceError) as raised:
        with RawPreparation(LocalFileSource(path), checksum=('sha256', wrong), declared='qcow2', work_dir=str(work)):
            pass
    assert str(raised.value) == ('checksum mismatch for %s: sha256 is %s, expected %s; nothing was stored'
                                 % (path, digest(path, 'sha256'), wrong))
    assert os.listdir(str(work)) == []


def test_declared_format_must_match(disk, tmp_path):
    dummy, path = disk('qcow2')
    with pytest.raises(FormatError, match='the bytes are a qcow2 image but disk_format is vmdk: set disk_format: qcow2'):
        with RawPreparation(LocalFileSource(path), declared='vmdk', work_dir=str(tmp_path)):
            pass


def test_unsafe_image_is_refused_before_conversion(disk, tmp_path):
    dummy, base = disk('qcow2')
    backed = str(tmp_path / 'backed.qcow2')
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', backed])
    work = tmp_path / 'work'
    work.mkdir()
    with pytest.raises(UnsafeImageError, match='the qcow2 image has a backing file'):
        with RawPreparation(LocalFileSource(backed), work_dir=str(work)):
            pass
    assert os.listdir(str(work)) == []


def test_raw_passes_through_without_a_pass_or_a_copy(make_raw, tmp_path):
    raw = make_raw('a.raw', [1])
    source = LocalFileSource(raw)
    work = tmp_path / 'work'
    work.mkdir()
    for declared in ('raw', None):  # declared raw, or a local file whose header shows no convertible format
        with RawPreparation(source, declared=declared, work_dir=str(work)) as prepared:
            assert prepared.source is source and prepared.origin is None and prepared.observed is False
            assert os.listdir(str(work)) == []
    assert peek_format(raw) == 'raw'


def test_download_is_spooled_then_converted(disk, http_server, tmp_path):
    raw, path = disk('qcow2')
    http_server.files['/disk.qcow2'] = file_bytes(path)
    seen = hashlib.sha256()
    url = http_server.url + '/disk.qcow2'
    with RawPreparation(make_source(url), checksum=('md5', digest(path, 'md5')), work_dir=str(tmp_path),
                        observers=[seen.update]) as prepared:
        assert file_bytes(prepared.source.path) == file_bytes(raw)
        assert os.listdir(os.path.dirname(prepared.source.path)) == ['raw']  # the spooled download is gone once converted
        assert prepared.origin['disk_format'] == 'qcow2' and prepared.origin['checksum'] == digest(path, 'md5')
    assert prepared.observed and seen.hexdigest() == digest(path, 'sha256')  # the observers saw every source byte
    assert http_server.requests == ['/disk.qcow2']  # one download


def test_raw_download_is_spooled_sparse_and_not_converted(make_raw, http_server, tmp_path):
    raw = make_raw('a.raw', [1, None, None], tail=b'end')
    http_server.files['/a.raw'] = file_bytes(raw)
    with RawPreparation(make_source(http_server.url + '/a.raw'), work_dir=str(tmp_path)) as prepared:
        spooled = prepared.source.path
        assert prepared.origin is None and file_bytes(spooled) == file_bytes(raw)
        assert os.stat(spooled).st_blocks * 512 < 2 * SLICE_SIZE  # the two zero slices were never written


def test_check_raw_refuses_what_is_not_raw(disk, make_raw):
    dummy, path = disk('qcow2')
    with pytest.raises(FormatError) as raised:
        check_raw(inspect_file(path))
    assert str(raised.value) == ('the image is qcow2, and rbd stores hold raw images: set disk_format: qcow2 so that it is '
                                 'converted, or convert it to raw first')
    check_raw(inspect_file(make_raw('a.raw', [1])))


def test_convert_refusals(make_raw, tmp_path):
    raw = make_raw('a.raw', [1])
    with pytest.raises(ImageError, match='an image in ploop format cannot be converted to raw: export it with format: original'):
        convert(raw, 'ploop', str(tmp_path / 'out'), 'raw')
    with pytest.raises(ImageError, match=r"qemu-img convert failed: .*Image is not in qcow2 format"):
        convert(raw, 'qcow2', str(tmp_path / 'out'), 'raw')  # -f is explicit: qemu-img never probes
