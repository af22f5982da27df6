# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline stand-in for ansible-test's pip bootstrap script (vmimages-multistore-get-pip).

ansible-test creates one virtual environment per sanity test (``--without-pip``) and then runs a
``get-pip.py`` that it downloads from Ansible's CI file server, which this project's machines
cannot reach.  ansible-test looks for the script in ``~/.ansible/test/cache/get_pip_<version>.py``
first; ``scripts/run-sanity.sh`` copies this file there.

Like get-pip.py it is run as ``python get_pip_X_Y.py [pip options] pip==X.Y [--no-setuptools]
[--no-wheel]`` by the new environment's interpreter.  Instead of a pip bundled in the script it
bootstraps the pip wheel that the interpreter ships (``ensurepip``, Debian's python3-venv), then
installs the requested packages (the exact pip version ansible-test pins) from the package index.
"""

import ensurepip
import subprocess
import sys


def main():
    args = sys.argv[1:]
    no_setuptools = '--no-setuptools' in args
    no_wheel = '--no-wheel' in args
    args = [arg for arg in args if arg not in ('--no-setuptools', '--no-wheel')]

    # ensurepip may print to stdout; ansible-test only shows it on failure
    ensurepip.bootstrap(upgrade=True, default_pip=True)

    pip = [sys.executable, '-m', 'pip']
    subprocess.check_call(pip + ['install', '--upgrade', '--force-reinstall'] + args)

    remove = []
    if no_setuptools:
        remove.append('setuptools')
    if no_wheel:
        remove.append('wheel')
    if remove:
        # ensurepip of Python < 3.12 also installs setuptools; get-pip.py --no-setuptools would not
        subprocess.call(pip + ['uninstall', '--yes', '--quiet', '--disable-pip-version-check'] + remove,
                        stderr=subprocess.DEVNULL)


if __name__ == '__main__':
    main()
