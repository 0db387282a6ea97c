"""Headless Chromium driven over the Chrome DevTools Protocol (stdlib only), for tests/test_search_page.py.

Why raw CDP and not Playwright or Selenium: the browser is Debian's `chromium` (apt), and with
`--remote-debugging-pipe` it speaks CDP on file descriptors 3 and 4 (JSON messages ending in a NUL byte), so
nothing else is needed: no pip package, no driver binary whose version must match the browser's, nothing
downloaded at test time. The few commands used (Target, Page, Runtime, Input) have been stable for years.

Input goes through the browser's input pipeline (`Input.insertText`, key and mouse events), so the page sees
what a user's typing and clicking would produce; reading the page is JavaScript evaluated in it.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The browser's path: $CHROMIUM, else the first of CANDIDATES on PATH."""
    return os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, CANDIDATES)), None)


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page. `errors` collects the page's uncaught exceptions and
    console.error messages (a test asserts there are none)."""

    def __init__(self, executable: str, timeout: float = 30.0):
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="hsearch-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()

        def fds():  # in the child: commands come in on fd 3, answers go out on fd 4
            # copied above 10 first, so that neither pipe end is overwritten when it already is fd 3 or 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (cmd_r, res_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        # --no-sandbox: containers (and CI runners as root) often lack the namespaces the sandbox needs;
        # the only page loaded is the one under test, served on 127.0.0.1.
        self.proc = subprocess.Popen(
            [executable, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-sync", "--mute-audio", "--window-size=1200,900",
             f"--user-data-dir={self._profile.name}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, close_fds=False)
        os.close(cmd_r)
        os.close(res_w)
        self._buffer, self._next_id, self.errors = b"", 0, []
        self.session = None
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.send("Runtime.enable")
            self.send("Page.enable")
        except BaseException:
            self.close()
            raise

    # ---- the protocol -------------------------------------------------------------------------
    def send(self, method: str, timeout: float | None = None, **params):
        """Send one command (to the page's session once attached) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._event(reply)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._res_r], [], [], left)[0]:
                raise BrowserError(f"no answer from Chromium within {self.timeout} s")
            chunk = os.read(self._res_r, 1 << 16)
            if not chunk:
                raise BrowserError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _event(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            self.errors.append(d.get("exception", {}).get("description") or d.get("text"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))

    # ---- what a test does -----------------------------------------------------------------------
    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def eval(self, expression: str, timeout: float | None = None):
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.send("Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            d = result["exceptionDetails"]
            raise BrowserError(d.get("exception", {}).get("description") or d.get("text"))
        return result["result"].get("value")

    def wait_for(self, condition: str, timeout: float | None = None):
        """Poll the JavaScript `condition` every 50 ms until it is truthy; its value."""
        timeout = timeout or self.timeout
        value = self.eval(f"""new Promise((resolve) => {{
            const end = Date.now() + {timeout * 1000};
            const poll = () => {{
                let v; try {{ v = ({condition}); }} catch (e) {{ v = undefined; }}
                if (v || Date.now() > end) resolve(v || null); else setTimeout(poll, 50);
            }};
            poll();
        }})""", timeout=timeout + 10)
        if not value:
            raise BrowserError(f"still false after {timeout} s: {condition}")
        return value

    def click(self, selector: str) -> None:
        """A left click at the middle of the element, as a mouse would."""
        box = self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
            return {{x: r.left + r.width / 2, y: r.top + r.height / 2}}; }})()""")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        """Click into the field, select what it holds, and type `text` over it."""
        self.click(selector)
        self.eval(f"document.querySelector({json.dumps(selector)}).select()")
        self.send("Input.insertText", text=text)

    def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13,
                      **({"text": "\r"} if kind == "keyDown" else {}))

    def choose(self, selector: str, value: str) -> None:
        """Pick an option of a <select> (set, then the input and change events a user's choice fires)."""
        found = self.eval(f"""(() => {{ const s = document.querySelector({json.dumps(selector)});
            if (![...s.options].some((o) => o.value === {json.dumps(value)})) return false;
            s.value = {json.dumps(value)};
            s.dispatchEvent(new Event('input', {{bubbles: true}}));
            s.dispatchEvent(new Event('change', {{bubbles: true}}));
            return true; }})()""")
        if not found:
            raise BrowserError(f"{selector} has no option {value!r}")

    def close(self) -> None:
        try:
            os.close(self._cmd_w)  # Chromium exits when its command pipe closes
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._res_r)
        self._profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
