//! `vpcepd`: the per-node VPCEP daemon (API, store, pusher, dataplane workers).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use control::auth::Credentials;
use control::config::{DaemonConfig, LogFormat};
use control::daemon::{self, DaemonError};
use tokio::signal::unix::{SignalKind, signal};

/// The vpcep node daemon: serves the VPCEP API v1, keeps the resources in an embedded
/// store, and forwards endpoint traffic on its attachments.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "vpcepd",
    version,
    about = "vpcep node daemon: the VPCEP API, its store, and the endpoint dataplane"
)]
struct Cli {
    /// Configuration file (TOML); without it every key takes its default.
    #[arg(long, short = 'c', env = "VPCEPD_CONFIG")]
    config: Option<PathBuf>,
    /// Check a configuration file (and its credentials file) and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Log as JSON lines instead of text (overrides the file's `log_format`).
    #[arg(long)]
    log_json: bool,
    /// Attach an interface to a VPC: IFACE=VPC_ID (repeatable; replaces the file's list;
    /// port security off: the file's `[[attachments]]` can turn it on).
    #[arg(long = "attach", value_name = "IFACE=VPC_ID")]
    attach: Vec<String>,
    /// Credentials file (overrides the config).
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// Data directory (overrides the config).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// API listen address (overrides the config).
    #[arg(long)]
    api_listen: Option<std::net::SocketAddr>,
    /// Admin listen address (overrides the config).
    #[arg(long)]
    admin_listen: Option<std::net::SocketAddr>,
}

/// Install the log subscriber: JSON lines or text on stderr, the level from `RUST_LOG`
/// (default `info`). An API request's lines carry its span (`request_id`, `method`, `path`,
/// `project`): in JSON as the `span` and `spans` fields, in text as a prefix.
fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load(path: Option<&PathBuf>, cli: &Cli) -> anyhow::Result<(DaemonConfig, Credentials)> {
    let mut cfg = match path {
        Some(p) => DaemonConfig::load(p)?,
        None => DaemonConfig::default(),
    };
    if !cli.attach.is_empty() {
        cfg.attachments = cli
            .attach
            .iter()
            .map(|a| {
                let (interface, vpc_id) = a
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--attach {a:?}: expected IFACE=VPC_ID"))?;
                let interface = interface
                    .to_string()
                    .try_into()
                    .map_err(|e| anyhow::anyhow!("--attach {a:?}: {e}"))?;
                Ok(control::config::AttachmentConfig::new(interface, vpc_id))
            })
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(c) = &cli.credentials {
        cfg.credentials = c.clone();
    }
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(a) = cli.api_listen {
        cfg.api_listen = a;
    }
    if let Some(a) = cli.admin_listen {
        cfg.admin_listen = a;
    }
    cfg.validate()?;
    let creds = Credentials::load(&cfg.credentials)
        .with_context(|| format!("credentials file {}", cfg.credentials.display()))?;
    if creds.is_empty() {
        anyhow::bail!(
            "credentials file {} holds no key pairs",
            cfg.credentials.display()
        );
    }
    Ok((cfg, creds))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The config is read before the log starts, as it says how to log; reading it logs
    // nothing (its errors go to stderr below).
    let path = cli.check_config.as_ref().or(cli.config.as_ref());
    let loaded = load(path, &cli);
    let json = cli.log_json || matches!(&loaded, Ok((cfg, _)) if cfg.log_format == LogFormat::Json);
    init_logs(json);
    if cli.check_config.is_some() {
        return match loaded {
            Ok((cfg, creds)) => {
                println!(
                    "config ok: region {}, api {}, admin {}, {} attachments, {} credentials",
                    cfg.region,
                    cfg.api_listen,
                    cfg.admin_listen,
                    cfg.attachments.len(),
                    creds.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vpcepd: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    match loaded.and_then(|(cfg, creds)| run(&cli, cfg, creds)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpcepd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli, cfg: DaemonConfig, creds: Credentials) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let running = daemon::start_with(&cfg, creds, daemon::af_packet::start_workers)
            .await
            .map_err(|e: DaemonError| anyhow::anyhow!(e))?;
        // A reload reads the same files with the same command-line overrides.
        let (path, overrides) = (cli.config.clone(), cli.clone());
        running.node.set_source(Arc::new(move || {
            load(path.as_ref(), &overrides).map_err(|e| format!("{e:#}"))
        }));
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("SIGINT: shutting down");
                    break;
                }
                _ = term.recv() => {
                    tracing::info!("SIGTERM: shutting down");
                    break;
                }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the config");
                    // The outcome is logged and counted by the reload itself.
                    let _ = running.reload().await;
                }
            }
        }
        running.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}
