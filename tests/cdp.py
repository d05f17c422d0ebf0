"""Headless Chromium driven over the DevTools protocol (CDP) for the report's browser tests
(tests/test_report_browser.py): Debian's chromium started with --remote-debugging-pipe, speaking CDP as
NUL-terminated JSON on file descriptors 3 (commands in) and 4 (replies and events out). No driver and no
websocket library."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"))
        if p and os.access(p, os.X_OK)
    ),
    None,
)
BASH = shutil.which("bash")

VIEWPORT = (1280, 900)


# ------------------------------------------------------------------------------------------- CDP ---


class CDPError(RuntimeError):
    pass


class Browser:
    """Headless Chromium with a CDP connection over a pipe."""

    def __init__(self, profile: Path, timeout: float = 30.0):
        self.timeout = timeout
        self.events: list[dict] = []
        self._next_id = 0
        self._buf = b""
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        # keep the child's ends clear of 3 and 4, where Chromium expects them
        child_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        args = [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--mute-audio",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.log = profile / "chromium.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [BASH, "-c", f'exec 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-; exec "$@"', "bash", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(child_r, child_w),
                start_new_session=True,
            )
        os.close(child_r)
        os.close(child_w)
        try:
            self.version = self.send("Browser.getVersion")["product"]
        except Exception:
            self.close()
            raise

    # -- wire --
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from Chromium in time" + self._log_tail())
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise CDPError(f"Chromium closed the pipe (exit code {self.proc.poll()})" + self._log_tail())
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _write(self, message: dict) -> int:
        self._next_id += 1
        message["id"] = self._next_id
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._w, data) :]
        return self._next_id

    def _dispatch(self, msg: dict) -> None:
        self.events.append(msg)
        if msg.get("method") == "Page.javascriptDialogOpening":  # never let a dialog block the page
            self._write(
                {
                    "method": "Page.handleJavaScriptDialog",
                    "params": {"accept": False},
                    "sessionId": msg.get("sessionId"),
                }
            )

    def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float | None = None
    ) -> dict:
        message = {"method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        want = self._write(message)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self._read_message(deadline)
            if "id" not in msg:
                self._dispatch(msg)
            elif msg["id"] == want:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def wait_event(self, match, since: int, timeout: float | None = None) -> dict:
        """The first event from index `since` on for which match(event) is true."""
        deadline = time.monotonic() + (timeout or self.timeout)
        seen = since
        while True:
            for ev in self.events[seen:]:
                if match(ev):
                    return ev
            seen = len(self.events)
            msg = self._read_message(deadline)
            if "id" not in msg:
                self._dispatch(msg)

    def _log_tail(self) -> str:
        try:
            tail = self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""
        return f"\n--- chromium log ---\n{tail}" if tail.strip() else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._write({"method": "Browser.close"})
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the session this test started for Chromium
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


class Tab:
    """One page target with Runtime, Log, Network and Page enabled; collects what went wrong."""

    def __init__(self, browser: Browser):
        self.b = browser
        self.target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": self.target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable")
        self.send("Page.setLifecycleEventsEnabled", {"enabled": True})
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False},
        )
        self.mark = len(browser.events)
        self.url = "about:blank"

    def send(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        return self.b.send(method, params, self.session, timeout)

    def goto(self, path: Path | str) -> None:
        """Navigate and wait for this navigation's load event (not a late one from the page before)."""
        self.url = path if isinstance(path, str) else path.resolve().as_uri()
        self.mark = len(self.b.events)
        nav = self.send("Page.navigate", {"url": self.url})
        assert not nav.get("errorText"), f"navigation to {self.url} failed: {nav['errorText']}"
        self.b.wait_event(
            lambda ev: (
                ev.get("sessionId") == self.session
                and ev.get("method") == "Page.lifecycleEvent"
                and ev["params"].get("name") == "load"
                and ev["params"].get("loaderId") == nav["loaderId"]
            ),
            self.mark,
        )

    def eval(self, expression: str):
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise CDPError(f"{expression[:80]}...: {r['exceptionDetails'].get('exception', r['exceptionDetails'])}")
        return r["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors, exceptions, log errors, dialogs and requests other than the report since goto()."""
        self.send("Runtime.evaluate", {"expression": "0"})  # flush pending events
        out = []
        for ev in self.b.events[self.mark :]:
            if ev.get("sessionId") != self.session:
                continue
            method, p = ev.get("method"), ev.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(
                    f"console.{p['type']}: "
                    + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", []))
                )
            elif method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(
                    f"log error ({p['entry'].get('source')}): {p['entry'].get('text')} {p['entry'].get('url', '')}"
                )
            elif method == "Network.requestWillBeSent":
                url = p.get("request", {}).get("url", "")
                if url.split("#")[0] != self.url and not url.startswith(("data:", "about:")):
                    out.append(f"network request: {url}")
            elif method == "Page.javascriptDialogOpening":
                out.append(f"dialog: {p.get('type')} {p.get('message')}")
        return out

    def close(self) -> None:
        try:
            self.b.send("Target.closeTarget", {"targetId": self.target})
        except (CDPError, TimeoutError):
            pass
