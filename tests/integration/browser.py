"""Headless Chromium driven through the DevTools protocol, for the dashboard's browser tests.

Place in the flow: test infrastructure. ``Chromium`` starts Debian's ``chromium-headless-shell``
with ``--remote-debugging-pipe``: the protocol runs over two inherited file descriptors (3 and
4, NUL-separated JSON), so no debugging port is opened and the browser can run in a network
namespace that holds nothing but loopback (``NetnsRelay``: a socat relay on the namespace's
loopback reaches the dashboard through a unix socket). Each ``Page`` lives in its own browser
context (its own cookies), records every request it sends (``Network.requestWillBeSent``) and
takes screenshots. The whole process group is killed and the profile directory removed on exit.

Standard library only: no websocket client and no Selenium are needed for a pipe.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

CHROMIUM = "/usr/bin/chromium-headless-shell"
DESKTOP = (1280, 800)
PHONE = (375, 812)


class BrowserError(RuntimeError):
    """The browser answered a command with an error, died, or a page did not get ready."""


class Chromium:
    """One headless Chromium process; ``with`` stops its process group whatever happens."""

    def __init__(self, *, prefix: Sequence[str] = (), extra_fds: Sequence[int] = ()) -> None:
        """``prefix``: a command the browser runs under (``unshare --net ...``); it must ``exec``
        the browser command it is given as its last arguments and keep fds 3 and 4 open."""
        self.profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        command = [
            CHROMIUM,
            "--headless",
            "--remote-debugging-pipe",
            f"--user-data-dir={self.profile}",
            "--no-sandbox",  # tests run as root; the sandbox refuses to start as root
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--metrics-recording-only",
            "--password-store=basic",
            "--hide-scrollbars",
            "--mute-audio",
            "about:blank",
        ]

        def wire_pipes() -> None:
            # Out of the way first, so that neither pipe end is clobbered if it is fd 3 or 4.
            reading = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            writing = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        with open(os.path.join(self.profile, "stderr.log"), "wb") as stderr:
            self.process = subprocess.Popen(
                [*prefix, *command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=wire_pipes,
                start_new_session=True,
                pass_fds=(3, 4, *extra_fds),  # close_fds runs after preexec_fn
                close_fds=True,
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._lock = threading.Lock()
        self._answers: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._closed = False
        self._contexts: list[str] = []
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()
        try:
            self.call("Browser.getVersion", timeout=30)
        except BaseException:
            self.stop()
            raise

    # ---------------------------------------------------------------- protocol

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._changed:
                    self._closed = True
                    self._changed.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._changed:
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self._events.append(message)
                    self._changed.notify_all()

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """Send one command and wait for its answer; raise BrowserError on an error answer."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            os.write(self._to_browser, data)
        except OSError as e:
            raise BrowserError(f"{method}: the browser is gone ({e}); {self.stderr_tail()}") from e
        deadline = time.monotonic() + timeout
        with self._changed:
            while ident not in self._answers:
                if self._closed:
                    raise BrowserError(f"{method}: the browser exited; {self.stderr_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"{method}: no answer within {timeout:g}s")
                self._changed.wait(left)
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')}")
        return dict(answer.get("result") or {})

    def events(self, method: str, session: str | None = None) -> list[dict[str, Any]]:
        """Every event of ``method`` received so far (for ``session``, if given)."""
        with self._changed:
            return [
                e["params"]
                for e in self._events
                if e.get("method") == method and (session is None or e.get("sessionId") == session)
            ]

    def stderr_tail(self) -> str:
        path = Path(self.profile, "stderr.log")
        text = path.read_text(errors="replace") if path.exists() else ""
        return "stderr: " + " | ".join(text.strip().splitlines()[-5:])

    # ---------------------------------------------------------------- pages

    def page(self, size: tuple[int, int] = DESKTOP, *, mobile: bool = False) -> Page:
        """A new tab in a fresh browser context (no cookies shared with other pages)."""
        context = self.call("Target.createBrowserContext", {"disposeOnDetach": True})
        self._contexts.append(str(context["browserContextId"]))
        target = self.call(
            "Target.createTarget",
            {"url": "about:blank", "browserContextId": context["browserContextId"]},
        )
        session = self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )["sessionId"]
        page = Page(self, str(session))
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable", session=session)
        page.resize(size, mobile=mobile)
        return page

    def close_pages(self) -> None:
        """Close every page and its context (their event streams, cookies and all)."""
        while self._contexts:
            context = self._contexts.pop()
            self.call("Target.disposeBrowserContext", {"browserContextId": context})

    # ---------------------------------------------------------------- lifetime

    def __enter__(self) -> Chromium:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def gone(self) -> bool:
        """True once no process of the browser's group is left and its profile is removed."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return not os.path.exists(self.profile)
        return False

    def stop(self) -> None:
        """Kill the browser's whole process group (renderers, zygotes, crashpad, relays) and
        remove its profile directory."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._reader.join(5)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab: navigate, evaluate JavaScript, wait for a condition, take a screenshot."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, session=self.session)

    def resize(self, size: tuple[int, int], *, mobile: bool = False) -> None:
        width, height = size
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    def color_scheme(self, scheme: str) -> None:
        """Emulate ``prefers-color-scheme: scheme`` (light or dark)."""
        self.call(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )

    def goto(self, url: str) -> None:
        answer = self.call("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise BrowserError(f"navigating to {url}: {answer['errorText']}")

    def js(self, expression: str) -> Any:
        """The value of ``expression`` (awaited if it is a promise), as JSON."""
        answer = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            text = (details.get("exception") or {}).get("description") or details.get("text")
            raise BrowserError(f"{expression[:80]}: {text}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 30) -> Any:
        """Poll ``expression`` until it is truthy; fail naming ``what`` and the page's text."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(BrowserError):
                value = self.js(expression)
                # JavaScript's truthiness: an element comes back as {} and counts as found.
                if value is not None and value is not False and value != 0 and value != "":
                    return value
            if time.monotonic() > deadline:
                text = ""
                with contextlib.suppress(BrowserError):
                    text = str(self.js("document.body ? document.body.innerText : ''"))[:1500]
                raise BrowserError(f"timed out after {timeout:g}s waiting for {what}; page: {text}")
            time.sleep(0.1)

    def text(self, selector: str = "body") -> str:
        return str(
            self.js(f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText || ''")
        )

    def click(self, selector: str) -> None:
        found = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.click(); return true; })()"
        )
        if not found:
            raise BrowserError(f"nothing to click at {selector}")

    def type_into(self, selector: str, value: str) -> None:
        self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            f" e.value = {json.dumps(value)}; e.dispatchEvent(new Event('input')); }})()"
        )

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (not just the viewport) at ``path``, from the top (so the
        sticky header sits where it belongs)."""
        self.js("window.scrollTo(0, 0)")
        metrics = self.call("Page.getLayoutMetrics")
        content = metrics.get("cssContentSize") or metrics["contentSize"]
        answer = self.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": {
                "x": 0, "y": 0, "width": content["width"], "height": content["height"], "scale": 1,
            }},
        )  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(answer["data"]))
        return path

    def requests(self) -> list[str]:
        """The URL of every request this page sent so far."""
        return [
            str(e["request"]["url"])
            for e in self.browser.events("Network.requestWillBeSent", self.session)
        ]

    def console_errors(self) -> list[str]:
        """Uncaught exceptions, console errors and the browser's own error log entries (a
        Content-Security-Policy violation, a failed load)."""
        out = [
            str((e.get("exceptionDetails") or {}).get("text", ""))
            + " "
            + str(((e.get("exceptionDetails") or {}).get("exception") or {}).get("description", ""))
            for e in self.browser.events("Runtime.exceptionThrown", self.session)
        ]
        for e in self.browser.events("Runtime.consoleAPICalled", self.session):
            if e.get("type") == "error":
                out.append(
                    " ".join(str(a.get("value", a.get("description", ""))) for a in e["args"])
                )
        for e in self.browser.events("Log.entryAdded", self.session):
            entry = e.get("entry") or {}
            if entry.get("level") == "error":
                out.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
        return out


class NetnsRelay:
    """``prefix`` runs the browser in a new network namespace holding only loopback, where
    127.0.0.1:``port`` is relayed (socat, through a unix socket) to the dashboard's
    127.0.0.1:``port`` outside. Nothing else is reachable from inside. ``cut`` stops the outside
    half (open connections drop, new ones fail), ``restore`` starts it again."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.sock = workdir / "dashboard.sock"
        self._outside: subprocess.Popen[bytes] | None = None
        # Inside: loopback up, the relay (without the browser's pipes), then the browser.
        script = (
            "set -e; ip link set lo up; "
            f"socat TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:{self.sock} "
            "3<&- 4>&- </dev/null >/dev/null 2>&1 & "
            f"i=0; until socat -u OPEN:/dev/null TCP:127.0.0.1:{port} 2>/dev/null; do "
            'i=$((i+1)); [ $i -lt 100 ] || exit 97; sleep 0.05; done; exec "$@"'
        )
        # As root the namespace needs nothing else; otherwise a user namespace makes us root in it.
        user = [] if os.geteuid() == 0 else ["--map-root-user"]
        self.prefix = ["unshare", "--net", *user, "--", "sh", "-c", script, "sh"]

    def restore(self) -> None:
        self._outside = subprocess.Popen(
            ["socat", f"UNIX-LISTEN:{self.sock},fork,mode=600", f"TCP:127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            if self._outside.poll() is not None or time.monotonic() > deadline:
                raise BrowserError(f"socat did not listen on {self.sock}")
            time.sleep(0.05)

    def cut(self) -> None:
        if self._outside is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._outside.pid, signal.SIGKILL)
            self._outside.wait()
            self._outside = None
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()

    def __enter__(self) -> NetnsRelay:
        self.restore()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cut()
