"""A network guard for the test suite: any outbound connection fails, in this process and in every Python
subprocess the tests start, so an offline regression cannot slip in unnoticed.

`install()` patches `socket.socket.connect` / `connect_ex` / `sendto`, `socket.create_connection` and
`socket.getaddrinfo` so that only loopback addresses, the local host name and non-IP sockets (AF_UNIX pipes,
netlink) get through. Everything else raises `NetworkBlocked` (a ConnectionError, so code written for a
missing network behaves as it would offline) and is appended to the file named by HARNESS_NETGUARD_LOG;
the conftest fixture fails the test during which such a line appears, even when a library swallowed the error.

Subprocesses: `tests/netguard_site/sitecustomize.py` installs the same guard when HARNESS_NETGUARD=1; the
session fixture puts that folder first on PYTHONPATH (`environment()` below says what to export).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import traceback
from pathlib import Path

ENV_FLAG = "HARNESS_NETGUARD"
LOG_ENV = "HARNESS_NETGUARD_LOG"
SITE_DIR = Path(__file__).resolve().parent / "netguard_site"

_state = threading.local()
_ORIGINAL: dict[str, object] = {}


class NetworkBlocked(ConnectionError):
    """An outbound connection attempted while the test network guard is on."""


def _is_local_host(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip().lower().rstrip(".")
    if host in ("", "localhost", "ip6-localhost", "ip6-loopback") or host.endswith(".localhost"):
        return True
    try:
        hostname = socket.gethostname().lower()
    except OSError:  # pragma: no cover
        hostname = None
    if host == hostname:
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a name other than the local host's: resolving it is already network traffic
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _is_ip_literal(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    try:
        ipaddress.ip_address(str(host).split("%", 1)[0])
        return True
    except ValueError:
        return False


def _blocked(what: str, target) -> NetworkBlocked:
    message = (
        f"network guard: outbound {what} to {target!r} blocked; the tests run offline "
        "(only loopback and AF_UNIX sockets are allowed)"
    )
    if not getattr(_state, "expected", False):
        path = os.environ.get(LOG_ENV)
        if path:
            stack = "".join(traceback.format_stack(limit=12)[:-2])
            try:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(f"[pid {os.getpid()}] {message}\n{stack}\n")
            except OSError:  # pragma: no cover
                pass
    return NetworkBlocked(message)


def _check_address(sock, address, what: str) -> None:
    family = getattr(sock, "family", None)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return  # AF_UNIX (pipes between processes), netlink, ...
    if not isinstance(address, tuple) or not address:
        return
    if not _is_local_host(address[0]):
        raise _blocked(what, address)


def install() -> None:
    """Patch the socket module (idempotent)."""
    if _ORIGINAL:
        return
    sock_cls = socket.socket
    _ORIGINAL.update(
        connect=sock_cls.connect,
        connect_ex=sock_cls.connect_ex,
        sendto=sock_cls.sendto,
        create_connection=socket.create_connection,
        getaddrinfo=socket.getaddrinfo,
    )

    def connect(self, address):
        _check_address(self, address, "connection")
        return _ORIGINAL["connect"](self, address)

    def connect_ex(self, address):
        _check_address(self, address, "connection")
        return _ORIGINAL["connect_ex"](self, address)

    def sendto(self, data, *args):
        if args:
            _check_address(self, args[-1], "datagram")
        return _ORIGINAL["sendto"](self, data, *args)

    def create_connection(address, *args, **kwargs):
        if isinstance(address, tuple) and address and not _is_local_host(address[0]):
            raise _blocked("connection", address)
        return _ORIGINAL["create_connection"](address, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):
        if not (_is_local_host(host) or _is_ip_literal(host)):
            raise _blocked("DNS lookup", host)
        return _ORIGINAL["getaddrinfo"](host, *args, **kwargs)

    sock_cls.connect, sock_cls.connect_ex, sock_cls.sendto = connect, connect_ex, sendto
    socket.create_connection, socket.getaddrinfo = create_connection, getaddrinfo


def uninstall() -> None:
    if not _ORIGINAL:
        return
    sock_cls = socket.socket
    sock_cls.connect, sock_cls.connect_ex = _ORIGINAL["connect"], _ORIGINAL["connect_ex"]
    sock_cls.sendto = _ORIGINAL["sendto"]
    socket.create_connection, socket.getaddrinfo = _ORIGINAL["create_connection"], _ORIGINAL["getaddrinfo"]
    _ORIGINAL.clear()


def installed() -> bool:
    return bool(_ORIGINAL)


@contextlib.contextmanager
def expected():
    """For tests of the guard itself: blocked attempts inside are not logged as offline regressions."""
    _state.expected = True
    try:
        yield
    finally:
        _state.expected = False


def environment(log_path: Path) -> dict[str, str]:
    """What to export so that Python subprocesses install the guard too."""
    parts = [str(SITE_DIR)] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(SITE_DIR)
    ]
    return {ENV_FLAG: "1", LOG_ENV: str(log_path), "PYTHONPATH": os.pathsep.join(parts)}


def read_log(path: Path, start: int = 0) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            fh.seek(start)
            return fh.read()
    except FileNotFoundError:
        return ""
