#!/usr/bin/env bash
# The console in real browsers: installs what it needs (Debian's chromium and firefox-esr, a
# venv with Playwright, websockets and the official SDK, as tests/conformance does; the
# browser download of `playwright install` is never used), then runs walk.py (the whole walk,
# chromium) and firefox_smoke.py (a smoke run, Firefox) against a live vpcepd (which serves
# the console at /console/) described by the environment (see walk.py's docstring).
# Usage: tests/console/run.sh   with VPCEP_URL (the API, e.g. http://127.0.0.1:9797) and the
# variables of walk.py; tests/tests/netns/console.rs sets them for a netns World.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${VENV:-$root/.venv}"
install() {
  for pkg in chromium firefox-esr; do
    dpkg -s "$pkg" >/dev/null 2>&1 && continue
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg" >/dev/null 2>&1 ||
      { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "$pkg" >/dev/null; }
  done
  if ! "$venv/bin/python" -c 'import playwright, websockets, huaweicloudsdkvpcep' 2>/dev/null; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'playwright==1.65.3' 'websockets==17.4' \
      'huaweicloudsdkvpcep==3.1.219' 'huaweicloudsdkcore==3.1.219'
  fi
}
# `run.sh --install` only installs (from the host's network: the walk itself may run in a
# namespace that has none, as tests/tests/netns/console.rs runs it).
if [ "${1:-}" = "--install" ]; then
  install
  exit 0
fi
install
: "${VPCEP_URL:?VPCEP_URL: the API of a running vpcepd}"
work="$(mktemp -d /tmp/vpcep-console.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export NO_PROXY=127.0.0.1,localhost HOME="$work"   # the SDK writes ~/.huaweicloud
curl -sf -o /dev/null "$VPCEP_URL/console/" || { echo "vpcepd at $VPCEP_URL does not serve /console/" >&2; exit 1; }
export CONSOLE_URL="$VPCEP_URL/console/"
export SIGNING_VECTORS="${SIGNING_VECTORS:-$here/signing-vectors.json}"
timeout "${WALK_TIMEOUT_OUTER:-420}" "$venv/bin/python" "$here/walk.py"
# The same console in Firefox: a smoke run over WebDriver BiDi (see firefox_smoke.py).
timeout 180 "$venv/bin/python" "$here/firefox_smoke.py"
