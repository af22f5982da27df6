# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live progress of an import or copy, readable by ``image_info`` from another process.

A running transfer writes one small JSON file per image beside the host's registry
(``<registry>/progress/<image id>.json``), replaced atomically at most every PERIOD seconds (no fsync:
it is a display, and a crash only leaves a file whose writer is dead, which readers ignore). The
file goes away when the transfer ends, whatever the outcome.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import threading
import time

from ansible_collections.vmimages.multistore.plugins.module_utils.common.clock import utc_now
from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import atomic_write, dump_json, makedirs, remove_file
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import _pid_alive

# image_info must see a change at least every second: write twice as often.
PERIOD = 0.5


def progress_path(registry_dir, image_id):
    return os.path.join(registry_dir, 'progress', '%s.json' % image_id)


class Progress:
    """What one transfer has done so far; ``advance`` is cheap, the file is written at most every PERIOD."""

    def __init__(self, registry_dir, image_id, stores, clock=time.monotonic):
        self.path = progress_path(registry_dir, image_id)
        self.image_id = image_id
        self.stores = list(stores)
        self.stores_done = 0
        self.bytes_done = 0
        self.bytes_total = None
        self.message = None  # what the transfer went through, in words (a download that resumed or started over)
        self.clock = clock
        self.started = clock()
        self.written_at = None
        self.disabled = False
        self._stop = threading.Event()
        self._ticker = None

    def start(self):
        """Rewrite the file every PERIOD even while no byte moves (a stalled download): rate and eta stay honest."""
        self._write(force=True)
        self._ticker = threading.Thread(target=self._tick)
        self._ticker.daemon = True
        self._ticker.start()
        return self

    def _tick(self):
        while not self._stop.wait(PERIOD):
            self._write(force=True)

    def set_total(self, total):
        self.bytes_total = total
        self._write(force=True)

    def advance_to(self, bytes_done):
        self.bytes_done = bytes_done if self.bytes_total is None else min(bytes_done, self.bytes_total)
        self._write()

    def note(self, message):
        self.message = message
        self._write(force=True)

    def store_done(self):
        self.stores_done += 1
        self._write(force=True)

    def snapshot(self):
        elapsed = max(self.clock() - self.started, 1e-6)
        rate = int(self.bytes_done / elapsed)
        eta = None
        if self.bytes_total is not None and rate > 0:
            eta = int(round((self.bytes_total - self.bytes_done) / float(rate)))
        return {'image_id': self.image_id, 'stores': self.stores, 'stores_done': self.stores_done,
                'stores_left': len(self.stores) - self.stores_done, 'bytes_done': self.bytes_done, 'bytes_total': self.bytes_total,
                'rate': rate, 'eta': eta, 'elapsed': int(elapsed), 'updated_at': utc_now(), 'pid': os.getpid(),
                'message': self.message}

    def _write(self, force=False):
        now = self.clock()
        if self.disabled or self._stop.is_set() or (not force and self.written_at is not None and now - self.written_at < PERIOD):
            return
        self.written_at = now
        try:
            makedirs(os.path.dirname(self.path), 0o700)
            atomic_write(self.path, dump_json(self.snapshot()), mode=0o600, sync=False)
        except (IOError, OSError):
            self.disabled = True  # a read-only registry must not fail the transfer: progress is only a display

    def close(self):
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        try:
            remove_file(self.path)
        except OSError:
            pass  # left behind: readers ignore a file whose writer is gone


def read_progress(registry_dir, image_id):
    """The progress of a transfer of ``image_id`` running now on this host, or None."""
    try:
        with open(progress_path(registry_dir, image_id)) as handle:
            data = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get('pid'), int) or not _pid_alive(data['pid']):
        return None  # its writer died: what it says is over
    data.pop('pid', None)
    data.pop('image_id', None)
    return data


def remove_dead_progress(registry_dir, max_age=60):
    """Remove the progress files of transfers whose process is gone (a run killed with -9 never reaches close()),
    and temporary files of a write cut short once ``max_age`` seconds old. ``store_cleanup`` calls it. Returns the
    names removed."""
    directory = os.path.join(registry_dir, 'progress')
    removed = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return removed
    for name in names:
        path = os.path.join(directory, name)
        if name.startswith('.'):
            try:
                dead = time.time() - os.lstat(path).st_mtime > max_age
            except OSError:
                continue
        elif name.endswith('.json'):
            try:
                with open(path) as handle:
                    pid = json.load(handle).get('pid')
            except (IOError, OSError, ValueError, AttributeError):
                pid = None
            dead = not isinstance(pid, int) or not _pid_alive(pid)
        else:
            continue
        if dead:
            try:
                remove_file(path)
                removed.append(name)
            except OSError:
                pass
    return removed
