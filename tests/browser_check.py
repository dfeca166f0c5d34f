"""Open pages of the built site in headless Chromium and report what a reader sees.

Standard library only: Chromium is driven over the DevTools protocol through
``--remote-debugging-pipe`` (JSON messages separated by NUL bytes on file
descriptors 3 and 4), so no websocket client and no TCP debugging port is needed.
The site is served by ``http.server`` on 127.0.0.1 (a random free port).

Pages are opened at a desktop width (:data:`VIEWPORT`, 1280 x 900 CSS pixels). For each
page it reports: whether it loaded, its title and first heading, every ``<img>`` with
its ``naturalWidth`` and the width it is shown at (after forcing eager loading and
waiting for each image), how many ``mjx-container`` elements MathJax produced, MathJax
error nodes (``mjx-merror``), display equations wider than the column they sit in
(``overflowingMath``, with their TeX), code cells whose input is shown unfolded
(``shownInputs``), uncaught JavaScript exceptions, and same-origin requests that failed
(HTTP status >= 400 or a network error).

Run by hand::

    python tests/browser_check.py _build/tiny/html book/intro.html book/derivation.html

or take screenshots of pages (light and dark colour scheme; a long page is cut into
pieces of one viewport each, ``<out>/<page>-<scheme>-<n>.png``)::

    python tests/browser_check.py --screenshots /tmp/shots _build/tiny/html book/theory.html
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

from helpers import serve_http

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--mute-audio",
    "--remote-debugging-pipe",
)

# Runs in the page once it has loaded. Forces lazy images to load, waits for every
# image, waits for MathJax to finish typesetting (if the page loads MathJax), then
# returns what it found.
PAGE_PROBE = r"""
(async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const imgs = Array.from(document.images);
  for (const img of imgs) { img.loading = "eager"; }
  await Promise.all(imgs.map((img) => (img.complete && img.naturalWidth > 0) ? null :
    new Promise((resolve) => {
      img.addEventListener("load", resolve, {once: true});
      img.addEventListener("error", resolve, {once: true});
      setTimeout(resolve, 10000);
    })));
  const usesMathJax = Array.from(document.scripts).some((s) => /mathjax/i.test(s.src));
  let mathjax = "absent";
  if (usesMathJax) {
    const t0 = Date.now();
    while (!(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)) {
      if (Date.now() - t0 > 20000) break;
      await sleep(50);
    }
    if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
      try { await window.MathJax.startup.promise; mathjax = "typeset"; }
      catch (e) { mathjax = "failed: " + e; }
    } else { mathjax = "did not start"; }
  }
  const heading = document.querySelector("main h1, article h1, h1");
  return {
    url: location.href,
    title: document.title,
    h1: heading ? heading.textContent.trim() : null,
    images: imgs.map((img) => ({src: img.currentSrc || img.src, alt: img.alt,
                                naturalWidth: img.naturalWidth})),
    mathjax: mathjax,
    mathjaxScript: (Array.from(document.scripts).find((s) => /mathjax/i.test(s.src)) || {}).src || null,
    mjxContainers: document.querySelectorAll("mjx-container").length,
    mjxErrors: Array.from(document.querySelectorAll("mjx-merror")).map((e) => e.textContent),
    mathElements: document.querySelectorAll(".math").length,
    figures: document.querySelectorAll("figure").length,
    overflowingMath: overflowingMath(),
    shownInputs: Array.from(document.querySelectorAll(".cell:not(.tag_hide-input):not(.tag_hide-cell) .cell_input"))
      .filter((e) => e.offsetParent !== null)
      .map((e) => e.textContent.trim().split("\n")[0].slice(0, 100)),
    imageWidths: imgs.map((img) => ({src: img.currentSrc || img.src,
                                     shown: img.getBoundingClientRect().width})),
    textColumn: (document.querySelector("main article, article, main") || document.body)
      .getBoundingClientRect().width,
  };

  function overflowingMath() {
    const out = [];
    const items = (window.MathJax && MathJax.startup && MathJax.startup.document &&
                   MathJax.startup.document.getMathItemsWithin) ?
      MathJax.startup.document.getMathItemsWithin(document.body) : [];
    for (const item of items) {
      const root = item.typesetRoot;
      if (!item.display || !root || !root.parentElement) continue;
      // a display container spans the text column; the typeset formula must fit in it
      const math = root.querySelector("mjx-math") || root;
      const width = math.getBoundingClientRect().width;
      const column = root.getBoundingClientRect().width;
      if (width > column + 1) out.push({tex: String(item.math).trim().slice(0, 160), width, column});
    }
    return out;
  }
})()
"""

#: The browser's viewport (CSS pixels) for every page: a laptop's width.
VIEWPORT = (1280, 900)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    env = os.environ.get("ALIGNBOOK_CHROMIUM")
    for name in ((env,) if env else ()) + CHROMIUM_CANDIDATES:
        path = name if os.path.isabs(name) else shutil.which(name)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


@contextlib.contextmanager
def serve(folder: str | os.PathLike) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (random free port); yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    with serve_http(functools.partial(Quiet, directory=str(folder))) as url:
        yield url + "/"


class CDPError(RuntimeError):
    pass


class Browser:
    """Headless Chromium driven over ``--remote-debugging-pipe``."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0):
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise FileNotFoundError("no Chromium executable found (apt-get install chromium)")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="alignbook-chromium-")
        # fd 3: we write commands, Chromium reads; fd 4: Chromium writes, we read
        cmd_read, self._cmd_write = os.pipe()
        self._res_read, res_write = os.pipe()
        # move the child's ends above 9 so that they cannot collide with 3 and 4
        cmd_read, res_write = (self._high_fd(fd) for fd in (cmd_read, res_write))
        self._stderr = tempfile.TemporaryFile()

        # Chromium expects the pipe on fds 3 and 4 exactly; let a shell move them
        # there (no preexec_fn, which is unsafe while other threads run; bash, because
        # POSIX sh only redirects single-digit descriptors).
        redirect = f'exec "$0" "$@" 3<&{cmd_read} 4>&{res_write} {cmd_read}<&- {res_write}>&-'
        self.proc = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", redirect, self.executable, *CHROMIUM_FLAGS,
             f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            pass_fds=(cmd_read, res_write),
        )
        os.close(cmd_read)
        os.close(res_write)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    @staticmethod
    def _high_fd(fd: int) -> int:
        import fcntl

        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return high

    # ----------------------------------------------------------- protocol
    def _read_message(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._res_read], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._res_read, 1 << 16)
            if not chunk:
                raise CDPError(f"Chromium closed the DevTools pipe (exit {self.proc.poll()}): {self.stderr()[-2000:]}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_write, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def wait_event(self, method: str, session: str, timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, ev in enumerate(self._events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return self._events.pop(i)
            self._events.append(self._read_message(deadline))

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    # ------------------------------------------------------------ pages
    def check_page(self, url: str) -> dict[str, Any]:
        """Load ``url`` in a fresh tab and run :data:`PAGE_PROBE`."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Page", "Runtime", "Network"):
                self.send(f"{domain}.enable", session=session)
            self._viewport(session)
            self._events.clear()
            nav = self.send("Page.navigate", {"url": url}, session=session)
            if nav.get("errorText"):
                return {"url": url, "loaded": False, "error": nav["errorText"]}
            self.wait_event("Page.loadEventFired", session)
            probe = self.send("Runtime.evaluate", {"expression": PAGE_PROBE, "awaitPromise": True,
                                                   "returnByValue": True}, session=session)
            if "exceptionDetails" in probe:
                return {"url": url, "loaded": True, "error": json.dumps(probe["exceptionDetails"])[:2000]}
            result = probe["result"]["value"]
            result["loaded"] = True
            result["exceptions"], result["failedRequests"], statuses = [], [], {}
            origin = url.split("/", 3)[:3]
            for ev in self._events:
                if ev.get("sessionId") != session:
                    continue
                p = ev.get("params", {})
                if ev["method"] == "Runtime.exceptionThrown":
                    d = p.get("exceptionDetails", {})
                    result["exceptions"].append((d.get("exception") or {}).get("description") or d.get("text"))
                elif ev["method"] == "Network.requestWillBeSent":
                    statuses[p["requestId"]] = p["request"]["url"]
                elif ev["method"] == "Network.responseReceived":
                    resp = p["response"]
                    if resp.get("status", 0) >= 400 and resp["url"].split("/", 3)[:3] == origin:
                        result["failedRequests"].append(f"{resp['status']} {resp['url']}")
                elif ev["method"] == "Network.loadingFailed":
                    req_url = statuses.get(p["requestId"], "?")
                    if req_url.split("/", 3)[:3] == origin and not p.get("canceled"):
                        result["failedRequests"].append(f"{p.get('errorText')} {req_url}")
            return result
        finally:
            with contextlib.suppress(Exception):
                self.send("Target.closeTarget", {"targetId": target}, timeout=10)

    def _viewport(self, session: str, dark: bool = False) -> None:
        width, height = VIEWPORT
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session)
        self.send("Emulation.setEmulatedMedia", {"features": [
            {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]},
            session=session)

    def screenshots(self, url: str, prefix: str, dark: bool = False,
                    max_pieces: int = 12) -> list[str]:
        """Load ``url`` (light or ``dark`` colour scheme), wait as :meth:`check_page`
        does, and save the page as PNG pieces one viewport high:
        ``<prefix>-<n>.png``. Returns their paths."""
        import base64

        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Page", "Runtime"):
                self.send(f"{domain}.enable", session=session)
            self._viewport(session, dark)
            self._events.clear()
            self.send("Page.navigate", {"url": url}, session=session)
            self.wait_event("Page.loadEventFired", session)
            self.send("Runtime.evaluate", {"expression": PAGE_PROBE, "awaitPromise": True,
                                           "returnByValue": True}, session=session)
            height = self.send("Runtime.evaluate", {
                "expression": "document.documentElement.scrollHeight", "returnByValue": True},
                session=session)["result"]["value"]
            step = VIEWPORT[1]
            paths = []
            # scroll and capture the viewport: capturing beyond it re-lays the page out at
            # another size (the theme is responsive), so pieces would not match the page
            for n, top in enumerate(range(0, int(height), step)):
                if n >= max_pieces:
                    break
                self.send("Runtime.evaluate", {
                    "expression": f"window.scrollTo(0, {top}); new Promise(r => setTimeout(r, 150))",
                    "awaitPromise": True}, session=session)
                shot = self.send("Page.captureScreenshot", {"format": "png"}, session=session)
                path = f"{prefix}-{n + 1}.png"
                with open(path, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
                paths.append(path)
            return paths
        finally:
            with contextlib.suppress(Exception):
                self.send("Target.closeTarget", {"targetId": target}, timeout=10)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for fd in (self._cmd_write, self._res_read):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_site(html: str | os.PathLike, pages: list[str]) -> dict[str, dict[str, Any]]:
    """Serve ``html`` and check each page (paths relative to ``html``)."""
    out = {}
    with serve(html) as base, Browser() as browser:
        for page in pages:
            out[page] = browser.check_page(base + page)
    return out


def screenshot_site(html: str | os.PathLike, pages: list[str], out: str | os.PathLike,
                    schemes: tuple[str, ...] = ("light", "dark")) -> list[str]:
    """Serve ``html`` and save screenshots of each page in each colour scheme into
    ``out`` (see :meth:`Browser.screenshots`). Returns the files written."""
    os.makedirs(out, exist_ok=True)
    written = []
    with serve(html) as base, Browser() as browser:
        for page in pages:
            stem = page.removesuffix(".html").replace("/", "_")
            for scheme in schemes:
                written += browser.screenshots(base + page, os.path.join(out, f"{stem}-{scheme}"),
                                               dark=scheme == "dark")
    return written


if __name__ == "__main__":  # pragma: no cover
    args = sys.argv[1:]
    if args[:1] == ["--screenshots"] and len(args) >= 4:
        for path in screenshot_site(args[2], args[3:], args[1]):
            print(path)
        sys.exit(0)
    if len(args) < 2:
        sys.exit(__doc__)
    report = check_site(args[0], args[1:])
    print(json.dumps(report, indent=2))
