# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/ceph: load the Ceph plugin (fixtures ceph_cluster, ceph_lab, rgw_down; marker `ceph`).

The plugin is imported as tests.ceph.pytest_ceph whatever the import mode, so that other test
directories importing it the same way share the one module (and the one cluster of the session).
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

# fixtures and pytest_configure (registers the `ceph` marker)
from tests.ceph.pytest_ceph import ceph_cluster, ceph_lab, pytest_configure, rgw_down  # noqa: E402

__all__ = ['ceph_cluster', 'ceph_lab', 'pytest_configure', 'rgw_down']
