# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running tests/lab/lab.py from the lab tests."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LAB = os.path.join(HERE, 'lab.py')
ROOT = os.path.dirname(os.path.dirname(HERE))


def lab_cmd(*args, check=True, timeout=1800):
    proc = subprocess.run([sys.executable, LAB] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, 'lab.py %s failed:\n%s\n%s' % (' '.join(args), proc.stdout, proc.stderr)
    return proc
