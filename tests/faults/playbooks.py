# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running real ansible-playbook processes from the fault tests, and killing their whole process tree.

    run = start(play_text, workdir, extravars)   # ansible-playbook in a session of its own; returns a Run
    run.wait()                                   # -> Run with .rc, .output, .stats (per host), .results (per task)
    kill_tree(run.process.pid)                   # SIGKILL to every process of the run and to every group they made

The JSON callback gives each task's result and the play recap as data, not as text to parse.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK_BIN = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')


class Run:
    def __init__(self, process, path):
        self.process = process
        self.path = path
        self.rc = None
        self.output = ''
        self.data = None

    def wait(self, timeout=900):
        self.output = self.process.communicate(timeout=timeout)[0]
        self.rc = self.process.returncode
        start = self.output.find('{')
        try:
            self.data = json.loads(self.output[start:]) if start >= 0 else None
        except ValueError:
            self.data = None
        return self

    @property
    def stats(self):
        return (self.data or {}).get('stats', {})

    @property
    def results(self):
        """[(task name, result on localhost)] in the order the tasks ran."""
        found = []
        for play in (self.data or {}).get('plays', []):
            for task in play.get('tasks', []):
                for result in task.get('hosts', {}).values():
                    found.append((task['task']['name'], result))
        return found

    def changed_tasks(self):
        return [name for name, result in self.results if result.get('changed')]

    def failures(self):
        return [(name, result.get('msg')) for name, result in self.results if result.get('failed')]

    def describe(self):
        return 'ansible-playbook rc=%s; failures: %r\n%s' % (self.rc, self.failures(), self.output[-4000:])


def start(play_text, workdir, extravars=None, name='play.yml'):
    """ansible-playbook on localhost (local connection, the venv's python) in a new session."""
    path = os.path.join(workdir, name)
    with open(path, 'w') as handle:
        handle.write(play_text)
    vars_path = path + '.vars.json'
    with open(vars_path, 'w') as handle:
        json.dump(dict(extravars or {}, ansible_python_interpreter=sys.executable), handle)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json',
               ANSIBLE_NOCOLOR='1', ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
               ANSIBLE_LOCAL_TEMP=os.path.join(workdir, '.ansible-tmp'))
    argv = [PLAYBOOK_BIN, '-i', 'localhost,', '-c', 'local', path, '-e', '@' + vars_path]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                               env=env, cwd=workdir, start_new_session=True)
    return Run(process, path)


def run(play_text, workdir, extravars=None, name='play.yml', timeout=900):
    return start(play_text, workdir, extravars, name).wait(timeout)


def _parent_of(pid):
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return int(handle.read().rsplit(')', 1)[1].split()[1])
    except (IOError, OSError, ValueError, IndexError):
        return None


def descendants(root):
    """root and every process below it, as /proc shows them now."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            parent = _parent_of(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def processes_running(pattern):
    """pids whose command line contains ``pattern`` (bytes)."""
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                    if pattern in handle.read():
                        found.append(int(entry))
            except (IOError, OSError):
                pass
    return found


def kill_tree(root):
    """SIGKILL the run: stop every process of the tree first (so none forks or leaves while it is collected; a
    worker that called setsid is still a descendant), then SIGKILL each one and every process group they lead."""
    stopped = set()
    while True:
        new = [pid for pid in descendants(root) if pid not in stopped]
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
            stopped.add(pid)
    groups = set()
    for pid in stopped:
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            pass
    groups.discard(os.getpgrp())
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return sorted(stopped)


def wait_for(predicate, timeout, interval=0.005):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None
