# -*- coding: utf-8 -*-
"""Export writes the imported bytes back, sparse and verified, and recognizes an up-to-date file."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import filecmp
import json
import os
import subprocess

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.owners import process_state
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export, export_temp_name
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE


def make_export(registry, name, dest, **kwargs):
    catalog = Catalog(registry)
    return Export(catalog, catalog.find(name=name), 'central', dest, **kwargs)


def test_export_is_byte_identical_sparse_and_stamped(registry, declare, image_request, make_raw, tmp_path):
    declare('central')
    src = make_raw('a.raw', [1, None, None, 2, None], tail=b'end')
    image_request(name='a', src=src, stores=['central']).present(False)
    dest = str(tmp_path / 'out.raw')
    export = make_export(registry, 'a', dest, mode=0o640)
    assert export.needs_export()
    export.run()
    assert filecmp.cmp(src, dest, shallow=False)
    stat = os.stat(dest)
    assert stat.st_size == 5 * SLICE_SIZE + 3 and stat.st_blocks * 512 < 3 * SLICE_SIZE  # holes for the zero slices
    assert stat.st_mode & 0o777 == 0o640
    assert not make_export(registry, 'a', dest).needs_export()
    with open(dest, 'r+b') as handle:  # any change to the file invalidates the stamp
        handle.write(b'x')
    assert make_export(registry, 'a', dest).needs_export()
    assert [name for name in os.listdir(str(tmp_path)) if name.startswith('.')] == []


def test_export_detects_a_corrupt_slice_and_leaves_no_file(registry, declare, image_request, make_raw, tmp_path):
    path = declare('central')
    image_request(name='a', src=make_raw('a.raw', [7]), stores=['central']).present(False)
    slices_dir = os.path.join(path, 'slices')
    sub = os.listdir(slices_dir)[0]
    victim = os.path.join(slices_dir, sub, os.listdir(os.path.join(slices_dir, sub))[0])
    with open(victim, 'r+b') as handle:
        handle.seek(100)
        handle.write(b'bitrot')
    dest = str(tmp_path / 'out.raw')
    with pytest.raises(StoreError, match='corrupt'):
        make_export(registry, 'a', dest).run()
    assert not os.path.exists(dest) and [n for n in os.listdir(str(tmp_path)) if n.startswith('.')] == []


def test_export_converts_qcow2_to_raw(registry, declare, image_request, tmp_path):
    declare('central')
    raw = str(tmp_path / 'disk.raw')
    with open(raw, 'wb') as handle:
        handle.truncate(16 << 20)
        handle.seek(5 << 20)
        handle.write(b'data' * 4096)
    qcow2 = str(tmp_path / 'disk.qcow2')
    subprocess.check_call(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qcow2])
    image_request(name='q', src=qcow2, stores=['central'], disk_format='qcow2').present(False)
    dest = str(tmp_path / 'out.raw')
    make_export(registry, 'q', dest, output_format='raw').run()
    info = json.loads(subprocess.check_output(['qemu-img', 'info', '--output=json', '-f', 'raw', dest]))
    assert info['virtual-size'] == 16 << 20
    assert filecmp.cmp(raw, dest, shallow=False)
    assert not make_export(registry, 'q', dest, output_format='raw').needs_export()


def test_an_export_removes_what_a_killed_export_of_its_dest_left(registry, declare, image_request, make_raw, tmp_path):
    """kill -9 of an export while it writes leaves its temporary file beside dest (tests/faults, KILL_SEED=711169 export points 31, 63, 71, 87, 175, 183, 199);
    the next export of that dest removes it, since its name says the process that wrote it is gone. A live export's
    file (this process's) and another dest's stay."""
    declare('central')
    image_request(name='a', src=make_raw('a.raw', [1, None, 2]), stores=['central']).present(False)
    dest = str(tmp_path / 'out.raw')
    killed = subprocess.Popen(['sleep', '600'])
    started = process_state(killed.pid)[1]
    killed.kill()
    killed.wait()
    dead = '.out.raw.export-%d-%d-0123456789ab' % (killed.pid, started)
    live = os.path.basename(export_temp_name(dest))
    other = '.other.raw.export-%d-%d-0123456789ab' % (killed.pid, started)
    for name in (dead, live, other):
        with open(str(tmp_path / name), 'wb') as handle:
            handle.write(b'partial')
    export = make_export(registry, 'a', dest)
    export.run()
    assert export.removed_temps == [dead]
    assert sorted(name for name in os.listdir(str(tmp_path)) if name.startswith('.')) == sorted([live, other])
    assert make_export(registry, 'a', dest).needs_export() is False
