fn main() {
    let mut args = std::env::args().skip(1);
    let (root, out) = (args.next().expect("proto root"), args.next().expect("out dir"));
    tonic_prost_build::configure()
        .build_server(false)
        .out_dir(&out)
        .compile_protos(
            &[
                "etcd/api/authpb/auth.proto",
                "etcd/api/etcdserverpb/rpc.proto",
                "etcd/api/mvccpb/kv.proto",
                "etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
                "etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
            ].map(|p| format!("{root}/{p}")),
            &[root.clone()],
        )
        .expect("compile the etcd protos");
}
