//! `vpcepctl`: a command-line client for the VPCEP API that signs its requests.
//! Readable tables by default, `-o json` for scripts; errors print the API's error code.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use control::client::{Client, ClientError, segment};
use control::requests::*;
use serde_json::{Value, json, to_value};

#[derive(Debug, Parser)]
#[command(
    name = "vpcepctl",
    version,
    about = "Drive a vpcep daemon's VPCEP API (signed with AK/SK)"
)]
struct Cli {
    /// API endpoint.
    #[arg(
        long,
        env = "VPCEP_ENDPOINT",
        default_value = "http://127.0.0.1:9797",
        global = true
    )]
    endpoint: String,
    /// Access key.
    #[arg(long, env = "VPCEP_AK", global = true)]
    ak: Option<String>,
    /// Secret key.
    #[arg(long, env = "VPCEP_SK", global = true, hide_env_values = true)]
    sk: Option<String>,
    /// Project id.
    #[arg(long, env = "VPCEP_PROJECT_ID", global = true)]
    project_id: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// VPCs of the inventory.
    #[command(subcommand)]
    Vpc(Crud<VpcCreate>),
    /// Subnets of the inventory.
    #[command(subcommand)]
    Subnet(Crud<SubnetCreate>),
    /// Ports (VM NICs, LB VIPs) of the inventory.
    #[command(subcommand)]
    Port(Crud<PortCreate>),
    /// Endpoint services (provider side).
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Connections of a service (provider side).
    #[command(subcommand)]
    Connection(ConnectionCmd),
    /// Whitelist of a service (provider side).
    #[command(subcommand)]
    Permission(PermissionCmd),
    /// Endpoints (user side).
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Quotas and usage.
    Quota,
    /// Any API call: METHOD PATH-AFTER-PROJECT [JSON-BODY].
    Raw {
        /// GET, POST, PUT or DELETE.
        method: String,
        /// Path after /v1/{project_id}, e.g. /vpc-endpoints.
        path: String,
        /// JSON body.
        body: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum Crud<C: Args> {
    /// Create one.
    Create(C),
    /// List all.
    List,
    /// Show one.
    Show { id: String },
    /// Delete one.
    Delete { id: String },
}

#[derive(Debug, Args)]
struct VpcCreate {
    #[arg(long)]
    name: Option<String>,
    /// IPv4 block, e.g. 10.0.0.0/16.
    #[arg(long)]
    cidr: String,
}

#[derive(Debug, Args)]
struct SubnetCreate {
    #[arg(long)]
    vpc: String,
    #[arg(long)]
    cidr: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    gateway: Option<String>,
    /// 4 or 6.
    #[arg(long, default_value_t = 4)]
    ip_version: u8,
}

#[derive(Debug, Args)]
struct PortCreate {
    #[arg(long)]
    subnet: String,
    /// VM or LB.
    #[arg(long = "type")]
    server_type: String,
    /// Fixed address; automatic when absent.
    #[arg(long)]
    ip: Option<String>,
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ServiceCmd {
    /// Create a service.
    Create {
        #[arg(long)]
        vpc: String,
        /// Backend port id.
        #[arg(long)]
        port: String,
        /// VM or LB.
        #[arg(long = "type", default_value = "VM")]
        server_type: String,
        /// Mapping PROTO:CLIENT_PORT:SERVER_PORT, e.g. TCP:8080:80 (repeatable).
        #[arg(long = "map", required = true)]
        maps: Vec<String>,
        #[arg(long)]
        name: Option<String>,
        /// Accept connections without approval.
        #[arg(long)]
        no_approval: bool,
        #[arg(long)]
        tcp_proxy: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List own services.
    List,
    /// Show one.
    Show { id: String },
    /// Change a service (mappings are replaced whole).
    Update {
        id: String,
        /// A new backend port of the same type (resumes a suspended service).
        #[arg(long)]
        port: Option<String>,
        #[arg(long = "map")]
        maps: Vec<String>,
        /// on or off.
        #[arg(long)]
        approval: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Rename.
    Rename { id: String, name: String },
    /// Delete.
    Delete { id: String },
    /// Look a service up by full name or id (any visible service).
    Describe {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        id: Option<String>,
    },
    /// Services visible to this tenant.
    Public,
}

#[derive(Debug, Subcommand)]
enum ConnectionCmd {
    /// List a service's connections.
    List {
        service: String,
        #[arg(long)]
        status: Option<String>,
    },
    /// Accept an endpoint's connection.
    Accept {
        service: String,
        #[arg(value_name = "ENDPOINT")]
        endpoint_id: String,
    },
    /// Reject an endpoint's connection.
    Reject {
        service: String,
        #[arg(value_name = "ENDPOINT")]
        endpoint_id: String,
    },
    /// Describe a connection.
    Describe {
        service: String,
        #[arg(value_name = "ENDPOINT")]
        endpoint_id: String,
        description: String,
    },
}

#[derive(Debug, Subcommand)]
enum PermissionCmd {
    /// List the whitelist.
    List { service: String },
    /// Add entries (`iam:domain::<id>` or `*`).
    Add {
        service: String,
        permissions: Vec<String>,
    },
    /// Remove entries.
    Remove {
        service: String,
        permissions: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum EndpointCmd {
    /// Create an endpoint.
    Create {
        #[arg(long)]
        service: String,
        #[arg(long)]
        vpc: String,
        #[arg(long)]
        subnet: String,
        /// Fixed address; automatic when absent.
        #[arg(long)]
        ip: Option<String>,
        /// Source CIDRs allowed (enables the whitelist).
        #[arg(long, value_delimiter = ',')]
        whitelist: Vec<String>,
        #[arg(long)]
        dns: bool,
        /// Seconds until the endpoint expires.
        #[arg(long)]
        duration: Option<i64>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List own endpoints.
    List,
    /// Show one.
    Show { id: String },
    /// Replace the source whitelist (empty with --disable).
    Whitelist {
        id: String,
        cidrs: Vec<String>,
        #[arg(long)]
        disable: bool,
    },
    /// Give an endpoint a new lifetime (seconds, or "never"); unfreezes it.
    Extend { id: String, duration: String },
    /// Delete.
    Delete { id: String },
}

fn parse_map(s: &str) -> Result<PortBody, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [proto, client, server] = parts.as_slice() else {
        return Err(format!(
            "mapping {s:?}: expected PROTO:CLIENT_PORT:SERVER_PORT"
        ));
    };
    let port = |p: &str| {
        p.parse::<u32>()
            .map(i64::from)
            .map_err(|_| format!("mapping {s:?}: {p:?} is not a port"))
    };
    Ok(PortBody {
        protocol: Some(proto.to_uppercase()),
        client_port: Some(port(client)?),
        server_port: Some(port(server)?),
    })
}

fn maps(v: &[String]) -> Result<Vec<PortBody>, String> {
    v.iter().map(|m| parse_map(m)).collect()
}

/// Columns shown for each kind of list.
fn columns(key: &str) -> &'static [&'static str] {
    match key {
        "vpcs" => &["id", "name", "cidr"],
        "subnets" => &["id", "name", "vpc_id", "cidr", "gateway_ip"],
        "ports" => &["id", "name", "server_type", "ip", "subnet_id"],
        "endpoint_services" => &[
            "id",
            "service_name",
            "status",
            "server_type",
            "approval_enabled",
            "connection_count",
        ],
        "connections" => &["id", "status", "marker_id", "domain_id", "description"],
        "permissions" => &["id", "permission", "permission_type", "created_at"],
        "endpoints" => &[
            "id",
            "ip",
            "status",
            "active_status",
            "endpoint_service_name",
            "marker_id",
        ],
        "resources" => &["type", "used", "quota"],
        _ => &[],
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn table(rows: &[Value], cols: &[&str]) -> String {
    let mut widths: Vec<usize> = cols.iter().map(|c| c.len()).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| cell(&r[*c])).collect())
        .collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |vals: Vec<String>| {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(cols.iter().map(|c| c.to_uppercase()).collect())];
    out.extend(cells.into_iter().map(line));
    out.join("\n")
}

fn render(v: &Value, output: Output) -> String {
    if output == Output::Json {
        return serde_json::to_string_pretty(v).unwrap_or_default();
    }
    let Some(obj) = v.as_object() else {
        return cell(v);
    };
    // A list response ({"things": [...]} or with "total_count"): the array as a table.
    let is_list = obj.len() == 1 || (obj.len() == 2 && obj.contains_key("total_count"));
    for (k, val) in obj.iter().filter(|_| is_list) {
        if let (Some(rows), cols) = (val.as_array(), columns(k))
            && !cols.is_empty()
        {
            return table(rows, cols);
        }
    }
    if let Some(q) = obj.get("quotas") {
        return render(q, output);
    }
    // One object (possibly wrapped as {"vpc": {...}}).
    let inner = if obj.len() == 1 {
        obj.values()
            .next()
            .and_then(Value::as_object)
            .unwrap_or(obj)
    } else {
        obj
    };
    let width = inner.keys().map(String::len).max().unwrap_or(0);
    inner
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {}", cell(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run(cli: Cli) -> Result<Value, String> {
    let need = |v: Option<String>, what: &str| {
        v.ok_or_else(|| {
            format!(
                "missing --{what} (or VPCEP_{})",
                what.to_uppercase().replace('-', "_")
            )
        })
    };
    let c = Client::new(
        &cli.endpoint,
        &need(cli.ak, "ak")?,
        &need(cli.sk, "sk")?,
        &need(cli.project_id, "project-id")?,
    );
    let p = |rest: &str| c.path(rest);
    let e = |err: ClientError| err.to_string();
    let get = |path: String| c.call("GET", &path, &[], None).map_err(e);
    let del = |path: String| {
        c.call("DELETE", &path, &[], None)
            .map(|_| json!({"deleted": true}))
            .map_err(e)
    };
    // Bodies are the server's own typed wire bodies, serialized.
    let post = |path: String, b: Result<Value, serde_json::Error>| {
        c.send("POST", &path, &b.map_err(|x| x.to_string())?)
            .map_err(e)
    };
    let put = |path: String, b: Result<Value, serde_json::Error>| {
        c.send("PUT", &path, &b.map_err(|x| x.to_string())?)
            .map_err(e)
    };
    let svc = |id: &str| p(&format!("/vpc-endpoint-services/{}", segment(id)));
    let ep = |id: &str| p(&format!("/vpc-endpoints/{}", segment(id)));
    match cli.command {
        Command::Vpc(cmd) => match cmd {
            Crud::Create(a) => post(
                p("/vpcs"),
                to_value(VpcEnvelope {
                    vpc: CreateVpc {
                        name: a.name,
                        cidr: Some(a.cidr),
                    },
                }),
            ),
            Crud::List => get(p("/vpcs")),
            Crud::Show { id } => get(p(&format!("/vpcs/{}", segment(&id)))),
            Crud::Delete { id } => del(p(&format!("/vpcs/{}", segment(&id)))),
        },
        Command::Subnet(cmd) => match cmd {
            Crud::Create(a) => post(
                p("/subnets"),
                to_value(SubnetEnvelope {
                    subnet: CreateSubnet {
                        vpc_id: Some(a.vpc),
                        cidr: Some(a.cidr),
                        name: a.name,
                        gateway_ip: a.gateway,
                        ip_version: Some(a.ip_version),
                    },
                }),
            ),
            Crud::List => get(p("/subnets")),
            Crud::Show { id } => get(p(&format!("/subnets/{}", segment(&id)))),
            Crud::Delete { id } => del(p(&format!("/subnets/{}", segment(&id)))),
        },
        Command::Port(cmd) => match cmd {
            Crud::Create(a) => post(
                p("/ports"),
                to_value(PortEnvelope {
                    port: CreatePort {
                        subnet_id: Some(a.subnet),
                        server_type: Some(a.server_type),
                        ip: a.ip,
                        name: a.name,
                    },
                }),
            ),
            Crud::List => get(p("/ports")),
            Crud::Show { id } => get(p(&format!("/ports/{}", segment(&id)))),
            Crud::Delete { id } => del(p(&format!("/ports/{}", segment(&id)))),
        },
        Command::Service(cmd) => match cmd {
            ServiceCmd::Create {
                vpc,
                port,
                server_type,
                maps: m,
                name,
                no_approval,
                tcp_proxy,
                description,
            } => {
                let b = CreateService {
                    vpc_id: Some(vpc),
                    port_id: Some(port),
                    server_type: Some(server_type),
                    ports: Some(maps(&m)?),
                    approval_enabled: Some(!no_approval),
                    service_type: Some("interface".into()),
                    service_name: name,
                    tcp_proxy,
                    description,
                    ..CreateService::default()
                };
                post(p("/vpc-endpoint-services"), to_value(b))
            }
            ServiceCmd::List => get(p("/vpc-endpoint-services")),
            ServiceCmd::Show { id } => get(svc(&id)),
            ServiceCmd::Update {
                id,
                port,
                maps: m,
                approval,
                description,
            } => {
                let b = UpdateService {
                    port_id: port,
                    ports: if m.is_empty() { None } else { Some(maps(&m)?) },
                    approval_enabled: approval.map(|a| matches!(a.as_str(), "on" | "true" | "yes")),
                    description,
                    ..UpdateService::default()
                };
                put(svc(&id), to_value(b))
            }
            ServiceCmd::Rename { id, name } => put(
                format!("{}/name", svc(&id)),
                to_value(RenameService {
                    endpoint_service_name: Some(name),
                }),
            ),
            ServiceCmd::Delete { id } => del(svc(&id)),
            ServiceCmd::Describe { name, id } => {
                let q: Vec<(&str, String)> = match (name, id) {
                    (Some(n), None) => vec![("endpoint_service_name", n)],
                    (None, Some(i)) => vec![("id", i)],
                    _ => return Err("give exactly one of --name and --id".into()),
                };
                c.call("GET", &p("/vpc-endpoint-services/describe"), &q, None)
                    .map_err(e)
            }
            ServiceCmd::Public => get(p("/vpc-endpoint-services/public")),
        },
        Command::Connection(cmd) => match cmd {
            ConnectionCmd::List { service, status } => {
                let q: Vec<(&str, String)> =
                    status.map(|s| vec![("status", s)]).unwrap_or_default();
                c.call("GET", &format!("{}/connections", svc(&service)), &q, None)
                    .map_err(e)
            }
            ConnectionCmd::Accept {
                service,
                endpoint_id,
            } => post(
                format!("{}/connections/action", svc(&service)),
                to_value(ConnectionAction {
                    action: Some("receive".into()),
                    endpoints: Some(vec![endpoint_id]),
                }),
            ),
            ConnectionCmd::Reject {
                service,
                endpoint_id,
            } => post(
                format!("{}/connections/action", svc(&service)),
                to_value(ConnectionAction {
                    action: Some("reject".into()),
                    endpoints: Some(vec![endpoint_id]),
                }),
            ),
            ConnectionCmd::Describe {
                service,
                endpoint_id,
                description,
            } => put(
                format!("{}/connections/description", svc(&service)),
                to_value(ConnectionDescs {
                    connections: Some(vec![ConnectionDesc {
                        id: Some(endpoint_id),
                        description: Some(description),
                    }]),
                }),
            ),
        },
        Command::Permission(cmd) => match cmd {
            PermissionCmd::List { service } => get(format!("{}/permissions", svc(&service))),
            PermissionCmd::Add {
                service,
                permissions,
            } => post(
                format!("{}/permissions/action", svc(&service)),
                to_value(PermissionAction {
                    permissions: Some(permissions),
                    permission_type: Some("domainId".into()),
                    action: Some("add".into()),
                }),
            ),
            PermissionCmd::Remove {
                service,
                permissions,
            } => post(
                format!("{}/permissions/action", svc(&service)),
                to_value(PermissionAction {
                    permissions: Some(permissions),
                    permission_type: Some("domainId".into()),
                    action: Some("remove".into()),
                }),
            ),
        },
        Command::Endpoint(cmd) => match cmd {
            EndpointCmd::Create {
                service,
                vpc,
                subnet,
                ip,
                whitelist,
                dns,
                duration,
                description,
            } => {
                let enable_whitelist = (!whitelist.is_empty()).then_some(true);
                let b = CreateEndpoint {
                    endpoint_service_id: Some(service),
                    vpc_id: Some(vpc),
                    subnet_id: Some(subnet),
                    enable_dns: Some(dns),
                    port_ip: ip,
                    whitelist: enable_whitelist.map(|_| whitelist),
                    enable_whitelist,
                    duration,
                    description,
                    ..CreateEndpoint::default()
                };
                post(p("/vpc-endpoints"), to_value(b))
            }
            EndpointCmd::List => get(p("/vpc-endpoints")),
            EndpointCmd::Show { id } => get(ep(&id)),
            EndpointCmd::Whitelist { id, cidrs, disable } => put(
                ep(&id),
                to_value(UpdateWhitelist {
                    whitelist: Some(cidrs),
                    enable_whitelist: Some(!disable),
                }),
            ),
            EndpointCmd::Extend { id, duration } => {
                let duration = if duration == "never" {
                    None
                } else {
                    Some(
                        duration
                            .parse::<i64>()
                            .map_err(|_| format!("duration {duration:?}: seconds or never"))?,
                    )
                };
                put(format!("{}/expiry", ep(&id)), to_value(Extend { duration }))
            }
            EndpointCmd::Delete { id } => del(ep(&id)),
        },
        Command::Quota => get(p("/quotas")),
        Command::Raw { method, path, body } => {
            let b = body
                .map(|s| serde_json::from_str::<Value>(&s))
                .transpose()
                .map_err(|x| format!("body is not JSON: {x}"))?;
            c.call(&method.to_uppercase(), &p(&path), &[], b.as_ref())
                .map_err(e)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = cli.output;
    match run(cli) {
        Ok(v) => {
            println!("{}", render(&v, output));
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("vpcepctl: {msg}");
            ExitCode::FAILURE
        }
    }
}
