//! Live reconfiguration through the daemon's API, without packet I/O: a reload attaches the
//! VPCs (the dataplane starter is called again with the new config, after the tables for
//! those attachments were published), accepted endpoints show `failed` while a VPC they
//! need is not attached and heal when it is, and a refused reload changes nothing.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::{Arc, Mutex};

use crate::common::*;
use control::config::{AttachmentConfig, DaemonConfig};
use control::daemon::Dataplane;
use serde_json::Value;

/// Status and first error code of the user's endpoint `ep`, and of the provider's service.
fn statuses(env: &Env, svc: &str, ep: &str) -> (String, String, String, String) {
    let e = ok(&env.user, "GET", &format!("/vpc-endpoints/{ep}"), None);
    let s = ok(
        &env.provider,
        "GET",
        &format!("/vpc-endpoint-services/{svc}"),
        None,
    );
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    (
        text(&e["status"]),
        text(&e["error"][0]["error_code"]),
        text(&s["status"]),
        text(&s["error"][0]["code"]),
    )
}

#[test]
fn a_reload_attaches_vpcs_and_failed_endpoints_heal() {
    let mut env = Env::new("reload-failed");
    let (svc, _, pvpc) = service(&env.provider, false);
    whitelist(&env.provider, &svc, "duser");
    let (uvpc, usub) = network(&env.user, "10.0.0.0/16");
    let ep = endpoint(&env.user, &svc, &uvpc, &usub)["id"]
        .as_str()
        .unwrap()
        .to_string();
    // No attachments: an API-only node fails nothing.
    let accepted = |env: &Env| statuses(env, &svc, &ep);
    assert_eq!(accepted(&env).0, "accepted");

    // Restart with a starter that records what each start saw, and a config source the
    // test rewrites.
    let starts: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let seen = Arc::clone(&starts);
    env.restart_with(move |cfg, tables, _, ready| {
        ready();
        seen.lock().unwrap().push((
            cfg.attachments.len(),
            tables.clone().load().accepted().len(),
        ));
        Ok(Dataplane::none())
    });
    let next: Arc<Mutex<DaemonConfig>> = Arc::new(Mutex::new(env.cfg.clone()));
    let source = Arc::clone(&next);
    env.running().node.set_source(Arc::new(move || {
        Ok((source.lock().unwrap().clone(), credentials()))
    }));
    let reload = |env: &Env| env.rt.block_on(env.running().reload());
    let attach = |vpcs: &[&str]| {
        next.lock().unwrap().attachments = vpcs
            .iter()
            .enumerate()
            .map(|(i, v)| {
                AttachmentConfig::new(
                    format!("if{i}")
                        .to_string()
                        .try_into()
                        .expect("an interface name"),
                    (*v).to_string(),
                )
            })
            .collect();
    };

    // Only the provider's VPC: the endpoint carries nothing, and says why.
    attach(&[&pvpc]);
    let done = reload(&env).unwrap();
    assert!(done.dataplane_rebuilt);
    let (e, code, s, _) = accepted(&env);
    assert_eq!(
        (e.as_str(), code.as_str(), s.as_str()),
        ("failed", "VPC_NOT_ATTACHED", "available")
    );
    let failed = env
        .provider
        .call(
            "GET",
            &env.provider
                .path(&format!("/vpc-endpoint-services/{svc}/connections")),
            &[("status", "failed".into())],
            None,
        )
        .unwrap();
    assert_eq!(failed["total_count"], 1, "{failed}");
    // The tables for one attachment hold no entry for an endpoint whose VPC is not there.
    assert_eq!(*starts.lock().unwrap(), [(1, 0)]);

    // Only the user's VPC: the service fails too.
    attach(&[&uvpc]);
    reload(&env).unwrap();
    let (e, _, s, scode) = accepted(&env);
    assert_eq!(
        (e.as_str(), s.as_str(), scode.as_str()),
        ("failed", "failed", "VPC_NOT_ATTACHED")
    );

    // Both: healed, and the starter saw the accepted entry already published.
    attach(&[&uvpc, &pvpc]);
    reload(&env).unwrap();
    assert_eq!(
        accepted(&env),
        (
            "accepted".into(),
            String::new(),
            "available".into(),
            String::new()
        )
    );
    assert_eq!(starts.lock().unwrap().last(), Some(&(2, 1)));

    // A setting that needs a restart: refused, nothing changes, the revision stays.
    let revision = env.running().node.config_status().revision;
    next.lock().unwrap().workers += 1;
    let e = reload(&env).unwrap_err().to_string();
    assert!(e.contains("workers"), "{e}");
    let st = env.running().node.config_status();
    assert_eq!((st.revision, st.reloads_failed), (revision, 1));
    assert_eq!(accepted(&env).0, "accepted");
    assert_eq!(starts.lock().unwrap().len(), 3, "no dataplane rebuilt");

    // Back to no attachment at all: nothing is failed.
    next.lock().unwrap().workers -= 1;
    attach(&[]);
    reload(&env).unwrap();
    assert_eq!(accepted(&env).0, "accepted");
}
