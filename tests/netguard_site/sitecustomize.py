"""Installs the tests' network guard (tests/netguard.py) in every Python process started while the test
suite runs: the suite puts this folder first on PYTHONPATH and sets HARNESS_NETGUARD=1."""

import os

if os.environ.get("HARNESS_NETGUARD") == "1":
    import importlib.util

    _path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "netguard.py")
    _spec = importlib.util.spec_from_file_location("_harness_tests_netguard", _path)
    _guard = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_guard)
    _guard.install()
