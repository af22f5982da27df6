# -*- coding: utf-8 -*-
"""Sources: local files and http(s) URLs, read through their readers (file sources on tmp files, a real local HTTP server)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import hashlib
import os
import socket

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument, SourceError, SourceRestart
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer import pipeline, sources
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.sources import (
    HttpSource, LocalFileSource, make_source)

from image_files import slice_bytes

DATA = slice_bytes(7) + slice_bytes(8, 12345)  # one slice and a partial one


@contextlib.contextmanager
def opened(source):
    reader = source.open()
    try:
        yield reader
    finally:
        reader.close()


def read_all(reader, chunk=SLICE_SIZE):
    """Everything a reader yields, through read_into as the pipeline calls it."""
    out = bytearray()
    buffer = bytearray(chunk)
    while True:
        count = reader.read_into(memoryview(buffer))
        if not count:
            return bytes(out)
        out += buffer[:count]


def test_make_source_picks_by_form():
    assert isinstance(make_source('/srv/a.img'), LocalFileSource)
    source = make_source('https://example.org/a.img', validate_certs=False, timeout=5, headers={'X': '1'}, username='u', password='p')
    assert isinstance(source, HttpSource) and source.description == 'https://example.org/a.img'
    assert (source.validate_certs, source.timeout, source.headers, source.username, source.password) == (False, 5, {'X': '1'}, 'u', 'p')
    with pytest.raises(InvalidArgument, match=r"src 'ftp://host/a.img': only http://, https:// and absolute paths"):
        make_source('ftp://host/a.img')
    with pytest.raises(InvalidArgument, match="src 'images/a.img' is relative: give an absolute path"):
        make_source('images/a.img')


def test_local_file_reads_every_byte_and_knows_its_size(tmp_path):
    path = tmp_path / 'a.img'
    path.write_bytes(DATA)
    source = make_source(str(path))
    source.check()
    with opened(source) as reader:
        assert reader.expected_size == len(DATA) and reader.clone_fd == reader.handle.fileno()
        assert read_all(reader, chunk=1000) == DATA  # short reads are stitched together
        assert reader.read_into(memoryview(bytearray(10))) == 0  # the end stays the end
        reader.finish(len(DATA))
        with pytest.raises(SourceError, match='the source changed while it was read: 10 bytes read, %d expected' % len(DATA)):
            reader.finish(10)


def test_local_file_missing_or_not_a_file(tmp_path):
    with pytest.raises(SourceError, match='src %s does not exist or is not a regular file on this host' % (tmp_path / 'none')):
        LocalFileSource(str(tmp_path / 'none')).check()
    with pytest.raises(SourceError, match='is not a regular file'):
        LocalFileSource(str(tmp_path)).open()  # open() checks too: a directory is refused before it is opened


def test_local_file_modified_while_read_is_refused(tmp_path):
    path = tmp_path / 'a.img'
    path.write_bytes(DATA)
    with opened(LocalFileSource(str(path))) as reader:
        read_all(reader)
        stat = os.stat(str(path))
        os.utime(str(path), ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000000))  # same size, written meanwhile
        with pytest.raises(SourceError, match='it was modified meanwhile'):
            reader.finish(len(DATA))


def test_http_source_streams_the_served_bytes(http_server):
    http_server.files['/a.img'] = DATA
    with opened(make_source(http_server.url + '/a.img')) as reader:
        assert reader.expected_size == len(DATA)
        assert read_all(reader) == DATA
        reader.finish(len(DATA))


def test_http_digests_through_the_pipeline_equal_hashlib(http_server):
    http_server.files['/a.img'] = DATA
    with opened(make_source(http_server.url + '/a.img')) as reader:
        result = pipeline.run(reader, [], extra_algorithms=['sha256'])
    assert result.size == len(DATA)
    assert result.digests == {'md5': hashlib.md5(DATA).hexdigest(), 'sha512': hashlib.sha512(DATA).hexdigest(),
                              'sha256': hashlib.sha256(DATA).hexdigest()}


def test_http_redirects_are_followed(http_server):
    http_server.files['/real.img'] = DATA
    with opened(make_source(http_server.url + '/redirect?to=/real.img')) as reader:
        assert read_all(reader) == DATA
    assert http_server.requests == ['/redirect?to=/real.img', '/real.img']


def test_http_without_length_reads_to_the_end(http_server):
    http_server.files['/a.img'] = DATA
    with opened(make_source(http_server.url + '/nolength/a.img')) as reader:
        assert reader.expected_size is None
        assert read_all(reader) == DATA
        reader.finish(len(DATA))  # nothing announced, nothing to compare


@pytest.mark.parametrize('code, words', [(404, 'HTTP Error 404: Not Found'), (500, 'HTTP Error 500: Internal Server Error')])
def test_http_errors_name_the_url_and_the_status(http_server, code, words):
    url = '%s/status/%d' % (http_server.url, code)
    with pytest.raises(SourceError) as raised:
        make_source(url).open()
    assert str(raised.value) == 'cannot download %s: %s' % (url, words)


def test_http_connection_refused_is_a_clear_error():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens on this port now
    url = 'http://127.0.0.1:%d/a.img' % port
    with pytest.raises(SourceError, match=r'cannot download %s: .*Connection refused' % url):
        make_source(url).open()


def test_http_download_cut_without_validator_starts_over(http_server):
    """The server announces the length, sends half and closes, and names no ETag or Last-Modified: a Range request could
    splice two versions of the file, so the reader asks for a restart instead."""
    http_server.files['/a.img'] = DATA
    url = http_server.url + '/broken/a.img'
    with opened(make_source(url)) as reader:
        assert reader.expected_size == len(DATA)
        with pytest.raises(SourceRestart, match=r'download of %s was cut at byte %d \(the connection closed after %d of %d bytes\) and '
                           r'cannot resume: the server gives no ETag or Last-Modified' % (url, len(DATA) // 2, len(DATA) // 2, len(DATA))):
            read_all(reader)
    assert http_server.requests == ['/broken/a.img']  # no Range request without a validator


def test_http_download_that_stalls_without_validator_starts_over(http_server):
    """The server sends half, then nothing for longer than url_timeout: a clear error, not a hang."""
    http_server.files['/a.img'] = DATA
    url = http_server.url + '/stall/a.img'
    with opened(make_source(url, timeout=1)) as reader:
        with pytest.raises(SourceRestart, match=r'download of %s was cut at byte \d+ \(.*timed out\) and cannot resume' % url):
            read_all(reader)


@pytest.fixture
def quick_resumes(monkeypatch):
    monkeypatch.setattr(sources, 'RESUME_DELAY', 0.01)


def test_http_cut_mid_body_resumes_with_range_and_if_range(http_server, quick_resumes):
    http_server.files['/a.img'] = DATA
    http_server.cuts['/a.img'] = [SLICE_SIZE + 100, 5000]  # cut twice, the second time in the resumed answer
    source = make_source(http_server.url + '/a.img')
    with opened(source) as reader:
        assert read_all(reader) == DATA
        reader.finish(len(DATA))
    etag = '"%s"' % hashlib.sha1(DATA).hexdigest()[:16]
    assert http_server.ranges_seen == [(None, None), ('bytes=%d-' % (SLICE_SIZE + 100), etag), ('bytes=%d-' % (SLICE_SIZE + 5100), etag)]
    assert [entry['from'] for entry in source.resumes] == [SLICE_SIZE + 100, SLICE_SIZE + 5100]
    assert 'the connection closed after %d of %d bytes' % (SLICE_SIZE + 100, len(DATA)) == source.resumes[0]['why']
    assert source.summary().startswith('download resumed from byte %d (the connection closed' % (SLICE_SIZE + 100))


def test_http_stall_resumes_after_the_timeout(http_server, quick_resumes):
    http_server.files['/a.img'] = DATA
    http_server.stalls['/a.img'] = [1000]
    events = []
    source = make_source(http_server.url + '/a.img', timeout=1)
    source.listener = events.append
    with opened(source) as reader:
        # Small reads: a big one that times out loses what it had buffered (it is read again, from the last byte returned).
        assert read_all(reader, chunk=100) == DATA
    assert source.resumes[0]['from'] == 1000 and 'timed out' in source.resumes[0]['why']
    assert events == ['download resumed from byte 1000 after: %s' % source.resumes[0]['why']]


def test_http_server_ignoring_range_asks_for_a_restart(http_server, quick_resumes):
    http_server.files['/a.img'] = DATA
    http_server.ranges = False
    http_server.cuts['/a.img'] = [3000]
    url = http_server.url + '/a.img'
    with opened(make_source(url)) as reader:
        with pytest.raises(SourceRestart) as raised:
            read_all(reader)
    assert raised.value.at == 3000 and raised.value.reason == 'the server does not support ranges (it sent the whole file again)'
    assert 'download of %s was cut at byte 3000' % url in str(raised.value)


def test_http_file_changed_on_the_server_asks_for_a_restart(http_server, quick_resumes):
    http_server.files['/a.img'] = DATA
    changed = DATA[:-1] + b'!'
    http_server.cuts['/a.img'] = [3000]
    http_server.after_cut['/a.img'] = changed
    with opened(make_source(http_server.url + '/a.img')) as reader:
        with pytest.raises(SourceRestart) as raised:
            read_all(reader)
    old, new = ('"%s"' % hashlib.sha1(data).hexdigest()[:16] for data in (DATA, changed))
    assert raised.value.reason == 'the file changed on the server (ETag was %s, is now %s)' % (old, new)


def test_http_file_shorter_than_the_cut_asks_for_a_restart(http_server, quick_resumes):
    http_server.files['/a.img'] = DATA
    http_server.cuts['/a.img'] = [3000]
    http_server.after_cut['/a.img'] = DATA[:100]  # shorter than what arrived: the range is unsatisfiable (416)
    http_server.if_range = False  # a server that ignores If-Range answers with 416 instead of the new file
    with opened(make_source(http_server.url + '/a.img')) as reader:
        with pytest.raises(SourceRestart) as raised:
            read_all(reader)
    assert raised.value.reason == 'the server refused the range (416): the file is shorter now'


def test_http_cuts_without_progress_give_up(http_server, quick_resumes):
    http_server.files['/a.img'] = DATA
    http_server.cuts['/a.img'] = [3000] + [0] * 10
    url = http_server.url + '/a.img'
    with opened(make_source(url)) as reader:
        with pytest.raises(SourceError, match=r'download of %s broke off after some data at byte 3000 \(.*\), 5 times in a row without '
                           r'progress; nothing was stored, run again' % url):
            read_all(reader)
    assert len(http_server.requests) == 1 + sources.RESUME_LIMIT


def test_http_endless_body_stops_one_byte_past_size_cap(http_server):
    url = http_server.url + '/endless'
    with opened(make_source(url, size_cap=3 * SLICE_SIZE + 7)) as reader:
        with pytest.raises(SourceError, match=r'download of %s is larger than size_cap \(%d bytes\): it was stopped there and nothing '
                           'was stored' % (url, 3 * SLICE_SIZE + 7)):
            read_all(reader)
        assert reader.position == 3 * SLICE_SIZE + 8


def test_http_announced_length_over_size_cap_is_refused_unread(http_server):
    http_server.files['/a.img'] = DATA
    url = http_server.url + '/a.img'
    with pytest.raises(SourceError, match=r'download of %s announces %d bytes, more than size_cap \(100 bytes\): nothing was read'
                       % (url, len(DATA))):
        make_source(url, size_cap=100).open()


def test_local_file_over_size_cap_is_refused_unread(tmp_path):
    path = tmp_path / 'a.img'
    path.write_bytes(DATA)
    with pytest.raises(SourceError, match=r'src %s is %d bytes, more than size_cap \(100 bytes\)' % (path, len(DATA))):
        make_source(str(path), size_cap=100).open()


def test_http_truncated_count_is_refused(http_server):
    http_server.files['/a.img'] = DATA
    url = http_server.url + '/a.img'
    with opened(make_source(url)) as reader:
        with pytest.raises(SourceError, match='download of %s is truncated: 100 of %d bytes arrived' % (url, len(DATA))):
            reader.finish(100)


def test_http_basic_auth_and_headers(http_server):
    http_server.files['/a.img'] = DATA
    url = http_server.url + '/auth/a.img'
    with pytest.raises(SourceError, match='cannot download %s: HTTP Error 401' % url):
        make_source(url).open()
    with pytest.raises(SourceError, match='HTTP Error 401'):
        make_source(url, username='user', password='wrong').open()
    with opened(make_source(url, username='user', password='secret')) as reader:
        assert read_all(reader) == DATA
    with opened(make_source(http_server.url + '/headers', headers={'X-Image-Token': 'abc'})) as reader:
        assert b'"X-Image-Token": "abc"' in read_all(reader)


def test_http_check_fetches_nothing(http_server):
    make_source(http_server.url + '/a.img').check()  # check mode: the URL is not even asked for
    assert http_server.requests == []
