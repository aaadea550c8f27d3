//! A real etcd for tests (the `etcd` binary of Debian's `etcd-server`): one member with a
//! temporary data directory, on loopback ports of the host or inside a namespace made here,
//! stopped by its pid, restartable on the same data, and its directory removed on drop.
//!
//! [`Etcd::compact`] and [`Etcd::revision`] use etcd's JSON gateway (`/v3/kv/...`) with
//! curl, so the tests need no etcd client of their own.

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
    dir: PathBuf,
    peer: u16,
    proc: Option<Proc>,
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
        Self::launch(None, &[], client, peer)
    }

    /// Start etcd inside `ns`, listening on its loopback and on each of `ips` (port 2379;
    /// the namespace is ours alone).
    ///
    /// # Errors
    /// As for [`Etcd::start`].
    pub fn start_in(ns: &Netns, ips: &[&str]) -> Result<Self> {
        Self::launch(Some(ns.name.clone()), ips, 2379, 2380)
    }

    fn launch(ns: Option<String>, ips: &[&str], client: u16, peer: u16) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("vpcep-etcd-{}", crate::prefix()));
        std::fs::create_dir_all(&dir)?;
        let url = format!("http://127.0.0.1:{client}");
        let mut urls = vec![url.clone()];
        urls.extend(ips.iter().map(|ip| format!("http://{ip}:{client}")));
        let mut e = Self {
            url,
            urls,
            ns,
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
