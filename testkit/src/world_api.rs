//! What a test does with a running [`World`]: drive the API as a tenant (`vpcepctl`), read
//! the admin endpoints, create services and endpoints, start backends, and curl through.

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::Value;

use crate::{PROVIDER, Proc, World, bin, mac_of, poll_until, s};

impl World {
    /// Run vpcepctl (JSON output) as tenant `t` inside the node namespace.
    pub fn ctl(&self, t: (&str, &str, &str, &str), args: &[&str]) -> Result<Value> {
        let out = self
            .node
            .command(bin("vpcepctl").to_str().unwrap_or("vpcepctl"))
            .env(
                "VPCEP_ENDPOINT",
                format!("http://127.0.0.1:{}", self.api_port),
            )
            .env("VPCEP_AK", t.0)
            .env("VPCEP_SK", t.1)
            .env("VPCEP_PROJECT_ID", t.3)
            .args(["-o", "json"])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "vpcepctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The admin `/status` document.
    pub fn status(&self) -> Result<Value> {
        let out = self.node.exec(&[
            "curl",
            "-sf",
            "-m",
            "2",
            &format!("http://127.0.0.1:{}/status", self.admin_port),
        ])?;
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Wait until the daemon has published the store's revision and every worker has
    /// loaded that generation: "my change is live".
    pub fn wait_live(&self) -> Result<()> {
        poll_until(
            "the change to be live in every worker",
            Duration::from_secs(5),
            || {
                self.status().is_ok_and(|s| {
                    s["applied_revision"] == s["revision"] && s["all_workers_current"] == true
                })
            },
        )
    }

    /// A Prometheus counter's value (summing label sets that contain `label`, if given).
    pub fn metric(&self, name: &str, label: Option<&str>) -> Result<f64> {
        let out = self.node.exec(&[
            "curl",
            "-sf",
            "-m",
            "2",
            &format!("http://127.0.0.1:{}/metrics", self.admin_port),
        ])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let values: Vec<f64> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter(|l| label.is_none_or(|lb| l.contains(lb)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .collect();
        // A series that is not there is an error, not a zero: a renamed metric must fail
        // every assertion on it, "unchanged" and "== 0" included.
        anyhow::ensure!(
            !values.is_empty(),
            "no series {name}{} in /metrics",
            label.map_or(String::new(), |l| format!("{{{l}}}"))
        );
        Ok(values.iter().sum())
    }

    /// A drop counter by reason.
    pub fn drops(&self, reason: &str) -> Result<f64> {
        self.metric(
            "vpcep_dataplane_drops_total",
            Some(&format!("reason=\"{reason}\"")),
        )
    }

    /// Create the provider's VM port at `ip` (with the MAC of the provider's interface, as
    /// port security wants) and a service with `maps` (PROTO:CLIENT:SERVER); returns
    /// (service id, port id).
    pub fn service(&self, ip: &str, maps: &[&str], approval: bool) -> Result<(String, String)> {
        self.service_with(ip, maps, approval, &[])
    }

    /// [`World::service`] with `extra` arguments to `vpcepctl service create` (e.g.
    /// `["--tcp-proxy", "proxy_open"]`).
    ///
    /// # Errors
    /// The port, the service or the permission was refused.
    pub fn service_with(
        &self,
        ip: &str,
        maps: &[&str],
        approval: bool,
        extra: &[&str],
    ) -> Result<(String, String)> {
        let mac = mac_of(&self.provider, "eth0")?;
        let port = self.ctl(
            PROVIDER,
            &[
                "port",
                "create",
                "--subnet",
                s(&self.ids["psub"]),
                "--type",
                "VM",
                "--ip",
                ip,
                "--mac",
                &mac,
            ],
        )?["port"]["id"]
            .clone();
        let mut args = vec![
            "service",
            "create",
            "--vpc",
            s(&self.ids["pvpc"]),
            "--port",
            s(&port),
            "--type",
            "VM",
        ];
        for m in maps {
            args.push("--map");
            args.push(m);
        }
        if !approval {
            args.push("--no-approval");
        }
        args.extend_from_slice(extra);
        let svc = self.ctl(PROVIDER, &args)?["id"].clone();
        for d in self.user_domains() {
            self.ctl(
                PROVIDER,
                &["permission", "add", s(&svc), &format!("iam:domain::{d}")],
            )?;
        }
        Ok((s(&svc).to_string(), s(&port).to_string()))
    }

    /// Create the user's endpoint in user VPC `i` at `ip` with extra vpcepctl arguments.
    pub fn endpoint(&self, svc: &str, i: usize, ip: &str, extra: &[&str]) -> Result<Value> {
        let mut args = vec![
            "endpoint",
            "create",
            "--service",
            svc,
            "--vpc",
            s(&self.ids["uvpcs"][i]),
            "--subnet",
            s(&self.ids["usubs"][i]),
            "--ip",
            ip,
        ];
        args.extend_from_slice(extra);
        self.ctl(self.user_tenant(i), &args)
    }

    /// Start a python backend (`script` with `args`) in the provider namespace, publish it
    /// as a service (TCP 9000 and UDP 9001, same ports) with an accepted endpoint at
    /// 10.0.0.200 in the first user VPC, and wait until the change is live and the script
    /// printed `ready`.
    ///
    /// # Errors
    /// A step failed or timed out.
    pub fn python_backend_with_endpoint(&self, script: &str, args: &[&str]) -> Result<Proc> {
        let mut cmd = vec!["python3", "-c", script];
        cmd.extend_from_slice(args);
        let backend = self.provider.spawn(&cmd, &self.dir.join("backend.log"))?;
        let (svc, _) = self.service("10.0.0.10", &["TCP:9000:9000", "UDP:9001:9001"], false)?;
        self.endpoint(&svc, 0, "10.0.0.200", &[])?;
        self.wait_live()?;
        poll_until("the backend to listen", Duration::from_secs(10), || {
            backend.output().contains("ready")
        })?;
        Ok(backend)
    }

    /// Start a real HTTP server (python's http.server) in the provider namespace, bound to
    /// `ip:port`, serving a directory with an `index.html` whose body is `body`.
    pub fn http_server(&self, ip: &str, port: u16, body: &str) -> Result<Proc> {
        let root = self.dir.join(format!("www-{ip}-{port}"));
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("index.html"), body)?;
        let log = self.dir.join(format!("http-{ip}-{port}.log"));
        let p = self.provider.spawn(
            &[
                "python3",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                ip,
                "--directory",
                root.to_str().unwrap_or("."),
            ],
            &log,
        )?;
        self.provider
            .wait_listening("the HTTP server", &[port], Duration::from_secs(5))?;
        Ok(p)
    }

    /// curl from user namespace `i`; returns the body, or an error if curl failed.
    pub fn curl(&self, i: usize, url: &str, timeout_s: u32) -> Result<String> {
        let out = self.users[i]
            .command("curl")
            .args(["-sf", "-m", &timeout_s.to_string(), url])
            .output()?;
        if !out.status.success() {
            bail!("curl {url} failed ({})", out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
