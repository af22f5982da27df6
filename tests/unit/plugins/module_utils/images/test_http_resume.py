# -*- coding: utf-8 -*-
"""http(s) imports that are cut mid-body (issue 10, item 2): they continue with Range where the server allows it, and
start over, saying why, where it does not (no ranges, the file changed). A real HTTP server in a thread cuts them."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import SourceError
from ansible_collections.vmimages.multistore.plugins.module_utils.images import progress as progress_module
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer import sources

from image_files import slice_bytes

DATA = slice_bytes(11) + slice_bytes(12) + slice_bytes(13, 4321)
CUT = SLICE_SIZE + 1000


@pytest.fixture
def served(http_server, declare, monkeypatch):
    monkeypatch.setattr(sources, 'RESUME_DELAY', 0.01)
    declare('central')
    declare('edge')
    http_server.files['/disk.raw'] = DATA
    return http_server


def staging_left(tmp_path):
    return [name for store in ('central', 'edge') for name in os.listdir(str(tmp_path / 'stores' / store / 'staging'))]


def test_a_cut_download_resumes_from_the_byte_it_reached(served, image_request, tmp_path):
    served.cuts['/disk.raw'] = [CUT]
    request = image_request(name='disk', src=served.url + '/disk.raw', stores=['central', 'edge'],
                            checksum='sha256:' + hashlib.sha256(DATA).hexdigest())
    assert request.present(False)
    image = request.result()
    assert image['status'] == 'active' and image['checksum'] == hashlib.md5(DATA).hexdigest() and image['size'] == len(DATA)
    assert request.download['resumed_from'] == [CUT] and request.download['restarts'] == []
    assert request.actions == ['import %s/disk.raw into central, edge (download resumed from byte %d (the connection closed after %d of '
                               '%d bytes))' % (served.url, CUT, CUT, len(DATA))]
    etag = '"%s"' % hashlib.sha1(DATA).hexdigest()[:16]
    assert served.ranges_seen == [(None, None), ('bytes=%d-' % CUT, etag)]
    assert staging_left(tmp_path) == []


def test_a_server_that_ignores_range_makes_the_import_start_over(served, image_request):
    served.ranges = False
    served.cuts['/disk.raw'] = [CUT]
    request = image_request(name='disk', src=served.url + '/disk.raw', stores=['central'])
    request.present(False)
    assert request.result()['checksum'] == hashlib.md5(DATA).hexdigest()
    assert request.download['restarts'] == [{'at': CUT, 'why': 'the server does not support ranges (it sent the whole file again)'}]
    assert request.actions[-1].endswith('(download restarted from byte 0 after a cut at byte %d: the server does not support ranges '
                                        '(it sent the whole file again))' % CUT)
    assert len(served.requests) == 3  # the cut answer, the range request answered with 200, the new import's download


def test_a_file_changed_on_the_server_is_imported_whole_in_its_new_version(served, image_request):
    new = slice_bytes(21) + slice_bytes(22, 99)
    served.cuts['/disk.raw'] = [CUT]
    served.after_cut['/disk.raw'] = new
    request = image_request(name='disk', src=served.url + '/disk.raw', stores=['central'])
    request.present(False)
    assert request.result()['checksum'] == hashlib.md5(new).hexdigest() and request.result()['size'] == len(new)
    [restart] = request.download['restarts']
    assert restart['at'] == CUT and restart['why'].startswith('the file changed on the server (ETag was "')


def test_a_download_that_keeps_starting_over_fails_with_nothing_stored(served, image_request, tmp_path, registry):
    served.ranges = False
    served.cuts['/disk.raw'] = [CUT] * 10  # every answer is cut, the range requests' too
    request = image_request(name='disk', src=served.url + '/disk.raw', stores=['central', 'edge'])
    with pytest.raises(SourceError, match=r'cannot resume: the server does not support ranges .*; it started over 2 times already: '
                       'nothing was stored, run again'):
        request.present(False)
    assert image_request(name='disk').catalog.find(name='disk') is None
    assert staging_left(tmp_path) == []
    for store in ('central', 'edge'):
        assert os.listdir(str(tmp_path / 'stores' / store / 'slices')) == []


def test_progress_says_that_the_download_resumed(served, image_request, registry, monkeypatch):
    """image_info's progress carries the last resume or restart as ``message`` while the transfer runs."""
    seen = []
    original = progress_module.Progress.note

    def note(self, message):
        original(self, message)
        seen.append(progress_module.read_progress(registry.directory, self.image_id))
    monkeypatch.setattr(progress_module.Progress, 'note', note)
    served.cuts['/disk.raw'] = [CUT]
    image_request(name='disk', src=served.url + '/disk.raw', stores=['central']).present(False)
    assert [snapshot['message'] for snapshot in seen] == ['download resumed from byte %d after: the connection closed after %d of %d bytes'
                                                          % (CUT, CUT, len(DATA))]
