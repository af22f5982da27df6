# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest configuration of the test lab: the `lab` marker (pytest.ini runs with --strict-markers)."""


def pytest_configure(config):
    config.addinivalue_line('markers', 'lab: needs root and boots the systemd-nspawn test lab (tests/lab/lab.py)')
