# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Root pytest configuration: make this work tree importable as the collection.

Tests import the code the way Ansible does::

    from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import MultistoreError

For that, a directory holding ``ansible_collections/vmimages/multistore`` -> <repository root>
must be on sys.path. ``make setup`` makes one in .venv; when it is missing or points elsewhere
(pytest run from a checkout without ``make setup``), this file makes its own symlink tree in a
temporary directory. ANSIBLE_COLLECTIONS_PATH is set to the same tree (unless already set) so
that ansible-playbook/ansible-runner started from tests find the collection too.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMESPACE = 'vmimages'
NAME = 'multistore'


def _tree_ok(base):
    link = os.path.join(base, 'ansible_collections', NAMESPACE, NAME)
    try:
        return os.path.samefile(link, REPO_ROOT)
    except OSError:
        return False


def _collection_tree():
    """Return a directory whose ansible_collections/vmimages/multistore is this repository."""
    venv = os.path.join(REPO_ROOT, '.venv')
    if _tree_ok(venv):
        return venv

    digest = hashlib.sha256(REPO_ROOT.encode('utf-8')).hexdigest()[:12]
    base = os.path.join(tempfile.gettempdir(), 'vmimages-multistore-pytest-%d-%s' % (os.getuid(), digest))
    if not _tree_ok(base):
        parent = os.path.join(base, 'ansible_collections', NAMESPACE)
        if not os.path.isdir(parent):
            os.makedirs(parent)
        link = os.path.join(parent, NAME)
        tmp_link = '%s.%d' % (link, os.getpid())
        os.symlink(REPO_ROOT, tmp_link)
        os.rename(tmp_link, link)  # atomic replace: safe with parallel pytest runs
    return base


def _setup():
    base = _collection_tree()
    if base not in sys.path:
        sys.path.insert(0, base)
    default_paths = [base, os.path.expanduser('~/.ansible/collections'), '/usr/share/ansible/collections']
    os.environ.setdefault('ANSIBLE_COLLECTIONS_PATH', os.pathsep.join(default_paths))


_setup()
