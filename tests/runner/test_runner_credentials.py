# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWX credential types of extensions/awx/credential_types/ and secrets under ansible-runner.

- each credential type is checked for AWX's format and against the store_host role: every injected extra var is
  a documented role variable, a field that feeds a no_log variable (or a file) is `secret: true`, no secret goes
  to the job's environment;
- the injectors are rendered as AWX renders them (RunnerJob.awx_inject) and the store_host role runs with what
  they inject, through ansible-runner: the Ceph keyring is written with the injected key (0600), the s3 and swift
  stores and a remote file store (key or password) are declared with the injected credentials against endpoints
  that do not listen (a clear error), and no secret shows in any event or artifact file;
- a job with an image url_password (a real http server on 127.0.0.1) and an s3 secret_key from extra vars: no
  secret in any event or artifact (stdout, job_events, fact cache, command).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import re
import stat
import subprocess

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CREDENTIAL_TYPES = os.path.join(ROOT, 'extensions', 'awx', 'credential_types')
ARGUMENT_SPECS = os.path.join(ROOT, 'roles', 'store_host', 'meta', 'argument_specs.yml')
NO_LOG_CENSORED = 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
FIELD_TYPES = ('string', 'boolean')

ROLE_PLAY = """\
- name: Prepare the controller as a store host, with the credentials of the job
  hosts: localhost
  gather_facts: false
  roles:
    - role: vmimages.multistore.store_host
"""

# tasks after the store `central` is declared (RunnerJob.add_store_play)
SECRETS_TASKS = """\
    - name: Import an image over http with basic authentication
      vmimages.multistore.image:
        name: with-password
        src: "{{ url }}"
        checksum: "sha256:{{ sha256 }}"
        disk_format: raw
        stores: [central]
        url_username: images
        url_password: "{{ download_password }}"
      register: imported

    - name: Check the import
      ansible.builtin.assert:
        that: imported.image.status == 'active'

    - name: Declare an s3 store whose endpoint does not listen
      vmimages.multistore.store:
        name: archive
        type: s3
        endpoint: "{{ s3_endpoint }}"
        bucket: vm-images
        access_key: AKIAVMIMAGESTEST
        secret_key: "{{ s3_secret }}"
"""


def load_types():
    types = {}
    for path in sorted(glob.glob(os.path.join(CREDENTIAL_TYPES, '*.yml'))):
        with open(path) as handle:
            types[os.path.basename(path)[:-4]] = yaml.safe_load(handle)
    return types


def role_options():
    with open(ARGUMENT_SPECS) as handle:
        return yaml.safe_load(handle)['argument_specs']['main']['options']


def referenced_fields(template, field_ids):
    return set(name for name in re.findall(r'[A-Za-z_][A-Za-z0-9_]*', template) if name in field_ids)


def test_credential_types_are_valid_for_awx_and_the_role():
    types = load_types()
    assert set(types) >= {'s3_keys', 'swift_keys', 'ceph_keyring', 'store_ssh'}, sorted(types)
    options = role_options()
    names = set()
    for name, ctype in types.items():
        assert set(ctype) <= {'name', 'description', 'kind', 'inputs', 'injectors'}, name
        assert ctype['name'] not in names and ctype['name'].startswith('vmimages.multistore '), name
        names.add(ctype['name'])
        assert ctype['description'] and ctype['kind'] == 'cloud', name
        fields = ctype['inputs']['fields']
        ids = [field['id'] for field in fields]
        assert len(set(ids)) == len(ids), name
        for field in fields:
            assert set(field) <= {'id', 'label', 'type', 'secret', 'multiline', 'format', 'help_text', 'default', 'choices'}, field
            assert field['label'] and field['type'] in FIELD_TYPES, field
            assert re.match(r'^[a-z][a-z0-9_]*$', field['id']), field
        assert set(ctype['inputs'].get('required', [])) <= set(ids), name
        secret = set(field['id'] for field in fields if field.get('secret'))
        for field in fields:
            if field.get('format') == 'ssh_private_key':
                assert field['id'] in secret, '%s: %s is a private key' % (name, field['id'])

        injectors = ctype['injectors']
        assert set(injectors) <= {'extra_vars', 'env', 'file'} and injectors, name
        # every extra var is a documented variable of the store_host role; one fed by a field is no_log
        # exactly when the field is secret
        for var, template in injectors.get('extra_vars', {}).items():
            assert var in options, '%s injects %s, not a variable of the store_host role' % (name, var)
            assert isinstance(template, str)
            used = referenced_fields(template, ids)
            assert used, '%s: %s uses no field' % (name, var)
            if options[var].get('no_log'):
                assert used & secret, '%s: %s is no_log in the role but fed by no secret field' % (name, var)
            if used & secret and not options[var].get('no_log'):
                # a secret may reach a non-secret variable only as a file name (the file holds the secret)
                assert re.search(r'(tower|awx)\.filename', template), '%s: %s would show a secret' % (name, var)
            if re.search(r'(tower|awx)\.filename', template):
                assert injectors.get('file'), '%s: %s names a file no injector writes' % (name, var)
        # no secret in the job's environment: ansible-runner writes the environment to artifacts/<job>/command
        for var, template in injectors.get('env', {}).items():
            assert not referenced_fields(template, ids) & secret, '%s: env %s holds a secret' % (name, var)
        for label, template in injectors.get('file', {}).items():
            assert label == 'template' or label.startswith('template.'), label
            assert referenced_fields(template, ids), label
        # every secret field is injected somewhere
        injected = set()
        for template in list(injectors.get('extra_vars', {}).values()) + list(injectors.get('file', {}).values()):
            injected |= referenced_fields(template, ids)
        assert secret <= injected, name
        assert injected == set(ids), '%s: fields never injected: %s' % (name, set(ids) - injected)


@pytest.fixture
def ssh_keys(tmp_path):
    """Three ed25519 keys: the credential's, and the host keys of localhost and of the 'store host'."""
    keys = {}
    for name in ('credential', 'host_local', 'host_store'):
        path = str(tmp_path / ('key_' + name))
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path], check=True,
                       stdin=subprocess.DEVNULL)
        keys[name] = path
    return keys


def read(path):
    with open(path) as handle:
        return handle.read()


def test_credentials_injected_as_awx_does_reach_the_role_and_never_show(runner_job, ssh_keys, as_root):
    types = load_types()
    runner_job.add_playbook('store_host.yml', ROLE_PLAY)
    # a second inventory host owning the remote store (local connection: its host key file is another one)
    runner_job.hosts['localhost']['multistore_host_key'] = ssh_keys['host_local'] + '.pub'
    runner_job.add_host('storehost', multistore_host_key=ssh_keys['host_store'] + '.pub')
    closed = 'http://127.0.0.1:9'

    inputs = {
        's3_keys': {'access_key': 'AKIAINJECTEDBYAWX', 'secret_key': 'S3-secret-from-awx-0f1e2d3c'},
        'swift_keys': {'user': 'images:glance', 'key': 'Swift-key-from-awx-4b5a6978'},
        'ceph_keyring': {'user': 'client.glance', 'key': 'AQBvbW1vbnN0b3JlLWtleS1mcm9tLWF3eA=='},
    }
    secrets = {'s3 secret': inputs['s3_keys']['secret_key'], 'swift key': inputs['swift_keys']['key'],
               'ceph key': inputs['ceph_keyring']['key']}
    cmdline = []
    for name, values in inputs.items():
        extra_vars, env, _files, line = runner_job.awx_inject(types[name], values)
        assert not env and line
        cmdline.append(line)
    assert extra_vars == {'multistore_ceph_client_user': 'client.glance', 'multistore_ceph_client_key': secrets['ceph key']}

    # three jobs at once (each its own private data dir, as AWX runs jobs side by side):
    # 1. Ceph keyring, s3 and swift stores from the credentials (the stores' endpoints do not listen)
    one_vars = runner_job.store_host_vars('one')
    fsid = '6a6ac539-7795-4827-95d7-6180d2dbbccf'
    one_vars.update({
        'multistore_ceph_clusters': [{'name': 'ceph', 'fsid': fsid, 'mon_host': '127.0.0.1:9'}],
        'multistore_stores': [
            {'name': 'archive', 'type': 's3', 'endpoint': closed, 'bucket': 'vm-images'},
            {'name': 'objects', 'type': 'swift', 'endpoint': closed + '/auth/1.0', 'container': 'vm-images'},
        ],
    })
    one = runner_job.start('store_host.yml', one_vars, cmdline=' '.join(cmdline))

    # 2. a remote file store reached with the credential's private key (copied to the host, 0600)
    with open(ssh_keys['credential']) as handle:
        private_key = handle.read()
    job_two = runner_job.another('job-two')
    _vars, env, files, line = job_two.awx_inject(types['store_ssh'], {'username': 'imgsync', 'ssh_key_data': private_key})
    assert not env and list(files) == ['template'] and read(files['template']) == private_key
    remote = [{'name': 'central', 'path': '/srv/central', 'host': '127.0.0.1', 'port': 9, 'inventory_host': 'storehost'}]
    two_vars = dict(runner_job.store_host_vars('two'), multistore_remote_stores=remote)
    two = job_two.start('store_host.yml', two_vars, cmdline=line)

    # 3. the same store with the credential's password instead
    job_three = runner_job.another('job-three')
    _vars, env, files, line = job_three.awx_inject(types['store_ssh'], {'password': 'Ssh-password-from-awx-77aa'})
    three_vars = dict(runner_job.store_host_vars('three'), multistore_remote_stores=remote)
    three = job_three.start('store_host.yml', three_vars, cmdline=line)

    job = runner_job.finish(one, expect='failed')
    conf_dir = one_vars['multistore_ceph_conf_dir']
    keyring = os.path.join(conf_dir, 'ceph.client.glance.keyring')
    assert read(keyring) == '[client.glance]\n\tkey = %s\n' % secrets['ceph key']
    assert stat.S_IMODE(os.stat(keyring).st_mode) == 0o600
    assert 'keyring = %s/ceph.$name.keyring' % conf_dir in read(os.path.join(conf_dir, 'ceph.conf'))
    failed = job.results('runner_item_on_failed', module='store')
    assert len(failed) == 2, job.explain()
    s3, swift = (data['res'] for data in failed)
    assert 'cannot reach' in s3['msg'] and '127.0.0.1:9' in s3['msg'], s3['msg']
    assert s3['invocation']['module_args']['access_key'] == 'AKIAINJECTEDBYAWX'
    assert s3['invocation']['module_args']['secret_key'] == NO_LOG_CENSORED
    assert swift['invocation']['module_args']['access_key'] == 'images:glance'
    assert swift['invocation']['module_args']['secret_key'] == NO_LOG_CENSORED
    assert swift['msg'], swift
    job.assert_no_secret(secrets)

    job = runner_job.finish(two, expect='failed')
    copied = two_vars['multistore_remote_private_key_path']
    assert read(copied) == private_key and stat.S_IMODE(os.stat(copied).st_mode) == 0o600
    failed = job.results('runner_item_on_failed', module='store')
    assert len(failed) == 1, job.explain()
    args = failed[0]['res']['invocation']['module_args']
    assert (args['host'], args['port'], args['user'], args['private_key'], args['password']) == (
        '127.0.0.1', 9, 'imgsync', copied, None)
    assert failed[0]['res']['msg']
    # the sync key was not authorized anywhere: the store uses the credential's key
    assert not [e for e in job.named('runner_on_ok', 'runner_item_on_ok')
                if e['event_data'].get('resolved_action') == 'ansible.posix.authorized_key' and e['event_data']['res'].get('changed')]
    key_body = ''.join(private_key.strip().splitlines()[1:-1])
    job.assert_no_secret({'private key': key_body[:40]})

    job = runner_job.finish(three, expect='failed')
    failed = job.results('runner_item_on_failed', module='store')
    assert len(failed) == 1, job.explain()
    args = failed[0]['res']['invocation']['module_args']
    assert (args['user'], args['password'], args['private_key']) == ('root', NO_LOG_CENSORED, None)
    assert not os.path.exists(three_vars['multistore_remote_private_key_path'])
    job.assert_no_secret({'ssh password': 'Ssh-password-from-awx-77aa'})


def test_no_secret_in_events_or_artifacts(runner_job, http_server):
    """An image url_password (a real http server on 127.0.0.1) and an s3 secret_key from the job's extra vars; the
    keyring key through the store_host role's keyring task is the previous test's job one."""
    www, url, closed_port = http_server
    work = os.path.join(runner_job.base, 'secrets')
    os.makedirs(work)
    sha256 = runner_job.make_image(os.path.join(www, 'disk.raw'), 2)
    runner_job.add_store_play('secrets.yml', 'A job whose tasks get secrets from extra vars', SECRETS_TASKS, gather_facts=True)
    secrets = {'download password': 'Http-basic-password-5e6f', 's3 secret key': 'S3-secret-key-in-extravars-9a8b'}
    variables = {
        'work': work, 'url': url + '/disk.raw', 'sha256': sha256, 'download_password': secrets['download password'],
        's3_endpoint': 'http://127.0.0.1:%d' % closed_port, 's3_secret': secrets['s3 secret key'],
    }
    job = runner_job.run('secrets.yml', variables, expect='failed')

    image = job.results(module='image')
    assert len(image) == 1 and image[0]['res']['image']['status'] == 'active', job.explain()
    assert image[0]['res']['invocation']['module_args']['url_password'] == NO_LOG_CENSORED
    failed = job.named('runner_on_failed')
    assert len(failed) == 1 and failed[0]['event_data']['task'] == 'Declare an s3 store whose endpoint does not listen'
    res = failed[0]['event_data']['res']
    assert 'cannot reach' in res['msg'] and res['invocation']['module_args']['secret_key'] == NO_LOG_CENSORED, res

    files = job.assert_no_secret(secrets)
    relative = [os.path.relpath(path, job.artifact_dir) for path in files]
    # what was searched: stdout, the job events, the fact cache (gather_facts), the command with the environment
    assert 'stdout' in relative and 'command' in relative, relative
    assert [path for path in relative if path.startswith('fact_cache' + os.sep)], relative
    assert len([path for path in relative if path.startswith('job_events' + os.sep)]) == len(job.events)
