#!/usr/bin/env bash
# The console walk in a real browser: installs what it needs (Debian's chromium, a venv with
# Playwright and the official SDK, as tests/conformance does; the browser download of
# `playwright install` is never used), and runs walk.py against a live vpcepd (which serves
# the console at /console/) described by the environment (see walk.py's docstring).
# Usage: tests/console/run.sh   with VPCEP_URL (the API, e.g. http://127.0.0.1:9797) and the
# variables of walk.py; tests/tests/netns/console.rs sets them for a netns World.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${VENV:-$root/.venv}"
if [ ! -x /usr/bin/chromium ]; then
  apt-get install -y chromium >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
fi
if ! "$venv/bin/python" -c 'import playwright, huaweicloudsdkvpcep' 2>/dev/null; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'playwright==1.65.3' \
    'huaweicloudsdkvpcep==3.1.219' 'huaweicloudsdkcore==3.1.219'
fi
: "${VPCEP_URL:?VPCEP_URL: the API of a running vpcepd}"
work="$(mktemp -d /tmp/vpcep-console.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export NO_PROXY=127.0.0.1,localhost HOME="$work"   # the SDK writes ~/.huaweicloud
curl -sf -o /dev/null "$VPCEP_URL/console/" || { echo "vpcepd at $VPCEP_URL does not serve /console/" >&2; exit 1; }
export CONSOLE_URL="$VPCEP_URL/console/"
export SIGNING_VECTORS="${SIGNING_VECTORS:-$here/signing-vectors.json}"
timeout "${WALK_TIMEOUT_OUTER:-420}" "$venv/bin/python" "$here/walk.py"
