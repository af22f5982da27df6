# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/runner: the collection's playbooks run by ansible-runner, as AWX runs a job.

Fixture ``runner_job`` builds a private data dir the way AWX lays it out for a job:

    inventory/hosts      localhost (ansible_connection=local, the venv's python) [+ more hosts a test adds]
    project/             a copy of the repository's playbooks/ (AWX checks the project out) [+ a test's own plays]
    env/envvars          ANSIBLE_COLLECTIONS_PATH as ansible.cfg sets it (the venv's tree), PATH, TMPDIR
    env/extravars        the job's extra vars (mode 0600)
    env/settings         timeouts, no output on the test's stdout
    artifacts/<ident>/   written by ansible-runner: stdout, job_events/*.json, fact_cache/, command, status, rc

and runs ``ansible_runner.run(private_data_dir=..., playbook=...)``. The result object keeps the runner and
offers the events by name, the module results, the stats, and a walk over every artifact file (for the
no-secret checks). Credential injection is emulated as AWX does it (``awx_inject``): files rendered into
env/ (0600), extra vars in a ``-e @env/tmpXXXX`` file (values tagged ``!unsafe``), env vars in the job's env.

Fixture ``http_server`` serves a directory on 127.0.0.1 with the integration tests' server
(tests/integration/targets/setup_multistore/files/http_server.py: ``/slow/NAME`` sends a file at about 4 MiB/s).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import yaml

ansible_runner = pytest.importorskip('ansible_runner')
sandbox = pytest.importorskip('jinja2.sandbox')

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.join(ROOT, '.venv')
PYTHON = os.path.join(VENV, 'bin', 'python')
PLAYBOOKS = os.path.join(ROOT, 'playbooks')
HTTP_SERVER = os.path.join(ROOT, 'tests', 'integration', 'targets', 'setup_multistore', 'files', 'http_server.py')
# ansible.cfg: collections_path = .venv:~/.ansible/collections:/usr/share/ansible/collections
COLLECTIONS_PATH = os.pathsep.join([VENV, os.path.expanduser('~/.ansible/collections'), '/usr/share/ansible/collections'])


# The start of the tests' own plays: localhost, a registry and a file store `central` under the extra var `work`.
STORE_PLAY = """\
- name: %(title)s
  hosts: localhost
  gather_facts: %(gather_facts)s
  module_defaults:
    group/vmimages.multistore.multistore:
      registry: "{{ work }}/registry"
  tasks:
    - name: Declare a store
      vmimages.multistore.store:
        name: central
        path: "{{ work }}/stores/central"

"""


class UnsafeDumper(yaml.SafeDumper):
    """Dumps every string as `!unsafe`, as AWX writes the extra vars a credential injects."""


def _represent_unsafe(dumper, data):
    return dumper.represent_scalar('!unsafe', data)


UnsafeDumper.add_representer(str, _represent_unsafe)


class JobResult:
    """One ansible-runner job: the Runner object and helpers over its events and artifacts."""

    def __init__(self, runner):
        self.runner = runner
        self.status = runner.status
        self.rc = runner.rc
        self.events = list(runner.events)
        self.artifact_dir = runner.config.artifact_dir

    def stdout(self):
        with open(os.path.join(self.artifact_dir, 'stdout')) as handle:
            return handle.read()

    def named(self, *names):
        return [event for event in self.events if event.get('event') in names]

    def results(self, event_name='runner_on_ok', module=None):
        """event_data of `event_name` events, only those of `module` (short name, our collection) if given."""
        found = []
        for event in self.named(event_name):
            data = event.get('event_data', {})
            if module is None or data.get('resolved_action') == 'vmimages.multistore.' + module:
                found.append(data)
        return found

    def stats(self):
        stats = self.named('playbook_on_stats')
        assert len(stats) == 1, 'expected one playbook_on_stats event, got %d' % len(stats)
        return stats[0]['event_data']

    def explain(self):
        """The end of the job's stdout, for assertion messages."""
        return 'status %s, rc %s, artifacts %s\n%s' % (self.status, self.rc, self.artifact_dir, self.stdout()[-12000:])

    def artifact_files(self):
        """Every file ansible-runner wrote for this job (stdout, job_events/*.json, fact_cache/*, command, ...)."""
        paths = []
        for top, _dirs, files in os.walk(self.artifact_dir):
            paths.extend(os.path.join(top, name) for name in files)
        return sorted(paths)

    def assert_no_secret(self, secrets):
        """No secret in any event (as the Runner returns them) nor in any artifact file."""
        assert secrets and all(len(value) >= 8 for value in secrets.values())
        found = []
        events_text = json.dumps(self.events)
        found.extend('%s in runner.events' % what for what, value in secrets.items() if value in events_text)
        files = self.artifact_files()
        assert any(path.endswith('stdout') for path in files)
        assert any('/job_events/' in path for path in files)
        for path in files:
            with open(path, 'rb') as handle:
                data = handle.read()
            found.extend('%s in %s' % (what, os.path.relpath(path, self.artifact_dir))
                         for what, value in secrets.items() if value.encode('utf-8') in data)
        assert not found, 'secrets leaked: %s' % ', '.join(found)
        return files


class RunnerJob:
    """A private data dir like the one AWX builds for a job."""

    def __init__(self, base):
        self.base = base
        self.data_dir = os.path.join(base, 'runner')
        self.project = os.path.join(self.data_dir, 'project')
        self.env_dir = os.path.join(self.data_dir, 'env')
        self.tmp = os.path.join(base, 'tmp')
        os.makedirs(os.path.join(self.data_dir, 'inventory'))
        os.makedirs(self.env_dir)
        os.makedirs(self.tmp)
        shutil.copytree(PLAYBOOKS, self.project)
        self.hosts = {'localhost': {'ansible_connection': 'local', 'ansible_python_interpreter': PYTHON}}
        self.groups = {}
        self._write_inventory()
        self._write_yaml('envvars', {
            'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS_PATH,
            'PATH': os.pathsep.join([os.path.join(VENV, 'bin'), os.environ.get('PATH', '/usr/bin:/bin')]),
            'TMPDIR': self.tmp,
            'ANSIBLE_LOCALHOST_WARNING': 'False',
            'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'False',
        })
        self._write_yaml('settings', {'job_timeout': 600, 'idle_timeout': 300, 'suppress_ansible_output': True})
        self._write_yaml('extravars', {})

    def _write_yaml(self, name, data, dumper=yaml.SafeDumper):
        path = os.path.join(self.env_dir, name)
        with open(path, 'w') as handle:
            os.fchmod(handle.fileno(), 0o600)
            yaml.dump(data, handle, Dumper=dumper, default_flow_style=False)
        return path

    def _write_inventory(self):
        lines = []
        for host, variables in self.hosts.items():
            lines.append(' '.join([host] + ['%s=%s' % (key, value) for key, value in sorted(variables.items())]))
        for group, members in sorted(self.groups.items()):
            lines.extend(['', '[%s]' % group] + list(members))
        with open(os.path.join(self.data_dir, 'inventory', 'hosts'), 'w') as handle:
            handle.write('\n'.join(lines) + '\n')

    def add_host(self, name, groups=(), **variables):
        """One more inventory host (local connection, the venv's python) with `variables`, in `groups`."""
        self.hosts[name] = dict({'ansible_connection': 'local', 'ansible_python_interpreter': PYTHON}, **variables)
        self.set_groups(name, groups)

    def set_groups(self, name, groups):
        for group in groups:
            self.groups.setdefault(group, [])
            if name not in self.groups[group]:
                self.groups[group].append(name)
        self._write_inventory()

    def add_playbook(self, name, text):
        with open(os.path.join(self.project, name), 'w') as handle:
            handle.write(text)
        return name

    def add_store_play(self, name, title, tasks, gather_facts=False):
        """A play on localhost that declares the store `central` under `work`, then runs `tasks` (YAML, indented)."""
        return self.add_playbook(name, STORE_PLAY % {'title': title, 'gather_facts': str(gather_facts).lower()} + tasks)

    def awx_inject(self, credential_type, inputs):
        """Render a custom credential type's injectors with `inputs` as AWX does (CredentialType.inject_credential):
        file templates into env/tmpXXXX (0600) with tower.filename/awx.filename pointing at them, env vars
        rendered, extra vars rendered and written (as !unsafe) to an env/tmpXXXX file given with `-e @file`.
        Returns (extra_vars, env, files, cmdline)."""
        env = sandbox.ImmutableSandboxedEnvironment()
        namespace = dict((key, value) for key, value in inputs.items() if isinstance(value, bool) or len(value))
        for field in credential_type['inputs'].get('fields', []):
            if field.get('type') == 'boolean' and field['id'] not in inputs:
                namespace[field['id']] = False
            if field.get('format') == 'ssh_private_key' and field['id'] in namespace \
                    and not namespace[field['id']].endswith('\n'):
                namespace[field['id']] += '\n'
        injectors = credential_type.get('injectors', {})
        filenames = {}
        files = {}
        for label, template in injectors.get('file', {}).items():
            handle, path = tempfile.mkstemp(dir=self.env_dir)
            with os.fdopen(handle, 'w') as out:
                out.write(env.from_string(template).render(**namespace))
            os.chmod(path, 0o600)
            files[label] = path
            if '.' in label:
                filenames.setdefault('filename', {})[label.split('.', 1)[1]] = path
            else:
                filenames['filename'] = path
        namespace['tower'] = namespace['awx'] = filenames
        rendered_env = dict((name, env.from_string(template).render(**namespace))
                            for name, template in injectors.get('env', {}).items())

        def build(node):
            if isinstance(node, dict):
                return dict((build(key), build(value)) for key, value in node.items())
            if isinstance(node, list):
                return [build(value) for value in node]
            return env.from_string(node).render(**namespace)

        extra_vars = build(injectors.get('extra_vars', {}))
        cmdline = ''
        if extra_vars:
            handle, path = tempfile.mkstemp(dir=self.env_dir)
            with os.fdopen(handle, 'w') as out:
                yaml.dump(extra_vars, out, Dumper=UnsafeDumper, default_flow_style=False)
            os.chmod(path, 0o400)
            cmdline = '-e @%s' % path
        return extra_vars, rendered_env, files, cmdline

    @staticmethod
    def make_image(path, mib):
        """A raw disk image with `mib` MiB of random data; returns its sha256."""
        subprocess.run(['dd', 'if=/dev/urandom', 'of=' + path, 'bs=1M', 'count=%d' % mib, 'status=none'], check=True)
        out = subprocess.run(['sha256sum', path], check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
        return out.split()[0]

    def store_host_vars(self, name='host'):
        """store_host role variables that keep everything it writes under base/NAME (as tests/ceph does) and touch
        nothing else of the machine: no package, filesystem or network; the agent, sync key and known_hosts there."""
        work = os.path.join(self.base, name)
        return {
            'multistore_install_packages': False,
            'multistore_apt_update_cache': False,
            'multistore_filesystems': [],
            'multistore_networks': {},
            'multistore_registry': os.path.join(work, 'registry'),
            'multistore_ceph_conf_dir': os.path.join(work, 'ceph'),
            'multistore_agent_library': os.path.join(work, 'agent', 'lib'),
            'multistore_agent_command': os.path.join(work, 'agent', 'vmimages-multistore-agent'),
            'multistore_sync_key': os.path.join(work, 'ssh', 'vmimages_multistore_sync'),
            'multistore_known_hosts': os.path.join(work, 'known_hosts', 'known_hosts'),
            'multistore_remote_private_key_path': os.path.join(work, 'ssh', 'vmimages_multistore_remote'),
        }

    def another(self, name):
        """A second private data dir (base/NAME) with the same inventory, for a job that runs at the same time."""
        job = RunnerJob(os.path.join(self.base, name))
        job.hosts = dict((host, dict(variables)) for host, variables in self.hosts.items())
        job.groups = dict((group, list(members)) for group, members in self.groups.items())
        job._write_inventory()
        for playbook in os.listdir(self.project):
            if not os.path.exists(os.path.join(job.project, playbook)):
                shutil.copy(os.path.join(self.project, playbook), job.project)
        return job

    def _kwargs(self, playbook, extravars, envvars, cmdline):
        self._write_yaml('extravars', extravars or {})
        kwargs = {'private_data_dir': self.data_dir, 'playbook': playbook, 'ident': uuid.uuid4().hex, 'quiet': True}
        if envvars:
            kwargs['envvars'] = envvars
        if cmdline:
            kwargs['cmdline'] = cmdline
        return kwargs

    def run(self, playbook, extravars=None, envvars=None, cmdline=None, expect='successful'):
        """Run `playbook` (a name under project/) and return a JobResult; `expect` is the status it must end with."""
        result = JobResult(ansible_runner.run(**self._kwargs(playbook, extravars, envvars, cmdline)))
        if expect is not None:
            assert result.status == expect, result.explain()
        return result

    def start(self, playbook, extravars=None, envvars=None, cmdline=None):
        """Start `playbook` in the background (ansible_runner.run_async); finish(started) waits for it."""
        return ansible_runner.run_async(**self._kwargs(playbook, extravars, envvars, cmdline))

    @staticmethod
    def finish(started, expect='successful', timeout=600):
        thread, runner = started
        thread.join(timeout)
        assert not thread.is_alive(), 'the job did not end within %d s' % timeout
        result = JobResult(runner)
        if expect is not None:
            assert result.status == expect, result.explain()
        return result


@pytest.fixture
def runner_job(tmp_path):
    return RunnerJob(str(tmp_path))


@pytest.fixture
def http_server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (www directory, base URL, closed port)."""
    www = tmp_path / 'www'
    www.mkdir()
    info_file = str(tmp_path / 'http.json')
    log = open(str(tmp_path / 'http.log'), 'w')
    proc = subprocess.Popen([sys.executable, HTTP_SERVER, str(www), info_file, '300'],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while not os.path.exists(info_file):
            assert proc.poll() is None and time.time() < deadline, 'the http server did not start'
            time.sleep(0.05)
        with open(info_file) as handle:
            info = json.load(handle)
        yield str(www), 'http://127.0.0.1:%d' % info['port'], info['closed_port']
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def as_root():
    if os.geteuid() != 0:
        pytest.skip('the store_host role runs as root (it sets root ownership)')
