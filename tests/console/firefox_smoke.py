#!/usr/bin/env python3
"""The console in Firefox (Debian's firefox-esr, headless), driven over WebDriver BiDi (the
protocol Firefox speaks natively: no geckodriver, no Playwright build of Firefox). A smoke
run, not the walk: the ES modules load under the strict CSP, the WebCrypto signer gives the
signing vectors, an AK/SK sign-in works, and every page renders its title, with no
JavaScript error and no console error. The full walk runs in chromium (walk.py).

Environment: CONSOLE_URL, PROVIDER_KEYS ("AK:SK:PROJECT_ID:DOMAIN_ID"), SIGNING_VECTORS,
FIREFOX (default /usr/bin/firefox-esr).
"""
import asyncio
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import websockets

ENV = os.environ
CONSOLE = ENV["CONSOLE_URL"]
AK, SK, PROJECT, _ = ENV["PROVIDER_KEYS"].split(":")


class Bidi:
    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending = {}
        self.errors = []
        self.reader = asyncio.get_running_loop().create_task(self.read())

    async def read(self):
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg and msg["id"] in self.pending:
                self.pending.pop(msg["id"]).set_result(msg)
            elif msg.get("method") == "log.entryAdded":
                p = msg["params"]
                if p.get("level") == "error":
                    self.errors.append(f"{p.get('type')}: {p.get('text')}")

    async def call(self, method, **params):
        i = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        await self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        msg = await asyncio.wait_for(fut, 30)
        if msg.get("type") == "error" or "error" in msg:
            raise RuntimeError(f"{method}: {msg.get('error')}: {msg.get('message')}")
        return msg["result"]


async def run(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/session", max_size=None) as ws:
        b = Bidi(ws)
        await b.call("session.new", capabilities={})
        await b.call("session.subscribe", events=["log.entryAdded"])
        ctx = (await b.call("browsingContext.getTree"))["contexts"][0]["context"]

        async def js(expr):
            r = await b.call("script.evaluate", expression=expr, target={"context": ctx},
                             awaitPromise=True, resultOwnership="none")
            if r["type"] != "success":
                raise AssertionError(f"script failed: {r.get('exceptionDetails', {}).get('text')}: {expr[:80]}")
            return r["result"].get("value")

        async def until(what, expr, timeout=15):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if await js(expr):
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"timed out waiting for {what}")

        def step(name):
            assert not b.errors, f"Firefox console errors before '{name}': {b.errors}"
            print(f"ok  firefox: {name}", flush=True)

        await b.call("browsingContext.navigate", context=ctx, url=CONSOLE, wait="complete")
        await until("the sign-in page", "document.querySelector('h1') && document.querySelector('h1').textContent === 'VPC Endpoint'")
        step("the modules load under the CSP and show the sign-in page")

        vectors = json.load(open(ENV["SIGNING_VECTORS"]))
        got = json.loads(await js("""(async () => {
            const api = await import('./api.js');
            const out = [];
            for (const v of %s) {
                const headers = v.headers.filter(([n]) => n.toLowerCase() !== 'authorization');
                out.push((await api.sign({ak: v.ak, sk: v.sk, method: v.method, target: v.request_target,
                                          headers, body: v.body || ''})).authorization);
            }
            return JSON.stringify(out);
        })()""" % json.dumps(vectors)))
        assert got == [v["authorization"] for v in vectors], got
        step(f"the WebCrypto signer gives the {len(vectors)} signing vectors")

        await js("""(() => {
            const tab = [...document.querySelectorAll('[role=tab]')].find((t) => t.textContent === 'Access Key');
            tab.click();
            const set = (label, value) => {
                const l = [...document.querySelectorAll('label')].find((x) => x.textContent === label && x.offsetParent);
                const el = document.getElementById(l.htmlFor);
                el.value = value;
                el.dispatchEvent(new Event('input', {bubbles: true}));
            };
            set('Access Key ID', %s); set('Secret Access Key', %s); set('Project ID', %s);
            [...document.querySelectorAll('button')].find((x) => x.textContent === 'Log In with Access Key').click();
            return true;
        })()""" % (json.dumps(AK), json.dumps(SK), json.dumps(PROJECT)))
        await until("the service list", "document.querySelector('h1') && document.querySelector('h1').textContent === 'VPC Endpoint Services'")
        await until("the list's rows", "document.querySelector('table tbody tr') !== null")
        step("an AK/SK sign-in reaches VPC Endpoint Services (signed reads)")

        for hash_, title in (("#/endpoints", "VPC Endpoints"), ("#/services/create", "Create Endpoint Service"),
                             ("#/endpoints/apply?category=name", "Apply for Endpoint"), ("#/settings", "My Settings")):
            await js(f"location.hash = {json.dumps(hash_)}; true")
            await until(title, f"document.querySelector('h1') && document.querySelector('h1').textContent === {json.dumps(title)}")
            step(f"{hash_} renders {title}")

        await js("location.hash = '#/endpoints'; true")
        await until("the endpoints page", "document.querySelector('h1').textContent === 'VPC Endpoints'")
        await js("[...document.querySelectorAll('button')].find((x) => x.textContent === 'Apply for Endpoint').click(); true")
        await until("the Select Service dialog", "document.querySelector('dialog[open]') !== null")
        assert await js("document.activeElement.id === 'cat-name'"), "the dialog's first field has the focus"
        await b.call("input.performActions", context=ctx, actions=[{"type": "key", "id": "kb", "actions": [
            {"type": "keyDown", "value": "\ue00c"}, {"type": "keyUp", "value": "\ue00c"}]}])
        await until("Escape to close the dialog", "document.querySelector('dialog') === null")
        step("a dialog focuses its first field and closes with Escape")
        assert not b.errors, b.errors
        # The error channel itself works: a console error in the page is seen.
        await js("console.error('probe from the smoke test'); true")
        end = time.monotonic() + 5
        while not b.errors and time.monotonic() < end:
            await asyncio.sleep(0.05)
        assert b.errors and "probe from the smoke test" in b.errors[0], b.errors
        print("ok  firefox: (the console error channel is live: a probe error was seen)")
        b.reader.cancel()


def main():
    firefox = ENV.get("FIREFOX", "/usr/bin/firefox-esr")
    profile = tempfile.mkdtemp(prefix="vpcep-ff.")
    port = 20000 + int.from_bytes(os.urandom(2), "big") % 20000
    log = open(os.path.join(profile, "firefox.log"), "w")
    proc = subprocess.Popen([firefox, "--headless", "--no-remote", "--profile", profile,
                             f"--remote-debugging-port={port}", "about:blank"],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(ENV, MOZ_CRASHREPORTER_DISABLE="1"))
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            text = open(os.path.join(profile, "firefox.log")).read()
            if re.search(r"WebDriver BiDi listening on ws://", text):
                break
            if proc.poll() is not None:
                raise SystemExit(f"firefox exited: {text}")
            time.sleep(0.1)
        else:
            raise SystemExit("firefox did not start its WebDriver BiDi listener")
        t0 = time.monotonic()
        asyncio.run(asyncio.wait_for(run(port), 120))
        print(f"firefox smoke: passed in {time.monotonic() - t0:.1f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except BaseException as e:  # noqa: BLE001
        print(f"firefox smoke: FAILED: {e!r}")
        sys.exit(1)
