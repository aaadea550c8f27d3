#!/usr/bin/env python3
"""The console walk: every procedure of the user guide's chapters 4 and 5 (and the FAQs of
chapter 6 that have a page), done in a real browser (Debian's chromium, headless, driven by
Playwright) by a provider and a user in two browser contexts. Each result is checked through
the API (the official SDK, or a request signed here in Python), never through the page.
Bad input shows the API's message and changes nothing. The browser's console must stay free
of errors. PROCEDURES.md maps the guide's procedures to the steps below.

Environment (set by tests/console/run.sh or tests/tests/netns/console.rs):
  CONSOLE_URL      the console, e.g. http://127.0.0.1:9797/console/
  API_URL          the API for the checks (default: CONSOLE_URL's origin)
  PROVIDER_KEYS, USER_KEYS   "AK:SK:PROJECT_ID:DOMAIN_ID"
  PROVIDER_LOGIN, USER_LOGIN "name:password" (console users: password sign-in, the token's
                   401 and 429 steps; without them the walk signs in with AK/SK and checks
                   the token flow against a stand-in POST /v3/auth/tokens)
  PROVIDER_VPC, PROVIDER_SUBNET, PROVIDER_PORT (a VM port: the backend), USER_VPC, USER_SUBNET
  SPARE_PORT       another VM port of the provider's subnet (optional: the 6.7 Associate step)
  LB_PORT          an LB port of the provider's VPC (optional: the Elastic Load Balance step)
  CLIENT_NS        the user's client namespace (the curl steps; WALK_NO_NETWORK=1 skips them,
                   and says so, for a vpcepd with no dataplane world)
  EP_IP            the endpoint address the walk asks for (default 10.0.0.200)
  BACKEND_BODY     what the backend answers on port 80
  GATEWAY          "1" if a gateway service ("obs") is configured
  SCREENSHOTS      directory for one screenshot per page (optional)
  SIGNING_VECTORS  path of signing-vectors.json
  WALK_TIMEOUT     seconds for the whole walk (default 300)
"""
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone

from playwright.sync_api import expect, sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ENV = os.environ
CONSOLE = ENV["CONSOLE_URL"]
API = ENV.get("API_URL") or "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(CONSOLE))
SHOTS = ENV.get("SCREENSHOTS")
EP_IP = ENV.get("EP_IP", "10.0.0.200")
WAIT = 20_000  # ms: the longest an expect waits for the page (polling is every 4 s)
NET_ERROR = "Failed to load resource: the server responded with a status of"


class Tenant:
    def __init__(self, keys, login):
        self.ak, self.sk, self.project, self.domain = keys.split(":")
        self.login = login.split(":", 1) if login else None


PROVIDER = Tenant(ENV["PROVIDER_KEYS"], ENV.get("PROVIDER_LOGIN"))
USER = Tenant(ENV["USER_KEYS"], ENV.get("USER_LOGIN"))


# ---- checks through the API: requests signed here (SDK-HMAC-SHA256, API.md section 3) ----

def q(s):
    return urllib.parse.quote(s, safe="~")


def call(t, method, path, body=None, query=None):
    """A signed request as tenant `t` to /v1/{project}{path}; (status, json or None)."""
    full = f"/v1/{t.project}{path}"
    qs = "&".join(f"{q(k)}={q(str(v))}" for k, v in sorted((query or {}).items()))
    data = json.dumps(body).encode() if body is not None else b""
    u = urllib.parse.urlsplit(API)
    date = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Type": "application/json;charset=utf-8" if data else "application/json",
               "Host": u.netloc, "X-Project-Id": t.project, "X-Sdk-Date": date}
    if method != "GET":
        headers["X-Request-Nonce"] = uuid.uuid4().hex
    signed = sorted(headers)
    cano = "\n".join([
        method,
        "/".join(q(urllib.parse.unquote(s)) for s in full.split("/")) + "/",
        qs,
        "".join(f"{h.lower()}:{headers[h].strip()}\n" for h in signed),
        ";".join(h.lower() for h in signed),
        hashlib.sha256(data).hexdigest(),
    ])
    sts = f"SDK-HMAC-SHA256\n{date}\n{hashlib.sha256(cano.encode()).hexdigest()}"
    sig = hmac.new(t.sk.encode(), sts.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"SDK-HMAC-SHA256 Access={t.ak}, "
                                f"SignedHeaders={';'.join(h.lower() for h in signed)}, Signature={sig}")
    req = urllib.request.Request(f"{API}{full}{'?' + qs if qs else ''}", data=data or None,
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text.decode(errors="replace")


def get(t, path, **query):
    status, body = call(t, "GET", path, query=query)
    assert status == 200, f"GET {path}: {status} {body}"
    return body


def sdk(t):
    """The official SDK's client for tenant `t`."""
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.http.http_config import HttpConfig
    from huaweicloudsdkvpcep.v1 import VpcepClient
    return (VpcepClient.new_builder().with_http_config(HttpConfig.get_default_config())
            .with_credentials(BasicCredentials(t.ak, t.sk, t.project)).with_endpoints([API]).build())


def until(what, fn, timeout=20.0):
    """Poll the API (not the page) until fn() is truthy; its value."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except AssertionError as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


def curl(url, timeout=5):
    """curl from the user's client namespace: (exit code, body)."""
    ns = ENV["CLIENT_NS"]
    r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sf", "-m", str(timeout), url],
                       capture_output=True, text=True, timeout=timeout + 5)
    return r.returncode, r.stdout


# ---- the walk ----

class Walk:
    def __init__(self, browser):
        self.browser = browser
        self.errors = []         # browser console errors and page errors
        self.http_errors = 0     # expected error answers logged by the browser
        self.expect_http = False
        self.steps = []
        self.pages = {}

    def page(self, who):
        ctx = self.browser.new_context(viewport={"width": 1280, "height": 860})
        pg = ctx.new_page()
        pg.set_default_timeout(WAIT)

        def on_console(m):
            if m.type != "error":
                return
            if m.text.startswith(NET_ERROR) and self.expect_http:
                self.http_errors += 1
                return
            self.errors.append(f"[{who} console] {m.text}")

        pg.on("console", on_console)
        pg.on("pageerror", lambda e: self.errors.append(f"[{who} pageerror] {e}"))
        self.pages[who] = pg
        return pg

    def step(self, name, fn, bad_input=False):
        t0 = time.monotonic()
        self.expect_http = bad_input
        print(f"--- {name}", flush=True)
        try:
            fn()
        finally:
            self.expect_http = False
        assert not self.errors, f"browser console errors during '{name}': {self.errors}"
        self.steps.append((name, time.monotonic() - t0))
        print(f"ok  {name} ({time.monotonic() - t0:.1f} s)", flush=True)

    def shot(self, pg, name):
        """Check the page's accessibility basics, then screenshot it."""
        bad = pg.evaluate("""() => {
            const out = [];
            for (const el of document.querySelectorAll('input, select, textarea')) {
                if (el.type === 'hidden' || el.closest('[hidden]')) continue;
                if (!el.labels.length && !el.getAttribute('aria-label')) out.push('unlabelled ' + (el.id || el.name || el.outerHTML));
            }
            for (const el of document.querySelectorAll('[style], [onclick], [onchange], [onsubmit]')) out.push('inline attribute: ' + el.outerHTML.slice(0, 80));
            for (const el of document.querySelectorAll('[role=button]:not(button), a:not([href])')) out.push('not a button/link: ' + el.outerHTML.slice(0, 80));
            return out;
        }""")
        assert not bad, f"page {name}: {bad}"
        if SHOTS:
            pg.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def sign_in(pg, t, wrong=False):
    pg.goto(CONSOLE)
    expect(pg.get_by_role("heading", name="VPC Endpoint")).to_be_visible()
    if t.login:
        name, pw = t.login
        pg.get_by_label("Username").fill(name)
        pg.get_by_label("Password", exact=True).fill(pw + ("x" if wrong else ""))
        pg.get_by_role("button", name="Log In", exact=True).click()
    else:
        pg.get_by_role("tab", name="Access Key").click()
        pg.get_by_label("Access Key ID").fill(t.ak)
        pg.get_by_label("Secret Access Key").fill(t.sk + ("x" if wrong else ""))
        pg.get_by_label("Project ID", exact=True).fill(t.project)
        pg.get_by_role("button", name="Log In with Access Key").click()


def nav(pg, item):
    """The guide's Step 2: in the navigation pane, choose VPC Endpoint > item."""
    pg.get_by_role("navigation", name="Network Console").get_by_role("link", name=item, exact=True).click()
    expect(pg.get_by_role("heading", name=item, exact=True)).to_be_visible()


def row(pg, text):
    # A row of the page's lists (the Traffic section's table of figures is not one).
    return pg.locator("table:not([aria-label='Traffic by connection']) tr").filter(has_text=text)


def dialog(pg):
    return pg.get_by_role("dialog")


def main():
    deadline = int(ENV.get("WALK_TIMEOUT", "300"))
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError(f"the walk took more than {deadline} s")))
    signal.alarm(deadline)
    t_start = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=ENV.get("CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS)
        w = Walk(browser)
        try:
            run(w)
        except BaseException:
            for who, pg in w.pages.items():
                try:
                    if SHOTS:
                        pg.screenshot(path=os.path.join(SHOTS, f"FAILED-{who}.png"), full_page=True)
                except Exception:  # noqa: BLE001 (best effort on the way out)
                    pass
            raise
        finally:
            browser.close()
    total = time.monotonic() - t_start
    print(f"walk: {len(w.steps)} steps passed in {total:.1f} s "
          f"({w.http_errors} expected error answers logged by the browser, no console errors)")


def run(w):
    st = {}
    vectors = json.load(open(ENV["SIGNING_VECTORS"]))
    prov = w.page("provider")
    user = w.page("user")
    pvpc, psub, pport = ENV["PROVIDER_VPC"], ENV["PROVIDER_SUBNET"], ENV["PROVIDER_PORT"]
    uvpc, usub = ENV["USER_VPC"], ENV["USER_SUBNET"]

    def signer_vectors():
        resp = prov.goto(CONSOLE)
        csp = resp.headers.get("content-security-policy", "")
        for rule in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"):
            assert rule in csp, f"the console is served without {rule!r}: {csp!r}"
        got = prov.evaluate("""async (vectors) => {
            const api = await import('./api.js');
            const out = [];
            for (const v of vectors) {
                const headers = v.headers.filter(([n]) => n.toLowerCase() !== 'authorization');
                const s = await api.sign({ak: v.ak, sk: v.sk, method: v.method, target: v.request_target,
                                          headers, body: v.body || ''});
                out.push([s.authorization, s.canonicalRequest, s.stringToSign]);
            }
            return out;
        }""", vectors)
        assert len(got) == len(vectors) >= 4
        for v, (auth, cano, sts) in zip(vectors, got):
            assert cano == v["canonical_request"], f"canonical request of {v['request_target']}:\n{cano}"
            assert sts == v["string_to_sign"]
            assert auth == v["authorization"], f"{auth} != {v['authorization']}"
        w.shot(prov, "signin")
    w.step("the console is served with the strict CSP; its JS signer (WebCrypto) gives the signing vectors' "
           "canonical requests and signatures", signer_vectors)

    def wrong_secret():
        sign_in(prov, PROVIDER, wrong=True)
        expect(prov.get_by_role("alert").filter(has_text="APIGW.0301")).to_be_visible()
        expect(prov.get_by_role("heading", name="VPC Endpoint Services")).to_have_count(0)
        assert prov.evaluate("sessionStorage.length") == 0
    w.step("6.2 sign-in with a wrong %s shows APIGW.0301 and stays signed out"
           % ("password" if PROVIDER.login else "secret key"), wrong_secret, bad_input=True)

    def both_sign_in():
        sign_in(prov, PROVIDER)
        expect(prov.get_by_role("heading", name="VPC Endpoint Services")).to_be_visible()
        sign_in(user, USER)
        expect(user.get_by_role("heading", name="VPC Endpoint Services")).to_be_visible()
        w.shot(prov, "services-empty")
    w.step("6.2 the provider and the user sign in (two browser contexts)", both_sign_in)

    def my_settings():
        user.get_by_role("button", name=USER.login[0] if USER.login else USER.ak).click()
        user.get_by_role("menuitem", name="My Settings").click()
        expect(user.get_by_role("heading", name="My Settings")).to_be_visible()
        expect(user.locator("#settings-project-id")).to_have_text(USER.project)
        if USER.login:
            expect(user.locator("#settings-tenant-id")).to_have_text(USER.domain)
        st["user_tenant"] = USER.domain if not USER.login else user.locator("#settings-tenant-id").inner_text()
        w.shot(user, "my-settings")
    w.step("6.6 the user reads the tenant ID and project ID in My Settings", my_settings)

    # 4.1 Creating an Endpoint Service, with a bad port first.
    def create_bad_port():
        nav(prov, "VPC Endpoint Services")
        prov.get_by_role("button", name="Create Endpoint Service").click()
        expect(prov.get_by_role("heading", name="Create Endpoint Service")).to_be_visible()
        prov.get_by_label("Name", exact=True).fill("web")
        prov.get_by_label("VPC", exact=True).select_option(pvpc)
        expect(prov.get_by_label("Service Type")).to_have_value("interface")
        prov.get_by_label("Cloud Server").check()
        prov.get_by_label("Subnet").select_option(psub)
        prov.get_by_label("ECS").select_option(pport)
        prov.get_by_label("Service Port").fill("80")
        prov.get_by_label("Client Port").fill("70000")
        before = get(PROVIDER, "/vpc-endpoint-services")["total_count"]
        prov.get_by_role("button", name="Create Now").click()
        err = prov.locator("#svc-ports-error")
        expect(err).to_contain_text("EndPoint.")
        expect(err).to_contain_text("70000")
        assert get(PROVIDER, "/vpc-endpoint-services")["total_count"] == before, "nothing created"
        w.shot(prov, "create-endpoint-service-error")
    w.step("4.1 Create Endpoint Service with client port 70000: the API's message at Port Mapping, nothing created",
           create_bad_port, bad_input=True)

    def create_ok():
        prov.get_by_label("Client Port").fill("8080")
        prov.get_by_label("Connection Approval").check()
        prov.get_by_label("Client Identity").select_option("close")
        prov.get_by_label("Description").fill("walk service")
        prov.get_by_role("button", name="Add Tag").click()
        prov.get_by_label("Tag key").fill("env")
        prov.get_by_label("Tag value").fill("walk")
        prov.get_by_role("button", name="Create Now").click()
        expect(prov.get_by_role("tab", name="Connection Management")).to_be_visible()
        sid = prov.url.split("#/services/")[1].split("/")[0]
        s = get(PROVIDER, f"/vpc-endpoint-services/{sid}")
        assert s["ports"] == [{"client_port": 8080, "server_port": 80, "protocol": "TCP"}], s["ports"]
        assert s["approval_enabled"] is True and s["server_type"] == "VM" and s["port_id"] == pport, s
        assert s["vpc_id"] == pvpc and s["tcp_proxy"] == "close" and s["description"] == "walk service", s
        assert {"key": "env", "value": "walk"} in s["tags"], s["tags"]
        assert ".web." in s["service_name"], s["service_name"]
        # The SDK sees the same service.
        from huaweicloudsdkvpcep.v1 import ListServiceDetailsRequest
        got = sdk(PROVIDER).list_service_details(ListServiceDetailsRequest(vpc_endpoint_service_id=sid))
        assert got.service_name == s["service_name"] and got.ports[0].client_port == 8080
        st["sid"], st["sname"] = sid, s["service_name"]
        info = prov.get_by_role("region", name="Basic Information")
        expect(info).to_contain_text(s["service_name"])
        expect(info).to_contain_text("Connectable")  # Table 6-2
        expect(info).to_contain_text("Cloud Server")
        expect(info).to_contain_text("10.0.0.10")    # NIC
        w.shot(prov, "endpoint-service")
    w.step("4.1 Create Now with TCP 80 -> 8080, approval, tag: the service exists as entered and shows Connectable", create_ok)

    def listed():
        nav(prov, "VPC Endpoint Services")
        r = row(prov, st["sname"])
        expect(r).to_contain_text("Connectable")
        expect(r).to_contain_text("Cloud Server")
        expect(r).to_contain_text("Enabled")
        prov.get_by_label("Search by name").fill("no-such-service")
        prov.get_by_role("button", name="Search").click()
        expect(row(prov, st["sname"])).to_have_count(0)
        prov.get_by_label("Search by name").fill("web")
        prov.get_by_role("button", name="Search").click()
        expect(row(prov, st["sname"])).to_have_count(1)
        w.shot(prov, "services")
    w.step("5.1 the service list shows name, ID, status, backend type, approval; search by name", listed)

    if PROVIDER.login:
        def operator_keys():
            op = w.page("operator")
            sign_in(op, Tenant(ENV["PROVIDER_KEYS"], None))
            expect(row(op, st["sname"])).to_contain_text("Connectable")
            op.get_by_role("link", name=st["sname"]).click()
            op.get_by_role("tab", name="Tags").click()
            op.get_by_role("button", name="Add Tag").click()
            dialog(op).get_by_label("Key").fill("signed")
            dialog(op).get_by_label("Value").fill("aksk")
            dialog(op).get_by_role("button", name="OK").click()
            expect(row(op, "signed")).to_contain_text("aksk")
            tags = {t["key"]: t["value"] for t in get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}")["tags"]}
            assert tags.get("signed") == "aksk", tags
            call(PROVIDER, "POST", f"/endpoint_service/{st['sid']}/tags/action",
                 {"action": "delete", "tags": [{"key": "signed"}]})
            op.context.close()
            del w.pages["operator"]
        w.step("6.2 an operator signs in with AK/SK + project ID: reads the list, writes a tag (signed in the browser)",
               operator_keys)

    # 6.5: the user cannot see the service before being whitelisted; an unknown name fails Verify.
    lb_port = ENV.get("LB_PORT")
    if lb_port:
        def elb_service():
            nav(prov, "VPC Endpoint Services")
            prov.get_by_role("button", name="Create Endpoint Service").click()
            prov.get_by_label("Name", exact=True).fill("lbsvc")
            prov.get_by_label("VPC", exact=True).select_option(pvpc)
            prov.get_by_role("radio", name="Elastic Load Balance").check()
            expect(prov.get_by_label("ECS")).to_be_hidden()
            prov.get_by_role("combobox", name="Elastic Load Balance").select_option(lb_port)
            prov.get_by_label("Connection Approval").uncheck()
            prov.get_by_label("Service Port").fill("443")
            prov.get_by_label("Client Port").fill("443")
            prov.get_by_role("button", name="Create Now").click()
            info = prov.get_by_role("region", name="Basic Information")
            expect(info).to_contain_text("lbsvc")
            lid = prov.url.split("#/services/")[1].split("/")[0]
            s = get(PROVIDER, f"/vpc-endpoint-services/{lid}")
            assert s["server_type"] == "LB" and s["port_id"] == lb_port and s["approval_enabled"] is False, s
            expect(info).to_contain_text("Elastic Load Balance")
            expect(info).to_contain_text("Disabled")
            prov.get_by_role("button", name="Delete", exact=True).first.click()
            dialog(prov).get_by_role("button", name="OK").click()
            expect(prov.get_by_role("heading", name="VPC Endpoint Services")).to_be_visible()
            until("the LB service to be gone", lambda: call(PROVIDER, "GET", f"/vpc-endpoint-services/{lid}")[0] == 404)
        w.step("4.1 Create Endpoint Service on an Elastic Load Balance without approval; Delete on its page, OK",
               elb_service)

    def paging():
        made = []
        for i in range(11):
            status, port = call(PROVIDER, "POST", "/ports", {"port": {"subnet_id": psub, "server_type": "VM",
                                                                      "ip": f"10.0.0.{100 + i}", "name": f"pg{i}"}})
            assert status == 200, (status, port)
            status, svc = call(PROVIDER, "POST", "/vpc-endpoint-services", {
                "vpc_id": pvpc, "port_id": port["port"]["id"], "server_type": "VM", "service_name": f"pg{i}",
                "ports": [{"protocol": "TCP", "client_port": 80, "server_port": 80}]})
            assert status == 200, (status, svc)
            made.append((svc["id"], port["port"]["id"]))
        nav(prov, "VPC Endpoint Services")
        expect(prov.locator(".pager-info")).to_contain_text("Page 1 of 2 · Total records: 12")
        expect(prov.get_by_role("table", name="Endpoint services").locator("tbody tr")).to_have_count(10)
        prov.get_by_role("button", name="Next").click()
        expect(prov.locator(".pager-info")).to_contain_text("Page 2 of 2")
        expect(prov.get_by_role("table", name="Endpoint services").locator("tbody tr")).to_have_count(2)
        prov.get_by_label("Page size").select_option("20")
        expect(prov.get_by_role("table", name="Endpoint services").locator("tbody tr")).to_have_count(12)
        for sid, pid in made:
            assert call(PROVIDER, "DELETE", f"/vpc-endpoint-services/{sid}")[0] == 204
            assert call(PROVIDER, "DELETE", f"/ports/{pid}")[0] == 204
        # The list follows by itself (polling): one service again.
        expect(prov.get_by_role("table", name="Endpoint services").locator("tbody tr")).to_have_count(1)
        expect(prov.locator(".pager-info")).to_contain_text("Total records: 1")
    w.step("5.1 the service list pages (12 services: 10 a page, Next, 20 a page) and follows deletions by itself", paging)

    def verify_unlisted():
        nav(user, "VPC Endpoints")
        user.get_by_role("button", name="Apply for Endpoint").click()
        d = dialog(user)
        expect(d.get_by_role("heading", name="Select Service")).to_be_visible()
        expect(d.get_by_label("Find a service by name")).to_be_focused()
        d.get_by_role("button", name="Apply Now").click()
        expect(user.get_by_role("heading", name="Apply for Endpoint")).to_be_visible()
        user.get_by_label("Endpoint Service Name").fill("region-1.nosuch.00000000-0000-0000-0000-000000000000")
        user.get_by_role("button", name="Verify").click()
        expect(user.locator("#ep-service-name-error")).to_contain_text("EndPoint.")
        user.get_by_label("Endpoint Service Name").fill(st["sname"])
        user.get_by_role("button", name="Verify").click()
        expect(user.locator("#ep-service-name-error")).to_contain_text("EndPoint.")
        expect(user.locator("#ep-service-name-error")).to_contain_text("add your tenant ID")
        expect(user.locator(".verified")).to_be_hidden()
        status, _ = call(USER, "GET", "/vpc-endpoint-services/describe", query={"endpoint_service_name": st["sname"]})
        assert status == 404, f"the user must not see the service yet: {status}"
        w.shot(user, "apply-verify-error")
    w.step("6.5 before the whitelist, Verify fails for the provider's service (and for an unknown name)",
           verify_unlisted, bad_input=True)

    # 4.2 Modifying the Whitelist.
    def whitelist():
        prov.get_by_role("link", name=st["sname"]).click()
        expect(prov.get_by_role("heading", name=st["sname"])).to_be_focused()  # a new page: its title
        prov.get_by_role("tab", name="Permission Management").click()
        expect(prov.get_by_role("button", name="Add More")).to_be_visible()
        expect(prov.get_by_role("tab", name="Permission Management")).to_be_focused()  # another tab: the tab
        prov.keyboard.press("ArrowRight")  # the ARIA tabs pattern: arrows move along the tabs
        expect(prov.get_by_role("tab", name="Port Mapping")).to_be_focused()
        prov.keyboard.press("ArrowLeft")
        expect(prov.get_by_role("tab", name="Permission Management")).to_be_focused()
        for tenant in (st["user_tenant"], "dwalkother1"):
            prov.get_by_role("button", name="Add More").click()
            d = dialog(prov)
            expect(d.get_by_label("Authorized Tenant ID")).to_be_focused()
            d.get_by_label("Authorized Tenant ID").fill(tenant)
            d.get_by_label("Description").fill(f"walk {tenant}")
            d.get_by_role("button", name="OK").click()
            expect(d).to_have_count(0)
            expect(row(prov, tenant)).to_contain_text(f"walk {tenant}")
        # The keyboard alone: Enter on Add More, type, Tab, type, Enter submits.
        prov.get_by_role("button", name="Add More").focus()
        prov.keyboard.press("Enter")
        expect(dialog(prov).get_by_label("Authorized Tenant ID")).to_be_focused()
        prov.keyboard.type("dwalkother2")
        prov.keyboard.press("Tab")
        prov.keyboard.type("walk dwalkother2")
        prov.keyboard.press("Enter")
        expect(dialog(prov)).to_have_count(0)
        expect(row(prov, "dwalkother2")).to_have_count(1)
        perms = lambda: sorted(p["permission"] for p in get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}/permissions")["permissions"])
        assert perms() == sorted(f"iam:domain::{t}" for t in (st["user_tenant"], "dwalkother1", "dwalkother2")), perms()
        w.shot(prov, "permission-management")
        # One by its own Delete, one with the checkbox and Delete above the list.
        row(prov, "dwalkother1").get_by_role("button", name="Delete").click()
        dialog(prov).get_by_role("button", name="OK").click()
        expect(row(prov, "dwalkother1")).to_have_count(0)
        row(prov, "dwalkother2").get_by_role("checkbox").check()
        prov.get_by_role("tabpanel").get_by_role("button", name="Delete", exact=True).first.click()
        dialog(prov).get_by_role("button", name="OK").click()
        expect(row(prov, "dwalkother2")).to_have_count(0)
        assert perms() == [f"iam:domain::{st['user_tenant']}"], perms()
    w.step("4.2 Add More (three tenants), Delete one in its row and one above the list: the whitelist holds the user",
           whitelist)

    # 4.3 Applying for an Endpoint (interface): three endpoints, one at a chosen address.
    def apply(ip=None, dns=False, duration=None, whitelist=None, tag=None):
        nav(user, "VPC Endpoints")
        user.get_by_role("button", name="Apply for Endpoint").click()
        d = dialog(user)
        d.get_by_label("Find a service by name").check()
        d.get_by_role("button", name="Apply Now").click()
        user.get_by_label("Endpoint Service Name").fill(st["sname"])
        user.get_by_role("button", name="Verify").click()
        expect(user.locator(".verified")).to_contain_text(st["sname"])
        user.get_by_label("VPC", exact=True).select_option(uvpc)
        user.get_by_label("Subnet").select_option(usub)
        if ip:
            user.get_by_label("Manual").check()
            user.get_by_label("IP Address").fill(ip)
        else:
            user.get_by_label("Automatic").check()
        if dns:
            user.get_by_label("Internal Network Domain Name").check()
        if duration:
            user.get_by_label("Required Duration").select_option(label=duration)
        if whitelist:
            user.get_by_label("Access Control (source whitelist)").check()
            user.get_by_label("Whitelist", exact=True).fill(whitelist)
        if tag:
            user.get_by_role("button", name="Add Tag").click()
            user.get_by_label("Tag key").fill(tag[0])
            user.get_by_label("Tag value").fill(tag[1])
        if ip:
            w.shot(user, "apply-for-endpoint")
        user.get_by_role("button", name="Apply Now").click()
        expect(user.get_by_role("heading", name="Basic Information")).to_be_visible()
        return user.url.split("#/endpoints/")[1]

    def apply_bad_ip():
        before = get(USER, "/vpc-endpoints")["total_count"]
        nav(user, "VPC Endpoints")
        user.get_by_role("button", name="Apply for Endpoint").click()
        dialog(user).get_by_role("button", name="Apply Now").click()
        user.get_by_label("Endpoint Service Name").fill(st["sname"])
        user.get_by_label("VPC", exact=True).select_option(uvpc)
        user.get_by_label("Subnet").select_option(usub)
        user.get_by_label("Manual").check()
        user.get_by_label("IP Address").fill("10.9.9.9")
        user.get_by_role("button", name="Apply Now").click()  # verifies the name on the way
        expect(user.locator("#ep-ip-error")).to_contain_text("EndPoint.")
        expect(user.locator(".verified")).to_contain_text(st["sname"])
        assert get(USER, "/vpc-endpoints")["total_count"] == before, "nothing created"
        w.shot(user, "apply-ip-error")
    w.step("4.3 Apply Now with a manual IP outside the subnet: the API's message at IP Address, nothing created",
           apply_bad_ip, bad_input=True)

    def apply_three():
        a = apply(ip=EP_IP, dns=True, duration="1 hour", whitelist="10.0.0.0/24", tag=("app", "walk"))
        e = get(USER, f"/vpc-endpoints/{a}")
        assert e["ip"] == EP_IP and e["enable_dns"] is True and e["status"] == "pendingAcceptance", e
        assert e["whitelist"] == ["10.0.0.0/24"] and e["enable_whitelist"] is True, e
        assert e["endpoint_service_id"] == st["sid"] and e["vpc_id"] == uvpc and e["subnet_id"] == usub, e
        assert {"key": "app", "value": "walk"} in e["tags"], e["tags"]
        exp = datetime.strptime(e["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        left = (exp - datetime.now(timezone.utc)).total_seconds()
        assert 3300 < left <= 3605, f"1 hour asked, {left} s left"
        expect(user.get_by_role("region", name="Basic Information")).to_contain_text("Awaiting acceptance")
        w.shot(user, "endpoint-awaiting")
        b = apply()
        c = apply()
        for x in (b, c):
            assert get(USER, f"/vpc-endpoints/{x}")["status"] == "pendingAcceptance"
        st["a"], st["b"], st["c"] = a, b, c
        st["a_exp"] = exp
    w.step("4.3 Apply Now (by name, Verify): one at a manual IP with a domain name, 1 hour, a whitelist and a tag; "
           "two automatic", apply_three)

    # 4.4 / 5.2 Managing connections: reject one, accept two at once, a description.
    def connections():
        prov.get_by_role("tab", name="Connection Management").click()
        for x in (st["a"], st["b"], st["c"]):
            expect(row(prov, x)).to_contain_text("Awaiting acceptance")  # appears by polling
        w.shot(prov, "connection-management")
        row(prov, st["c"]).get_by_role("button", name="Reject").click()
        expect(row(prov, st["c"])).to_contain_text("Rejected")
        # The user is still on the page of the last endpoint applied for (C): it changes by
        # itself, no reload, no navigation.
        assert user.url.endswith(f"#/endpoints/{st['c']}"), user.url
        expect(user.get_by_role("region", name="Basic Information")).to_contain_text("Rejected")
        expect(user.locator("#status-reason")).to_contain_text("rejected")
        row(prov, st["a"]).get_by_role("checkbox").check()
        row(prov, st["b"]).get_by_role("checkbox").check()
        prov.locator(".toolbar").get_by_role("button", name="Accept", exact=True).click()
        expect(row(prov, st["a"])).to_contain_text("Accepted")
        expect(row(prov, st["b"])).to_contain_text("Accepted")
        from huaweicloudsdkvpcep.v1 import ListServiceConnectionsRequest
        conns = sdk(PROVIDER).list_service_connections(ListServiceConnectionsRequest(vpc_endpoint_service_id=st["sid"], limit=100))
        got = {c.id: c.status for c in conns.connections}
        assert got == {st["a"]: "accepted", st["b"]: "accepted", st["c"]: "rejected"}, got
        prov.get_by_label("Status", exact=True).select_option(label="Rejected")
        expect(row(prov, st["c"])).to_have_count(1)
        expect(row(prov, st["a"])).to_have_count(0)
        prov.get_by_label("Status", exact=True).select_option(label="All statuses")
        expect(row(prov, st["a"])).to_have_count(1)
        row(prov, st["a"]).get_by_role("button", name="Edit Description").click()
        dialog(prov).get_by_label("Description").fill("frontend")
        dialog(prov).get_by_role("button", name="OK").click()
        expect(row(prov, st["a"])).to_contain_text("frontend")
        cs = get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}/connections")["connections"]
        assert [c["description"] for c in cs if c["id"] == st["a"]] == ["frontend"], cs
        expect(prov.get_by_role("region", name="Traffic")).to_be_attached()
    w.step("4.4/5.2 Connection Management: Reject one, Accept two at once, a description", connections)

    def user_sees_live():
        nav(user, "VPC Endpoints")
        user.get_by_role("link", name=st["a"]).click()
        expect(user.get_by_role("region", name="Basic Information")).to_contain_text("Accepted")
        e = get(USER, f"/vpc-endpoints/{st['a']}")
        assert e["dns_names"], e
        expect(user.get_by_role("region", name="Basic Information")).to_contain_text(e["dns_names"][0])
        expect(user.get_by_role("region", name="Basic Information")).to_contain_text(str(e["marker_id"]))
        expect(user.get_by_role("region", name="Traffic")).to_be_attached()
        w.shot(user, "endpoint")
        nav(user, "VPC Endpoints")
        expect(row(user, st["c"])).to_contain_text("Rejected")
        user.get_by_label("Search by service name").fill("no-such-service")
        user.get_by_role("button", name="Search").click()
        expect(row(user, st["c"])).to_have_count(0)
        user.get_by_label("Search by service name").fill("web")
        user.get_by_role("button", name="Search").click()
        expect(row(user, st["c"])).to_have_count(1)
        w.shot(user, "endpoints")
        user.get_by_role("link", name=st["c"]).click()
        expect(user.locator("#status-reason")).to_contain_text("rejected")
    w.step("the user's pages show Accepted, the domain name, the packet ID, and Rejected with its reason", user_sees_live)

    body = ENV.get("BACKEND_BODY", "")

    def curl_through():
        until("the backend through the endpoint", lambda: curl(f"http://{EP_IP}:8080/") == (0, body), 20)
    network = ENV.get("WALK_NO_NETWORK") != "1"
    if network:
        w.step("curl from the user's VPC through the accepted endpoint (client port 8080)", curl_through)
    else:
        print("SKIPPED the curl steps (WALK_NO_NETWORK=1: no client namespace)")

    def short(n):
        # The page's short form of a count (ui.js count()) for the figures compared here.
        return str(n) if n < 1e4 else None

    def traffic_on_the_pages():
        path = f"/vpc-endpoints/{st['a']}/metrics"
        until("the curl's packets in the endpoint's figures",
              lambda: get(USER, path)["totals"]["packets_to_service"] > 0, 20)
        nav(user, "VPC Endpoints")
        user.get_by_role("link", name=st["a"]).click()
        region = user.get_by_role("region", name="Traffic")
        expect(region).to_contain_text("Packets (to service / to client)")

        def page_matches_api():
            t = get(USER, path)["totals"]
            want = f"{short(t['packets_to_service'])} / {short(t['packets_to_client'])}"
            return want if want in region.inner_text() else None
        until("the endpoint page to show the API's packet counts", page_matches_api, 20)
        w.shot(user, "endpoint-traffic")
        # The provider: the same connection's figures on Connection Management, by
        # endpoint id only.
        prov.get_by_role("tab", name="Connection Management").click()
        ptraffic = prov.get_by_role("region", name="Traffic")
        expect(ptraffic.get_by_role("table", name="Traffic by connection")).to_contain_text(st["a"])

        def provider_matches_api():
            c = [x for x in get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}/metrics")["connections"]
                 if x["endpoint_id"] == st["a"]]
            if not c:
                return None
            t = c[0]["totals"]
            want = f"{short(t['packets_to_service'])} / {short(t['packets_to_client'])}"
            return want if want in ptraffic.inner_text() else None
        until("the provider's page to show the connection's packet counts", provider_matches_api, 20)
        assert "10.0.0." not in ptraffic.inner_text(), "no user addresses on the provider's page"
    if network:
        w.step("the Traffic of the endpoint (user) and of its connection (provider) show the curl, as the API counts it", traffic_on_the_pages)

    # 5.3 Managing Port Mappings.
    def port_mappings():
        prov.get_by_role("tab", name="Port Mapping").click()
        r = row(prov, "8080")
        expect(r).to_contain_text("TCP")
        r.get_by_role("button", name="Modify").click()
        d = dialog(prov)
        expect(d.get_by_label("Protocol")).to_be_focused()
        d.get_by_label("Client Port").fill("9090")
        d.get_by_role("button", name="OK").click()
        expect(row(prov, "9090")).to_have_count(1)
        ports = lambda: get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}")["ports"]
        assert ports() == [{"client_port": 9090, "server_port": 80, "protocol": "TCP"}], ports()
        w.shot(prov, "port-mapping")
    w.step("5.3 Port Mapping: Modify TCP 80 -> 8080 into 80 -> 9090", port_mappings)

    def curl_new_port():
        until("the backend on the new client port", lambda: curl(f"http://{EP_IP}:9090/") == (0, body), 20)
        until("the old client port to close", lambda: curl(f"http://{EP_IP}:8080/", 2)[0] != 0, 20)
    if network:
        w.step("curl through the endpoint on the edited client port 9090 (8080 no longer answers)", curl_new_port)

    def endpoint_whitelist():
        nav(user, "VPC Endpoints")
        user.get_by_role("link", name=st["a"]).click()
        info = user.get_by_role("region", name="Basic Information")
        expect(info).to_contain_text("10.0.0.0/24")
        info.get_by_role("button", name="Modify whitelist").click()
        d = dialog(user)
        expect(d.get_by_label("Access Control (source whitelist)")).to_be_focused()
        d.get_by_label("Whitelist", exact=True).fill("10.0.0.128/25")
        d.get_by_role("button", name="OK").click()
        expect(info).to_contain_text("10.0.0.128/25")
        e = get(USER, f"/vpc-endpoints/{st['a']}")
        assert e["whitelist"] == ["10.0.0.128/25"] and e["enable_whitelist"] is True, e
        if network:  # the client (10.0.0.5) is outside the new whitelist
            until("the client to be refused", lambda: curl(f"http://{EP_IP}:9090/", 2)[0] != 0, 20)
        info.get_by_role("button", name="Modify whitelist").click()
        dialog(user).get_by_label("Whitelist", exact=True).fill("10.0.0.0/24")
        dialog(user).get_by_role("button", name="OK").click()
        expect(info).to_contain_text("10.0.0.0/24")
        assert get(USER, f"/vpc-endpoints/{st['a']}")["whitelist"] == ["10.0.0.0/24"]
        if network:
            until("the client to be let in again", lambda: curl(f"http://{EP_IP}:9090/") == (0, body), 20)
    w.step("the endpoint's source whitelist modified on its page: a client outside it is refused, then let in again",
           endpoint_whitelist)

    def endpoint_tags():
        # Still on endpoint A's page.
        tags = lambda: {t["key"]: t["value"] for t in get(USER, f"/vpc-endpoints/{st['a']}")["tags"]
                        if not t["key"].startswith("vpcep:")}
        panel = user.get_by_role("region", name="Tags")
        expect(row(panel, "app")).to_contain_text("walk")
        expect(panel).not_to_contain_text("vpcep:")  # the reserved tags stay out of sight
        panel.get_by_role("button", name="Add Tag").click()
        dialog(user).get_by_label("Key").fill("tier")
        dialog(user).get_by_label("Value").fill("web")
        dialog(user).get_by_role("button", name="OK").click()
        expect(row(panel, "tier")).to_contain_text("web")
        row(panel, "app").get_by_role("button", name="Delete").click()
        dialog(user).get_by_role("button", name="OK").click()
        expect(row(panel, "app")).to_have_count(0)
        assert tags() == {"tier": "web"}, tags()
    w.step("Tags on the endpoint page: Add Tag, Delete (reserved vpcep: tags not shown)", endpoint_tags)

    def accepted_to_rejected():
        # Guide 5.2's note: from Accepted to Rejected, the endpoint cannot reach the service.
        prov.get_by_role("tab", name="Connection Management").click()
        row(prov, st["a"]).get_by_role("button", name="Reject").click()
        expect(row(prov, st["a"])).to_contain_text("Rejected")
        assert get(USER, f"/vpc-endpoints/{st['a']}")["status"] == "rejected"
        if network:
            until("the rejected endpoint to stop carrying", lambda: curl(f"http://{EP_IP}:9090/", 2)[0] != 0, 20)
        row(prov, st["a"]).get_by_role("button", name="Accept").click()
        expect(row(prov, st["a"])).to_contain_text("Accepted")
        assert get(USER, f"/vpc-endpoints/{st['a']}")["status"] == "accepted"
        if network:
            until("the endpoint accepted again to carry", lambda: curl(f"http://{EP_IP}:9090/") == (0, body), 20)
        prov.get_by_role("tab", name="Port Mapping").click()
        expect(prov.get_by_role("button", name="Add Port Mapping")).to_be_visible()
    w.step("5.2 Accepted to Rejected: the endpoint stops carrying; Accept again: it carries again", accepted_to_rejected)

    def bad_mappings():
        prov.get_by_role("button", name="Add Port Mapping").click()
        d = dialog(prov)
        d.get_by_label("Service Port").fill("80")
        d.get_by_label("Client Port").fill("9090")
        d.get_by_role("button", name="OK").click()
        expect(d.get_by_role("alert").filter(has_text="EndPoint.")).to_have_count(1)
        d.get_by_label("Client Port").fill("70000")
        d.get_by_role("button", name="OK").click()
        expect(d.get_by_role("alert").filter(has_text="70000")).to_have_count(1)
        w.shot(prov, "port-mapping-error")
        prov.keyboard.press("Escape")
        expect(dialog(prov)).to_have_count(0)
        expect(prov.get_by_role("button", name="Add Port Mapping")).to_be_focused()
        got = get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}")["ports"]
        assert got == [{"client_port": 9090, "server_port": 80, "protocol": "TCP"}], got
    w.step("5.3 Add Port Mapping: a duplicate, then port 70000: the API's messages in the dialog, nothing changed; "
           "Escape closes", bad_mappings, bad_input=True)

    def add_delete_mapping():
        prov.get_by_role("button", name="Add Port Mapping").click()
        d = dialog(prov)
        d.get_by_label("Protocol").select_option("UDP")
        d.get_by_label("Service Port").fill("53")
        d.get_by_label("Client Port").fill("5353")
        d.get_by_role("button", name="OK").click()
        expect(row(prov, "5353")).to_contain_text("UDP")
        got = get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}")["ports"]
        assert {"client_port": 5353, "server_port": 53, "protocol": "UDP"} in got and len(got) == 2, got
        row(prov, "5353").get_by_role("button", name="Delete").click()
        dialog(prov).get_by_role("button", name="OK").click()
        expect(row(prov, "5353")).to_have_count(0)
        got = get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}")["ports"]
        assert got == [{"client_port": 9090, "server_port": 80, "protocol": "TCP"}], got
    w.step("5.3 Add Port Mapping (UDP 53 -> 5353), then Delete it", add_delete_mapping)

    def tags_and_settings():
        prov.get_by_role("tab", name="Tags").click()
        expect(row(prov, "env")).to_contain_text("walk")
        prov.get_by_role("button", name="Add Tag").click()
        dialog(prov).get_by_label("Key").fill("team")
        dialog(prov).get_by_label("Value").fill("net")
        dialog(prov).get_by_role("button", name="OK").click()
        expect(row(prov, "team")).to_contain_text("net")
        tags = lambda: {t["key"]: t["value"] for t in get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}")["tags"]}
        assert tags() == {"env": "walk", "team": "net"}, tags()
        row(prov, "env").get_by_role("button", name="Delete").click()
        dialog(prov).get_by_role("button", name="OK").click()
        expect(row(prov, "env")).to_have_count(0)
        assert tags() == {"team": "net"}, tags()
        w.shot(prov, "tags")
        info = prov.get_by_role("region", name="Basic Information")
        info.get_by_role("button", name="Modify client identity").click()
        dialog(prov).get_by_label("Client Identity").select_option("proxy_open")
        dialog(prov).get_by_role("button", name="OK").click()
        expect(info).to_contain_text("Proxy Protocol")
        assert get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}")["tcp_proxy"] == "proxy_open"
        info.get_by_role("button", name="Modify client identity").click()
        dialog(prov).get_by_label("Client Identity").select_option("close")
        dialog(prov).get_by_role("button", name="OK").click()
        info.get_by_role("button", name="Modify description").click()
        dialog(prov).get_by_label("Description").fill("walk service, edited")
        dialog(prov).get_by_role("button", name="OK").click()
        expect(info).to_contain_text("walk service, edited")
        s = get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}")
        assert s["tcp_proxy"] == "close" and s["description"] == "walk service, edited", s
        info.get_by_role("button", name="Change connection approval").click()
        dialog(prov).get_by_label("Connection Approval").uncheck()
        dialog(prov).get_by_role("button", name="OK").click()
        expect(info).to_contain_text("Disabled")
        assert get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}")["approval_enabled"] is False
        info.get_by_role("button", name="Change connection approval").click()
        dialog(prov).get_by_label("Connection Approval").check()
        dialog(prov).get_by_role("button", name="OK").click()
        expect(info).to_contain_text("Enabled")
        assert get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}")["approval_enabled"] is True
    w.step("Tags (Add Tag, Delete), Client Identity, Description and Connection Approval changed on the service page",
           tags_and_settings)

    # 5.5 Extending an Endpoint.
    def extend():
        nav(user, "VPC Endpoints")
        row(user, st["a"]).get_by_role("button", name="Extend").click()
        d = dialog(user)
        expect(d.get_by_label("Extension Period")).to_be_focused()
        d.get_by_label("Extension Period").select_option(label="1 day")
        w.shot(user, "extend")
        d.get_by_role("button", name="OK").click()
        expect(dialog(user)).to_have_count(0)
        e = get(USER, f"/vpc-endpoints/{st['a']}")
        exp = datetime.strptime(e["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        added = (exp - st["a_exp"]).total_seconds()
        assert 86400 - 5 <= added <= 86400 + 5, f"1 day asked, {added} s added"
        expect(row(user, st["a"])).to_contain_text(e["expires_at"][:16].replace("T", " "))
    w.step("5.5 Extend (1 day) in the Operation column: the expiry moves by a day", extend)

    def expired():
        # An endpoint applied for (through the API) for two seconds: it expires while we look.
        status, e = call(USER, "POST", "/vpc-endpoints", {"endpoint_service_id": st["sid"], "vpc_id": uvpc,
                                                          "subnet_id": usub, "duration": 2})
        assert status == 200, (status, e)
        nav(user, "VPC Endpoints")
        user.get_by_role("link", name=e["id"]).click()
        info = user.get_by_role("region", name="Basic Information")
        expect(info).to_contain_text("(Expired)")
        expect(user.locator("#status-reason")).to_contain_text("the required duration ended")
        assert get(USER, f"/vpc-endpoints/{e['id']}")["active_status"] == ["frozen"]
        w.shot(user, "endpoint-expired")
        user.get_by_role("button", name="Extend", exact=True).click()
        d = dialog(user)
        d.get_by_label("Extension Period").select_option(label="1 hour")
        d.get_by_role("button", name="OK").click()
        expect(info).not_to_contain_text("(Expired)")
        got = get(USER, f"/vpc-endpoints/{e['id']}")
        assert got["active_status"] == ["active"], got
        left = (datetime.strptime(got["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
                - datetime.now(timezone.utc)).total_seconds()
        assert 3500 < left <= 3605, f"extended from now by an hour: {left} s left"
        user.get_by_role("button", name="Delete", exact=True).click()
        dialog(user).get_by_role("button", name="OK").click()
        expect(user.get_by_role("heading", name="VPC Endpoints")).to_be_visible()
        until("the endpoint to be gone", lambda: call(USER, "GET", f"/vpc-endpoints/{e['id']}")[0] == 404)
    w.step("5.5 an expired endpoint shows Expired and why; Extend on its page revives it; Delete on its page", expired)

    # 5.6 Deleting an Endpoint.
    def delete_endpoint():
        row(user, st["b"]).get_by_role("button", name="Delete").click()
        dialog(user).get_by_role("button", name="OK").click()
        expect(row(user, st["b"])).to_have_count(0)
        until("the endpoint to be gone", lambda: call(USER, "GET", f"/vpc-endpoints/{st['b']}")[0] == 404)
    w.step("5.6 Delete an endpoint in the Operation column, OK: it is gone", delete_endpoint)

    if ENV.get("GATEWAY") == "1":
        def gateway():
            nav(user, "VPC Endpoints")
            user.get_by_role("button", name="Apply for Endpoint").click()
            d = dialog(user)
            d.get_by_label("Cloud services").check()
            d.get_by_role("button", name="Apply Now").click()
            expect(user.get_by_role("heading", name="Apply for Endpoint")).to_be_visible()
            user.get_by_role("radio", name=".obs.").check()
            user.get_by_label("VPC", exact=True).select_option(uvpc)
            w.shot(user, "apply-cloud-service")
            user.get_by_role("button", name="Apply Now").click()
            expect(user.get_by_role("heading", name="Basic Information")).to_be_visible()
            gid = user.url.split("#/endpoints/")[1]
            e = get(USER, f"/vpc-endpoints/{gid}")
            assert e["service_type"] == "gateway" and ".obs." in e["endpoint_service_name"] and e["vpc_id"] == uvpc, e
            expect(user.get_by_role("region", name="Basic Information")).to_contain_text("Gateway")
            st["g"] = gid
        w.step("4.3 Apply for Endpoint for a gateway endpoint service (Cloud services)", gateway)

    # 6.7 Resuming a suspended service: its port goes, the page shows Suspended, Associate.
    spare = ENV.get("SPARE_PORT")
    if spare:
        def associate():
            status, b = call(PROVIDER, "DELETE", f"/ports/{pport}")
            assert status == 204, (status, b)
            nav(prov, "VPC Endpoint Services")
            prov.get_by_role("link", name=st["sname"]).click()
            info = prov.get_by_role("region", name="Basic Information")
            expect(info).to_contain_text("Suspended")
            until("suspended", lambda: get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}")["status"] == "suspended")
            w.shot(prov, "service-suspended")
            info.get_by_role("button", name="Associate").click()
            d = dialog(prov)
            d.get_by_label("Subnet").select_option(psub)
            d.get_by_label("ECS").select_option(spare)
            d.get_by_role("button", name="OK").click()
            expect(info).to_contain_text("Connectable")
            s = get(PROVIDER, f"/vpc-endpoint-services/{st['sid']}")
            assert s["port_id"] == spare and s["status"] == "available", s
        w.step("6.7 the backend port is deleted: Suspended on the page; Associate a new ECS: Connectable", associate)

    # 5.4 Deleting an Endpoint Service (its endpoints first, by the user).
    def delete_service():
        nav(user, "VPC Endpoints")
        for x in [st["a"], st["c"]] + ([st["g"]] if "g" in st else []):
            row(user, x).get_by_role("button", name="Delete").click()
            dialog(user).get_by_role("button", name="OK").click()
            expect(row(user, x)).to_have_count(0)
        nav(prov, "VPC Endpoint Services")
        row(prov, st["sname"]).get_by_role("button", name="Delete").click()
        d = dialog(prov)
        expect(d).to_contain_text("Are you sure")
        d.get_by_role("button", name="OK").click()
        expect(row(prov, st["sname"])).to_have_count(0)
        until("the service to be gone",
              lambda: call(PROVIDER, "GET", f"/vpc-endpoint-services/{st['sid']}")[0] == 404)
    w.step("5.4 Delete the endpoint service in the Operation column, OK: it is gone", delete_service)

    def sign_out():
        for pg, t in ((prov, PROVIDER), (user, USER)):
            token = pg.evaluate("JSON.parse(sessionStorage.getItem('vpcep.console.session') || 'null')")
            pg.get_by_role("button", name=t.login[0] if t.login else t.ak).click()
            pg.get_by_role("menuitem", name="Sign Out").click()
            expect(pg.get_by_role("button", name="Log In", exact=True)).to_be_visible()
            assert pg.evaluate("sessionStorage.length") == 0
            if t.login:
                assert token and token["token"], token
                req = urllib.request.Request(f"{API}/v3/auth/tokens", headers={
                    "X-Auth-Token": token["token"], "X-Subject-Token": token["token"]})
                try:
                    urllib.request.urlopen(req, timeout=10)
                    raise AssertionError("the token still works after Sign Out")
                except urllib.error.HTTPError as e:
                    assert e.code in (401, 404), e.code
        for pg in (prov, user):
            assert pg.context.cookies() == [], pg.context.cookies()
    w.step("Sign Out: back at sign-in, nothing kept in sessionStorage (and the token revoked); no cookie ever set",
           sign_out)

    if USER.login:
        def revoked_elsewhere():
            sign_in(user, USER)
            expect(user.get_by_role("heading", name="VPC Endpoint Services")).to_be_visible()
            nav(user, "VPC Endpoints")
            user.reload()  # the token is kept in sessionStorage for the tab's life
            expect(user.get_by_role("heading", name="VPC Endpoints")).to_be_visible()
            token = user.evaluate("JSON.parse(sessionStorage.getItem('vpcep.console.session')).token")
            req = urllib.request.Request(f"{API}/v3/auth/tokens", method="DELETE", headers={
                "X-Auth-Token": token, "X-Subject-Token": token})
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 204, r.status
            # The page's next poll gets 401: back to sign-in, the token forgotten.
            expect(user.get_by_role("status").filter(has_text="session has ended")).to_be_visible()
            assert user.evaluate("sessionStorage.length") == 0
        w.step("a reload keeps the session; a session ended elsewhere (DELETE /v3/auth/tokens): the next poll's 401 "
               "returns the page to sign-in",
               revoked_elsewhere, bad_input=True)

        def too_many():
            # Last of the walk: the limit also counts the source address, so nothing signs in after it.
            user.goto(CONSOLE)
            seen = []
            for _ in range(8):
                user.get_by_label("Username").fill(USER.login[0])
                user.get_by_label("Password", exact=True).fill("wrong")
                with user.expect_response("**/v3/auth/tokens") as resp:
                    user.get_by_role("button", name="Log In", exact=True).click()
                code = {401: "APIGW.0301", 429: "EndPoint.0022"}[resp.value.status]
                expect(user.get_by_role("alert").filter(has_text=code)).to_be_visible()
                seen.append(code)
                if code == "EndPoint.0022":
                    break
            seen = set(seen)
            assert seen == {"APIGW.0301", "EndPoint.0022"}, seen
            expect(user.get_by_role("heading", name="VPC Endpoint Services")).to_have_count(0)
        w.step("6.2 too many wrong passwords: the API's 429 message on the sign-in page", too_many, bad_input=True)

    if not (PROVIDER.login or USER.login):
        # Without console users: a stand-in answers POST /v3/auth/tokens (the shape of the
        # issue: 201, X-Subject-Token, the token body), everything else is the real API.
        tok = w.page("token")

        def stand_in(expires_in):
            def auth(route):
                r = route.request
                if r.method == "POST":
                    b = json.loads(r.post_data)["auth"]
                    assert b["identity"]["methods"] == ["password"], b
                    assert b["identity"]["password"]["user"] == {"name": "walker", "password": "pw"}, b
                    now = datetime.now(timezone.utc)
                    exp = datetime.fromtimestamp(now.timestamp() + expires_in, timezone.utc)
                    route.fulfill(status=201, headers={"X-Subject-Token": "stand-in-token", "Content-Type": "application/json"},
                                  body=json.dumps({"token": {
                                      "expires_at": exp.strftime("%Y-%m-%dT%H:%M:%SZ"), "issued_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                      "methods": ["password"], "user": {"name": "walker", "domain": {"id": USER.domain, "name": "walkers"}},
                                      "project": {"id": USER.project, "name": "walk"}}}))
                else:
                    route.fulfill(status=204)
            tok.route("**/v3/auth/tokens", auth)

        def password_sign_in():
            tok.goto(CONSOLE)
            tok.get_by_label("Username").fill("walker")
            tok.get_by_label("Password", exact=True).fill("pw")
            tok.get_by_role("button", name="Log In", exact=True).click()

        def token_401():
            sent = []
            tok.on("request", lambda r: "/v1/" in r.url and sent.append(r.headers))
            stand_in(3600)
            password_sign_in()
            # vpcepd does not know this token: its 401 sends the console back to sign-in.
            expect(tok.get_by_role("status").filter(has_text="session has ended")).to_be_visible()
            assert sent, "the console made no API call"
            assert all(h.get("x-auth-token") == "stand-in-token" and "authorization" not in h for h in sent), sent
            assert tok.evaluate("sessionStorage.length") == 0
        w.step("6.2 password sign-in (stand-in POST /v3/auth/tokens): API calls carry X-Auth-Token; "
               "the API's 401 returns to sign-in and forgets the token", token_401, bad_input=True)

        def token_expiry():
            tok.unroute("**/v3/auth/tokens")
            stand_in(6)
            tok.route("**/v1/**", lambda route: route.fulfill(status=200, content_type="application/json",
                                                            body='{"endpoint_services": [], "total_count": 0}'))
            password_sign_in()
            expect(tok.get_by_role("heading", name="VPC Endpoint Services")).to_be_visible()
            tok.get_by_role("button", name="walker").click()
            tok.get_by_role("menuitem", name="My Settings").click()
            expect(tok.locator("#settings-tenant-id")).to_have_text(USER.domain)
            tok.reload()  # the token is kept in sessionStorage for the tab's life
            expect(tok.get_by_role("heading", name="My Settings")).to_be_visible()
            expect(tok.get_by_role("status").filter(has_text="session has ended")).to_be_visible(timeout=15_000)
            assert tok.evaluate("sessionStorage.length") == 0
        w.step("6.2 a token session survives a reload, shows the tenant ID from the token, and ends at expires_at",
               token_expiry)


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        traceback.print_exc()
        print("walk: FAILED")
        sys.exit(1)
