# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/cinder: load the Ceph and the Cinder plugins (fixtures ceph_cluster, cinder_cloud, rabbitmq_down,
cinder_volume_down, ...; markers `ceph` and `cinder`).

Both are imported as tests.<dir>.pytest_<name> whatever the import mode, so that other test directories
importing them the same way share the modules (and the one Ceph cluster and Cinder lab of the session).
"""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

# fixtures; pytest_configure of the Cinder plugin registers both markers
from tests.ceph.pytest_ceph import ceph_cluster, ceph_lab, rgw_down  # noqa: E402
from tests.cinder.pytest_cinder import (cinder_cloud, cinder_lab, cinder_volume_down, pytest_configure,  # noqa: E402
                                        rabbitmq_down)

__all__ = ['ceph_cluster', 'ceph_lab', 'rgw_down', 'cinder_cloud', 'cinder_lab', 'cinder_volume_down',
           'pytest_configure', 'rabbitmq_down']
