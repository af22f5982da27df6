# -*- coding: utf-8 -*-
"""An import run in a process of its own that stops at a chosen point, for tests that kill it there with SIGKILL.

    python killed_run.py REGISTRY NAME SRC STORE[,STORE...] POINT

POINT: ``record`` - the placeholder record is being written into a file store (its temporary file is there, the
record is not); ``slices:N`` - N slices are staged in a file store; ``remote:N`` - N slices are sent to a file
store over SSH; ``rbd:N`` - N slices are written into an rbd image. There it prints ``PAUSED <pid>`` and sleeps
until killed; a run that is not stopped prints ``DONE``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal
import subprocess
import sys
import threading
import time

from ansible_collections.vmimages.multistore.plugins.module_utils.common import fs
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.request import ImageRequest
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import file as file_store
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.registry import Registry

_PAUSED = threading.Lock()


def pause():
    if _PAUSED.acquire(False):
        sys.stdout.write('PAUSED %d\n' % os.getpid())
        sys.stdout.flush()
    while True:
        time.sleep(60)


def stop_at(point):
    if point == 'record':
        original = file_store.atomic_write

        def atomic_write(path, data, *args, **kwargs):
            if path.endswith('/record.json'):
                with open(fs.temp_name(path), 'wb') as handle:
                    handle.write(data)
                pause()
            return original(path, data, *args, **kwargs)
        file_store.atomic_write = atomic_write
        return
    kind, count = point.split(':')
    if kind == 'slices':
        writer_class = file_store.FileSliceWriter
    elif kind == 'remote':
        from ansible_collections.vmimages.multistore.plugins.module_utils.stores import ssh
        writer_class = ssh.RemoteSliceWriter
    else:
        from ansible_collections.vmimages.multistore.plugins.module_utils.stores import rbd_writer
        writer_class = rbd_writer.RbdSliceWriter
    original_put = writer_class.put
    puts = []

    def put(self, *args, **kwargs):
        written = original_put(self, *args, **kwargs)
        puts.append(written)
        if len(puts) >= int(count):
            if kind == 'rbd':
                self._wait(0)  # what was written so far reached the cluster, as it has after a while of writing
                self.image.flush()
            pause()
        return written
    writer_class.put = put


def start_paused(registry, name, src, stores, point):
    """Start the run in a process group of its own; return (Popen, pid) once it paused at ``point``."""
    argv = [sys.executable, os.path.abspath(__file__), registry.directory, name, src, ','.join(stores), point]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env,
                               start_new_session=True, universal_newlines=True)
    line = process.stdout.readline()
    assert line.startswith('PAUSED'), 'the run did not stop at %s: %r' % (point, line)
    return process, int(line.split()[1])


def kill_group(process):
    """SIGKILL to the run's whole process group (as when a job's cgroup or a terminal dies), not reaped:
    the caller decides when to wait() for it, so that its pid stays a zombie until then."""
    os.killpg(process.pid, signal.SIGKILL)
    deadline = time.time() + 10
    while time.time() < deadline:
        with open('/proc/%d/stat' % process.pid) as handle:
            if handle.read().rsplit(')', 1)[1].split()[0] == 'Z':
                return
        time.sleep(0.01)
    raise AssertionError('pid %d did not die' % process.pid)


def main(argv):
    registry, name, src, stores, point = argv[:5]
    stop_at(point)
    params = {'name': name, 'src': src, 'stores': stores.split(','), 'container_format': 'bare'}
    ImageRequest(Catalog(Registry(registry)), params).present(check_mode=False)
    sys.stdout.write('DONE\n')


if __name__ == '__main__':
    main(sys.argv[1:])
