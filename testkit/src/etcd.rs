//! A real etcd for tests (the `etcd` binary of Debian's `etcd-server`): one member with a
//! temporary data directory, on loopback ports of the host or inside a namespace made here,
//! stopped by its pid, restartable on the same data, and its directory removed on drop.
//!
//! [`Etcd::compact`], [`Etcd::revision`] and [`Etcd::json`] use etcd's JSON gateway
//! (`/v3/...`) with curl, so the tests need no etcd client of their own. [`Etcd::start_tls`]
//! makes a CA, a server and a client certificate with openssl, and requires client
//! certificates.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{Netns, Proc, poll_until};

/// One etcd member.
#[derive(Debug)]
pub struct Etcd {
    /// The client URL on loopback (of the host, or of the namespace).
    pub url: String,
    /// Every client URL it listens on (loopback first).
    pub urls: Vec<String>,
    /// The namespace it runs in (none: the host).
    ns: Option<String>,
    /// With TLS: the CA, and the client certificate and key it accepts.
    pub tls: Option<Tls>,
    dir: PathBuf,
    peer: u16,
    proc: Option<Proc>,
}

/// The PEM files of a TLS etcd.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The CA that signed both certificates.
    pub ca: PathBuf,
    /// A client certificate etcd accepts.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

/// Make a CA, and a server (127.0.0.1) and a client certificate signed by it, in `dir`.
fn make_certs(dir: &std::path::Path) -> Result<Tls> {
    let ossl = |args: &[&str]| crate::run(Command::new("openssl").args(args).current_dir(dir));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    ossl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=vpcep test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    )?;
    for (name, usage) in [
        ("server", "serverAuth,clientAuth"),
        ("client", "clientAuth"),
    ] {
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n"),
        )?;
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        ossl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN={name}"),
                ],
            ]
            .concat(),
        )?;
        ossl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ])?;
    }
    Ok(Tls {
        ca: dir.join("ca.pem"),
        cert: dir.join("client.pem"),
        key: dir.join("client.key"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    })
}

/// A free TCP port on the host's loopback (bound, then released for etcd to take).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Etcd {
    /// Start etcd on free loopback ports of the host.
    ///
    /// # Errors
    /// The binary is missing, or etcd did not become healthy within 20 s.
    pub fn start() -> Result<Self> {
        let client = free_port()?;
        let peer = free_port()?;
        Self::launch(None, &[], client, peer, false)
    }

    /// Start etcd on free loopback ports of the host, serving clients over TLS only and
    /// requiring a client certificate signed by its CA ([`Etcd::tls`]).
    ///
    /// # Errors
    /// As for [`Etcd::start`], or openssl failed.
    pub fn start_tls() -> Result<Self> {
        let client = free_port()?;
        let peer = free_port()?;
        Self::launch(None, &[], client, peer, true)
    }

    /// Start etcd inside `ns`, listening on its loopback and on each of `ips` (port 2379;
    /// the namespace is ours alone).
    ///
    /// # Errors
    /// As for [`Etcd::start`].
    pub fn start_in(ns: &Netns, ips: &[&str]) -> Result<Self> {
        Self::launch(Some(ns.name.clone()), ips, 2379, 2380, false)
    }

    fn launch(ns: Option<String>, ips: &[&str], client: u16, peer: u16, tls: bool) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("vpcep-etcd-{}", crate::prefix()));
        std::fs::create_dir_all(&dir)?;
        let tls = if tls { Some(make_certs(&dir)?) } else { None };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{client}");
        let mut urls = vec![url.clone()];
        urls.extend(ips.iter().map(|ip| format!("{scheme}://{ip}:{client}")));
        let mut e = Self {
            url,
            urls,
            ns,
            tls,
            dir,
            peer,
            proc: None,
        };
        e.restart()?;
        Ok(e)
    }

    fn command(&self, program: &str) -> Command {
        match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    /// Start (again, on the same data) and wait until it is healthy.
    ///
    /// # Errors
    /// As for [`Etcd::start`].
    pub fn restart(&mut self) -> Result<()> {
        if self.proc.is_some() {
            bail!("etcd is already running");
        }
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let mut cmd = self.command("etcd");
        cmd.args(["--name", "t", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &self.urls.join(",")])
            .args(["--advertise-client-urls", &self.urls.join(",")])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(["--initial-cluster-state", "new", "--log-level", "warn"]);
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.server_cert)
                .arg("--key-file")
                .arg(&t.server_key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let mut p = Proc::spawn(cmd, &self.dir.join("etcd.log"))
            .context("starting etcd (apt-get install etcd-server)")?;
        let ok = poll_until("etcd to be healthy", Duration::from_secs(20), || {
            self.get("/health").is_ok_and(|v| v["health"] == "true")
        });
        if ok.is_err() || !p.alive() {
            let out = p.output();
            p.kill();
            bail!("etcd did not start: {out}");
        }
        self.proc = Some(p);
        Ok(())
    }

    /// Stop it (SIGTERM, by pid); its data stays for [`Etcd::restart`].
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(10));
        }
    }

    /// Its pid, if running.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    fn curl(&self, path: &str, body: Option<&str>) -> Result<Value> {
        let mut c = self.command("curl");
        c.args(["-sf", "-m", "2", &format!("{}{path}", self.url)]);
        if let Some(t) = &self.tls {
            c.arg("--cacert").arg(&t.ca);
            c.arg("--cert").arg(&t.cert);
            c.arg("--key").arg(&t.key);
        }
        if let Some(b) = body {
            c.args(["-X", "POST", "-d", b]);
        }
        let out = c.output()?;
        if !out.status.success() {
            bail!("curl {path}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn get(&self, path: &str) -> Result<Value> {
        self.curl(path, None)
    }

    /// POST `body` to the JSON gateway at `path` (`/v3/auth/user/add`, ...); its answer.
    ///
    /// # Errors
    /// etcd refused or did not answer.
    pub fn json(&self, path: &str, body: &Value) -> Result<Value> {
        self.curl(path, Some(&body.to_string()))
    }

    /// The cluster's current revision.
    ///
    /// # Errors
    /// etcd did not answer.
    pub fn revision(&self) -> Result<u64> {
        // A range over a key nobody writes: only the header matters ("AA==" is a zero byte).
        let v = self.curl("/v3/kv/range", Some(r#"{"key":"AA=="}"#))?;
        v["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .context("no revision in etcd's answer")
    }

    /// Compact the history up to `revision` (a watch from before it is refused).
    ///
    /// # Errors
    /// etcd refused.
    pub fn compact(&self, revision: u64) -> Result<()> {
        self.curl(
            "/v3/kv/compaction",
            Some(&format!(r#"{{"revision":"{revision}","physical":true}}"#)),
        )?;
        Ok(())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
