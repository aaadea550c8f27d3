#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this). Installs what it needs.
# Usage: bash ci.sh            (as root for the network-namespace tests)
set -euo pipefail
cd "$(dirname "$0")"

# Each step says how long the one before it took (and the total at the end).
last=$SECONDS
step() {
  printf '\n[%d s, %d s in all]\n==> %s\n' $((SECONDS - last)) "$SECONDS" "$*"
  last=$SECONDS
}

step "toolchain components and system packages"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
need=()
for pkg in curl iproute2 ethtool iperf3 socat hping3 bind9-dnsutils openssl etcd-server haproxy; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

step "build with protoc hidden (the etcd client's gRPC code is kept in vendor/etcd-client)"
PROTOC=/nonexistent/protoc cargo build --workspace --all-targets --quiet

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
log=$(mktemp)
trap '[ -n "${fuzz_build:-}" ] && { kill -- -"$fuzz_build" 2>/dev/null || true; }; rm -rf "$log" "${conf_log:-}" "${fuzz_dir:-}" "${dash_rules:-}"' EXIT
cargo test --workspace 2>&1 | tee "$log"

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --quiet

step "Prometheus alert rules: promtool check rules, and their unit tests on synthetic series"
if ! command -v promtool >/dev/null; then
  # Only the binary: installing Debian's prometheus package would start a Prometheus server.
  promdir=$(mktemp -d)
  (cd "$promdir" && { apt-get download -qq prometheus 2>/dev/null \
     || { apt-get update -qq && apt-get download -qq prometheus 2>/dev/null; }; } \
     && dpkg-deb -x prometheus_*.deb x)
  install -m 755 "$promdir/x/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$promdir"
fi
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts.test.yml)
# The dashboard's queries parse as PromQL: each becomes a recording rule for promtool, with
# Grafana's variables replaced by plain values (its label_values() variables are not PromQL).
dash_rules=$(mktemp --suffix=.yml)
python3 - deploy/grafana/vpcep.json >"$dash_rules" <<'PY'
import json, sys
def exprs(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "expr" and isinstance(x, str):
                yield x
            else:
                yield from exprs(x)
    elif isinstance(v, list):
        for x in v:
            yield from exprs(x)
subst = {"$__rate_interval": "5m", "$instance": ".*", "$project": ".*", "$endpoint": "ep"}
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs(json.load(open(sys.argv[1])))):
    for k, v in subst.items():
        e = e.replace(k, v)
    print(f"      - record: dashboard:query{i}\n        expr: {json.dumps(e)}")
PY
promtool check rules "$dash_rules"
rm -f "$dash_rules"

step "the fuzz targets built in the background at the lowest priority (nice 19), while the namespace suites and the SDK run, which wait on the network more than they compute"
fuzz_dir=$(mktemp -d)
# In a process group of its own, so that an early exit ends it whole (see the trap).
setsid bash -c '
  set -e
  command -v cargo-fuzz >/dev/null || nice -n 19 cargo install --quiet --locked cargo-fuzz
  for crate in dataplane control; do
    (cd "$crate/fuzz" && CARGO_TARGET_DIR="$PWD/../../target/fuzz-$crate" nice -n 19 cargo fuzz build -s none)
  done
' >"$fuzz_dir/build.log" 2>&1 &
fuzz_build=$!

step "network-namespace suites (root): real clients through vpcepd between namespaces, at default offloads; client identity (PROXY v2, TOA); restarts, link flaps, floods, AF_XDP"
if [ "$(id -u)" != 0 ]; then
  echo "ci.sh: the network-namespace suite needs root" >&2
  exit 1
fi
cargo test -p vpcep-tests -- --ignored --test-threads=2 2>&1 | tee -a "$log"

step "SDK conformance (official huaweicloudsdkvpcep in a venv against a running vpcepd)"
conf_log=$(mktemp)
bash tests/conformance/run.sh "$PWD/target/debug" 2>&1 | tee "$conf_log"

step "bounded fuzz runs (cargo-fuzz on stable: -s none), each target 30 s, two at a time: the pipeline, the wire views, the signature checker, the request decoders"
if ! wait "$fuzz_build"; then
  grep -E '^error' -A5 "$fuzz_dir/build.log" >&2 || tail -20 "$fuzz_dir/build.log" >&2
  echo "ci.sh: building the fuzz targets failed" >&2
  exit 1
fi
fuzz() { # crate target: run one (built) target for 30 s, into its own log
  (cd "$1/fuzz" && CARGO_TARGET_DIR="$PWD/../../target/fuzz-$1" \
    cargo fuzz run -s none "$2" -- -max_total_time=30) >"$fuzz_dir/$1-$2.log" 2>&1 || true
}
fuzz dataplane process & fuzz dataplane parse & wait
fuzz control auth & fuzz control decode & wait
fuzz_log="$fuzz_dir/all.log"
for f in "$fuzz_dir"/*-*.log; do echo "fuzz $(basename "$f" .log)"; cat "$f"; done >"$fuzz_log"
grep -E '^fuzz |^Done|panicked|SUMMARY|crash-' "$fuzz_log" || true
if grep -qE 'panicked|SUMMARY: libFuzzer|deadly signal' "$fuzz_log"; then
  echo "ci.sh: a fuzz target failed; the input is in dataplane/fuzz/artifacts or control/fuzz/artifacts" >&2
  exit 1
fi
[ "$(grep -c '^Done' "$fuzz_log")" = 4 ] || { echo "ci.sh: not every fuzz target ran" >&2; exit 1; }

step "pktbench smoke run (debug build; figures come from the release build, see BENCHMARKS.md)"
cargo run --quiet -p bench --bin pktbench -- --quick --json

step "summary"
echo "ci.sh: $SECONDS s in all"
# One plain closing line over every cargo test binary that ran.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     /^conformance: [0-9]+ passed/ { p += $2; f += $4 }
     END { printf "suite: %d passed, %d failed\n", p, f }' "$log" "$conf_log"
