#!/usr/bin/env python3
"""CTest dashboard_browser: the dashboard (/_kiln/ui) in headless Chromium while a training loop
runs against `kiln serve --virtual-clock`. Asserts on the rendered DOM: the run appears with one
curve point per step, a checkpoint's TTL counts down when the page's button advances the virtual
clock, its delete button removes it, the journal filter works, a fault rule is added and removed
with the page's controls. Saves a screenshot.
Chromium is driven over the DevTools protocol with a small stdlib WebSocket client (no Python
packages needed). Exits 77 (CTest: skipped) with a message when Chromium is not installed.

    dashboard_test.py KILN_BINARY OUT_DIR
"""
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

STEPS = 6
SKIP = 77


class DevTools:
    """One DevTools page session over a WebSocket (RFC 6455 client: masked text frames)."""

    def __init__(self, ws_url):
        assert ws_url.startswith("ws://")
        host_port, path = ws_url[5:].split("/", 1)
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError("DevTools refused the WebSocket: " + head.decode(errors="replace"))
        self.next_id = 0

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            out += chunk
        return out

    def _send(self, text):
        payload = text.encode()
        header = bytes([0x81])
        n = len(payload)
        header += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 1 << 16 else bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _message(self):
        data = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise RuntimeError("DevTools closed the WebSocket")
            if opcode in (0x9, 0xA):  # ping / pong: nothing to do for a short test
                continue
            data += payload
            if b0 & 0x80:
                return json.loads(data)

    def call(self, method, **params):
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            m = self._message()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]

    def js(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression, what, seconds=30):
        deadline, error = time.time() + seconds, None
        while time.time() < deadline:
            try:
                if self.js(expression):
                    return
            except RuntimeError as e:  # not there yet (the page still loading, say)
                error = e
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what} ({expression}); last error: {error}")


class Api:
    def __init__(self, url, key="tml-dashboard"):
        self.url, self.key = url, key

    def post(self, path, body):
        req = urllib.request.Request(self.url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json", "X-API-Key": self.key})
        return json.load(urllib.request.urlopen(req, timeout=30))

    def get(self, path):
        return json.load(urllib.request.urlopen(self.url + path, timeout=30))

    def result(self, rid):
        for _ in range(600):
            try:
                return self.post("/api/v1/retrieve_future", {"request_id": rid})
            except urllib.error.HTTPError as e:
                if e.code != 408:
                    raise
        raise RuntimeError("no result for " + rid)

    def call(self, path, body):
        return self.result(self.post(path, body)["request_id"])


def training_loop(api, done):
    """Trains kiln/tiny for STEPS steps (slowly, so the page sees it run), saves, samples."""
    session = api.post("/api/v1/create_session", {"tags": ["dashboard"], "user_metadata": {}, "sdk_version": "0.25.0"})["session_id"]
    model = api.call("/api/v1/create_model", {"session_id": session, "model_seq_id": 0, "base_model": "kiln/tiny",
                                              "lora_config": {"rank": 8}})["model_id"]
    text = [ord(c) for c in "Kiln dashboard"]
    datum = {"model_input": {"chunks": [{"type": "encoded_text", "tokens": text[:-1]}]},
             "loss_fn_inputs": {"target_tokens": {"data": text[1:], "dtype": "int64", "shape": [len(text) - 1]}}}
    seq = 1
    for _ in range(STEPS):
        api.call("/api/v1/forward_backward", {"model_id": model, "seq_id": seq,
                                              "forward_backward_input": {"data": [datum], "loss_fn": "cross_entropy"}})
        api.call("/api/v1/optim_step", {"model_id": model, "seq_id": seq + 1,
                                        "adam_params": {"learning_rate": 0.01, "emit_grad_norm_metrics": True}})
        seq += 2
        time.sleep(0.2)
    saved = api.call("/api/v1/save_weights", {"model_id": model, "path": "step-6", "seq_id": seq, "ttl_seconds": 120})["path"]
    sampler = api.call("/api/v1/save_weights_for_sampler", {"model_id": model, "seq_id": seq + 1,
                                                            "sampling_session_seq_id": 1})["sampling_session_id"]
    api.call("/api/v1/asample", {"num_samples": 2, "sampling_session_id": sampler, "seq_id": 0,
                                 "prompt": {"chunks": [{"type": "encoded_text", "tokens": text[:4]}]},
                                 "sampling_params": {"max_tokens": 6, "seed": 1, "stop": []}})
    done.update(model=model, checkpoint=saved, sampler=sampler)


def filter_journal(page, endpoint):
    """Types into the journal's endpoint filter, as a user would."""
    page.js("(() => { const f = document.querySelector('#journal-endpoint'); f.value = %s;"
            " f.dispatchEvent(new Event('input')); return true; })()" % json.dumps(endpoint))


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def main(kiln, out_dir):
    chromium = find_chromium()
    if not chromium:
        print("SKIP: Chromium is not installed; `apt-get install chromium` (Debian) to run the dashboard's browser test")
        return SKIP
    tmp = tempfile.mkdtemp(prefix="kiln-dashboard-")
    procs = []
    try:
        log = open(os.path.join(tmp, "kiln.log"), "w+")
        serve = subprocess.Popen([kiln, "serve", "--port", "0", "--virtual-clock", "--data-dir", os.path.join(tmp, "data"),
                                  "--log-level", "warn"], stdout=log, stderr=subprocess.STDOUT)
        procs.append(serve)
        url = None
        for _ in range(100):
            log.seek(0)
            text = log.read()
            if "http://127.0.0.1:" in text:
                url = text.split("serving on ")[1].split()[0]
                break
            time.sleep(0.1)
        assert url, "kiln serve did not start:\n" + text
        profile = os.path.join(tmp, "chromium")
        browser = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                    "--disable-extensions", "--remote-debugging-port=0", "--user-data-dir=" + profile,
                                    "--window-size=1400,1700", url + "/_kiln/ui"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(browser)
        port_file = os.path.join(profile, "DevToolsActivePort")
        for _ in range(300):
            if os.path.exists(port_file) and len(open(port_file).read().split()) >= 2:
                break
            time.sleep(0.1)
        devtools_port = open(port_file).read().split()[0]
        pages = []
        for _ in range(100):
            pages = [t for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json/list"))
                     if t["type"] == "page" and "/_kiln/ui" in t["url"]]
            if pages:
                break
            time.sleep(0.1)
        assert pages, "Chromium opened no page for the dashboard"
        page = DevTools(pages[0]["webSocketDebuggerUrl"])
        page.wait_for("document.body.dataset.refreshed >= 1", "the page's first refresh")

        api = Api(url)
        done = {}
        loop = threading.Thread(target=training_loop, args=(api, done))
        loop.start()
        # While the loop runs the run shows up, before its last step.
        page.wait_for("document.querySelectorAll('#runs .run').length === 1", "the run to appear")
        loop.join(timeout=120)
        assert done, "the training loop did not finish"
        model = done["model"]
        run = f"document.querySelector('#runs .run[data-model-id=\"{model}\"]')"
        page.wait_for(f"{run} && {run}.querySelectorAll('svg.curve .point').length === {STEPS}", f"{STEPS} curve points")
        assert page.js(f"{run}.querySelector('.step').textContent") == str(STEPS)
        assert page.js(f"{run}.querySelector('svg.curve .norm') !== null"), "grad norms are not drawn"
        # The checkpoint's TTL on the frozen virtual clock, then after the page advances it 30 s.
        row = f"document.querySelector('tr.checkpoint[data-path=\"{done['checkpoint']}\"]')"
        page.wait_for(f"{row} !== null", "the checkpoint row")
        assert page.js(f"{row}.querySelector('.ttl').dataset.seconds") == "120", page.js(f"{row}.outerHTML")
        page.js("document.querySelector('#clock-advance').value = 30; document.querySelector('#clock-advance-button').click(); true")
        page.wait_for(f"{row} && {row}.querySelector('.ttl').dataset.seconds === '90'", "the TTL to count down to 90 s")
        # The sampler and its recent sample.
        page.wait_for(f"document.querySelectorAll('.sampler[data-sampler-id=\"{done['sampler']}\"] pre.sample').length === 1",
                      "the recent sample")
        # Futures: every request of the loop is done.
        page.wait_for("Number(document.querySelector('.count[data-state=\"done\"] b').textContent) >= 15", "done futures")
        # Journal filter: the optim_step requests only.
        filter_journal(page, "optim_step")
        page.wait_for(f"document.querySelectorAll('#journal tr.entry').length === {STEPS}", f"{STEPS} optim_step journal rows")
        page.js("document.querySelector('#journal tr.entry').click(); true")
        page.wait_for("document.querySelector('#journal tr.detail pre') !== null", "an expanded journal entry")
        filter_journal(page, "")
        # A fault rule added with the page's form, as the server then holds it.
        page.js("document.querySelector('#fault-add').click(); true")
        page.wait_for("document.querySelectorAll('#faults tr.fault').length === 1", "the added fault rule")
        rules = api.get("/_kiln/faults")["rules"]
        assert len(rules) == 1 and rules[0]["endpoint"] == "/api/v1/forward_backward", rules
        # Screenshot (before the deletes, so it shows a checkpoint and a rule).
        time.sleep(0.3)
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        png = os.path.join(out_dir, "dashboard.png")
        with open(png, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        # Delete: the row disappears and the server no longer lists it.
        page.js(f"{row}.querySelector('button.delete').click(); true")
        page.wait_for(f"{row} === null", "the deleted checkpoint's row to go")
        assert not any(c["tinker_path"] == done["checkpoint"] for c in api.get("/_kiln/state")["checkpoints"])
        page.js("document.querySelector('#faults tr.fault button.remove').click(); true")
        page.wait_for("document.querySelectorAll('#faults tr.fault').length === 0", "the removed fault rule to go")
        assert api.get("/_kiln/faults")["rules"] == []
        print(f"dashboard: ok ({STEPS} curve points, TTL 120 → 90 s, delete, journal filter, fault rule added and removed); screenshot {png}")
        return 0
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
