#!/usr/bin/env bash
# Regenerates vendor/etcd-client/src/rpc/gen/*.rs from the .proto files in
# vendor/etcd-client/proto, with the configuration of etcd-client 0.21.1's own build.rs
# (client only). Needs protoc (apt protobuf-compiler); building vpcep does not.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../etcd-client/src/rpc/gen"
rm -rf "$out" && mkdir -p "$out"
cargo run --quiet --manifest-path "$here/Cargo.toml" --target-dir "${CARGO_TARGET_DIR:-$here/target}" -- "$here/../etcd-client/proto" "$out"
# Only the five packages src/rpc/pb.rs includes; the annotation imports are not used.
rm -f "$out"/google.*.rs "$out"/grpc.gateway.*.rs
ls "$out"
