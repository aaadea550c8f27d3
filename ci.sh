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
trap 'rm -rf "$log" "${conf_log:-}" "${fuzz_dir:-}"' EXIT
cargo test --workspace 2>&1 | tee "$log"

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --quiet

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
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz
fuzz_dir=$(mktemp -d)
fuzz() { # crate target: build (if needed) and run one target for 30 s, into its own log
  (cd "$1/fuzz" && CARGO_TARGET_DIR="$PWD/../../target/fuzz-$1" \
    cargo fuzz run -s none "$2" -- -max_total_time=30) >"$fuzz_dir/$1-$2.log" 2>&1 || true
}
for crate in dataplane control; do
  (cd "$crate/fuzz" && CARGO_TARGET_DIR="$PWD/../../target/fuzz-$crate" cargo fuzz build -s none 2>&1) \
    | grep -E '^error|warning: unused' || true
done
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
