# -*- coding: utf-8 -*-
"""The back ends' declarations (plugins/module_utils/backends/) and what must agree with them.

The store module's options are derived from the declarations; its documentation, the store_host role's
argument_specs, its per-type option lists and packages and its stores task are written by hand: these tests
prove they say the same as the declarations, so a new back end or option cannot be half added.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

import pytest
import yaml

from ansible_collections.vmimages.multistore.plugins.module_utils.backends import known
from ansible_collections.vmimages.multistore.plugins.module_utils.backends.backend import (
    CAPABILITIES, DEDUP_SLICES, RAW_ONLY, REFLINK, Backend, Option)
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import SECRET_KEYS, StoreDeclaration
from ansible_collections.vmimages.multistore.plugins.modules import store as store_module

ROOT = os.path.dirname(os.path.abspath(store_module.__file__)).rsplit(os.sep + 'plugins', 1)[0]
ROLE = os.path.join(ROOT, 'roles', 'store_host')


def _yaml(*parts):
    with open(os.path.join(*parts)) as stream:
        return yaml.safe_load(stream)


def _role_store_options():
    specs = _yaml(ROLE, 'meta', 'argument_specs.yml')['argument_specs']['main']['options']
    return specs['multistore_stores']['options'], specs['multistore_remote_stores']['options']


def _role_vars():
    return _yaml(ROLE, 'vars', 'main.yml')


def _local_options(backend):
    return set(name for name, option in backend.options.items() if not option.remote_only)


def test_the_store_modules_documentation_says_what_its_argument_spec_is():
    documented = yaml.safe_load(store_module.DOCUMENTATION)['options']
    spec = known.store_argument_spec()
    spec.update({'registry': {'type': 'path'}})  # from the registry doc fragment
    assert set(documented) | {'registry'} == set(spec)
    for name, option in documented.items():
        argument = spec[name]
        assert option.get('type', 'str') == argument.get('type', 'str'), name
        assert option.get('default') == argument.get('default'), name
        assert option.get('choices') == argument.get('choices'), name
        assert option.get('elements') == argument.get('elements'), name
    assert documented['type']['choices'] == list(known.BACKENDS)


def test_secrets_are_no_log_in_the_argument_spec_and_hidden_in_declarations():
    spec = known.store_argument_spec()
    secrets = [name for name, argument in spec.items() if argument.get('no_log')]
    assert sorted(secrets) == sorted(SECRET_KEYS) == ['password', 'secret_key']
    view = StoreDeclaration._view({'name': 's', 'type': 's3', 'secret_key': 'hush', 'access_key': 'ak'}, None)
    assert view['secret_key'] == '********' and view['access_key'] == 'ak'


def test_the_roles_argument_specs_take_every_option_of_every_back_end():
    local, remote = _role_store_options()
    assert local['type']['choices'] == list(known.BACKENDS)
    assert local['type']['default'] == known.DEFAULT_TYPE
    for backend in known.BACKENDS.values():
        for name, option in backend.options.items():
            where = remote if option.remote_only else local
            assert name in where, '%s option %s is missing from the role\'s argument_specs' % (backend.name, name)
            role_type = where[name].get('type', 'str')
            assert role_type in (option.type, 'str' if option.type == 'path' else option.type), (backend.name, name, role_type)
            assert bool(where[name].get('no_log')) == option.secret, (backend.name, name)
            if option.elements:
                assert where[name].get('elements') == option.elements


def test_the_roles_per_type_lists_and_packages_follow_the_back_ends():
    role_vars = _role_vars()
    per_type = role_vars['__multistore_store_type_options']
    packages = role_vars['__multistore_store_type_packages']
    required = role_vars['__multistore_store_type_required']
    assert set(per_type) == set(required) == set(known.BACKENDS)
    for backend in known.BACKENDS.values():
        assert set(per_type[backend.name]) == _local_options(backend), backend.name
        assert tuple(required[backend.name]) == backend.needs, backend.name
        assert tuple(packages.get(backend.name, ())) == backend.packages, backend.name


def test_the_roles_stores_task_passes_every_option_to_the_module():
    with open(os.path.join(ROLE, 'tasks', 'stores.yml')) as stream:
        tasks = yaml.safe_load(stream)
    local_task = [task for task in tasks if task.get('name') == 'Declare the stores of this host'][0]
    passed = set(local_task['vmimages.multistore.store'])
    for backend in known.BACKENDS.values():
        assert _local_options(backend) <= passed, (backend.name, sorted(_local_options(backend) - passed))
    assert set(known.COMMON_OPTIONS) <= passed


def test_capabilities_are_known_and_consistent():
    for backend in known.BACKENDS.values():
        assert backend.capabilities <= set(CAPABILITIES)
        assert not (backend.can(RAW_ONLY) and backend.can(DEDUP_SLICES)), 'a raw-only image store keeps whole images'
        assert set(backend.place_keys) <= set(backend.options), backend.name
        assert backend.location_form.startswith(backend.name + '://')
    with pytest.raises(ValueError, match='unknown capabilities'):
        Backend('x', (), ('teleport',), (), 'x://', None, None)


def test_a_file_store_on_another_host_cannot_reflink_from_here(tmp_path):
    file_backend = known.backend('file')
    local = file_backend.open('here', {'type': 'file', 'path': str(tmp_path)})
    assert local.can(REFLINK) and local.can(DEDUP_SLICES)
    assert file_backend.capabilities_of({'path': '/srv', 'host': 'edge1'}) == frozenset((DEDUP_SLICES,))


def test_a_local_file_stores_location_has_the_declared_form(tmp_path):
    store = known.backend('file').open('here', {'type': 'file', 'path': str(tmp_path)})
    form = re.escape(known.backend('file').location_form)
    pattern = form.replace(re.escape('[<host>]'), '(?:[^/]+)?').replace(re.escape('<path>'), re.escape(str(tmp_path)))
    pattern = pattern.replace(re.escape('<image-id>'), '[0-9a-f-]{36}')
    assert re.match('^%s$' % pattern, store.location('0b6e1f1e-4a51-4c4b-9b53-6f0b0e5d8c77'))


def test_back_ends_that_disagree_on_a_shared_option_are_refused(monkeypatch):
    odd = Backend('odd', (Option('user', type='int'),), (), (), 'odd://', None, None)
    monkeypatch.setitem(known.BACKENDS, 'odd', odd)
    with pytest.raises(ValueError, match='disagree on option user'):
        known.backend_options()


def test_a_back_end_may_not_redeclare_a_common_option(monkeypatch):
    odd = Backend('odd', (Option('zone'),), (), (), 'odd://', None, None)
    monkeypatch.setitem(known.BACKENDS, 'odd', odd)
    with pytest.raises(ValueError, match='common store option'):
        known.backend_options()
