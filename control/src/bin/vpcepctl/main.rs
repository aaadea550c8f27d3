//! `vpcepctl`: a command-line client for the VPCEP API that signs its requests.
//! Readable tables by default, `-o json` for scripts; errors print the API's error code.
//! Request bodies are the server's own typed wire bodies (`control::requests`).

mod cli;
mod render;

use std::process::ExitCode;

use clap::Parser;
use control::client::{Client, ClientError, segment};
use control::requests::{
    ConnectionAction, ConnectionDesc, ConnectionDescs, CreateEndpoint, CreatePort, CreateService,
    CreateSubnet, CreateVpc, Extend, PermissionAction, PortEnvelope, RenameService,
    ResourceQueryBody, SubnetEnvelope, TagAction, TagBody, TagValuesBody, UpdateService,
    UpdateWhitelist, VpcEnvelope,
};
use serde_json::{Value, json, to_value};

use crate::cli::{
    Cli, ClusterCmd, Command, ConnectionCmd, Crud, EndpointCmd, PermissionCmd, ServiceCmd, TagCmd,
    maps,
};
use crate::render::render;

/// `vpcepctl audit`: the entries of the audit log, oldest first, as `{"audit": [...]}`.
fn audit(
    dir: &std::path::Path,
    project: Option<&str>,
    tail: Option<usize>,
) -> Result<Value, String> {
    let mut entries = control::audit::read(dir)
        .map_err(|e| format!("cannot read the audit log in {}: {e}", dir.display()))?;
    entries.retain(|e| project.is_none_or(|p| e.project_id == p));
    if let Some(n) = tail {
        entries.drain(..entries.len().saturating_sub(n));
    }
    Ok(json!({ "audit": entries }))
}

/// `vpcepctl flowlog`: the lines of the flow log that pass `filter`, oldest first, as
/// `{"flows": [...]}`.
fn flowlog(dir: &std::path::Path, filter: &control::flowlog::Filter) -> Result<Value, String> {
    if let Some(since) = &filter.since {
        chrono::DateTime::parse_from_rfc3339(since)
            .map_err(|e| format!("--since {since}: not an RFC 3339 time ({e})"))?;
    }
    let lines = control::flowlog::read(dir, filter)
        .map_err(|e| format!("cannot read the flow log in {}: {e}", dir.display()))?;
    Ok(json!({ "flows": lines }))
}

/// `vpcepctl cluster status`: a node's `/cluster` document, `{"nodes": [...]}`.
fn cluster_status(admin: &str) -> Result<Value, String> {
    let url = format!("{}/cluster", admin.trim_end_matches('/'));
    let mut resp = ureq::get(&url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .map_err(|e| format!("{url}: {e}"))?;
    let ok = resp.status().is_success();
    let body: Value = resp
        .body_mut()
        .read_json()
        .map_err(|e| format!("{url}: {e}"))?;
    if !ok {
        return Err(format!(
            "{url}: {}",
            body["error"].as_str().unwrap_or("failed")
        ));
    }
    Ok(body)
}

fn run(cli: Cli) -> Result<Value, String> {
    if let Command::Cluster(ClusterCmd::Status { admin }) = &cli.command {
        return cluster_status(admin);
    }
    if let Command::Audit {
        data_dir,
        project,
        tail,
    } = &cli.command
    {
        return audit(data_dir, project.as_deref(), *tail);
    }
    if let Command::Flowlog {
        data_dir,
        kind,
        endpoint_id,
        client,
        backend,
        reason,
        proto,
        since,
        tail,
    } = &cli.command
    {
        // The log writes UTC with a `Z`: a time given with an offset is compared as UTC.
        let since = since.as_ref().map(|s| {
            chrono::DateTime::parse_from_rfc3339(s).map_or_else(
                |_| s.clone(),
                |t| {
                    t.with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                },
            )
        });
        let filter = control::flowlog::Filter {
            kind: kind.clone(),
            endpoint_id: endpoint_id.clone(),
            client: client.clone(),
            backend: backend.clone(),
            reason: reason.clone(),
            proto: proto.clone(),
            since,
            tail: *tail,
        };
        return flowlog(data_dir, &filter);
    }
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
                        mac_address: a.mac,
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
                tcp_proxy,
                description,
            } => {
                let b = UpdateService {
                    port_id: port,
                    ports: if m.is_empty() { None } else { Some(maps(&m)?) },
                    approval_enabled: approval.map(|a| matches!(a.as_str(), "on" | "true" | "yes")),
                    tcp_proxy,
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
                    permission_type: Some(permission_type(&permissions)?.into()),
                    permissions: Some(permissions),
                    action: Some("add".into()),
                }),
            ),
            PermissionCmd::Remove {
                service,
                permissions,
            } => post(
                format!("{}/permissions/action", svc(&service)),
                to_value(PermissionAction {
                    permission_type: Some(permission_type(&permissions)?.into()),
                    permissions: Some(permissions),
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
                routetables,
                whitelist,
                dns,
                duration,
                description,
            } => {
                let enable_whitelist = (!whitelist.is_empty()).then_some(true);
                let b = CreateEndpoint {
                    endpoint_service_id: Some(service),
                    vpc_id: Some(vpc),
                    subnet_id: subnet,
                    routetables: (!routetables.is_empty()).then_some(routetables),
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
        Command::Tag(cmd) => tag(&c, cmd),
        Command::Quota => get(p("/quotas")),
        Command::Audit { .. }
        | Command::Flowlog { .. }
        | Command::Cluster(_)
        | Command::HashPassword => {
            unreachable!("answered before a client is made")
        }
        Command::Raw { method, path, body } => {
            let b = body
                .map(|s| serde_json::from_str::<Value>(&s))
                .transpose()
                .map_err(|x| format!("body is not JSON: {x}"))?;
            // A query in the path goes as the query (each pair signed as the SDK signs it).
            let (path, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
            let query: Vec<(&str, String)> = query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
                    (k, v.into_owned())
                })
                .collect();
            c.call(&method.to_uppercase(), &p(path), &query, b.as_ref())
                .map_err(e)
        }
    }
}

/// The `permission_type` of a list of whitelist entries: one type per request, as the API
/// takes it (`orgPath` for `organizations:orgPath::...` entries, else `domainId`).
fn permission_type(list: &[String]) -> Result<&'static str, String> {
    let org = |p: &String| p.starts_with("organizations:orgPath::");
    if list.iter().all(org) && !list.is_empty() {
        Ok("orgPath")
    } else if list.iter().any(org) {
        Err("give organisation paths and accounts in separate calls".into())
    } else {
        Ok("domainId")
    }
}

/// `vpcepctl tag ...`: the tag API, with the server's own wire bodies.
fn tag(c: &Client, cmd: TagCmd) -> Result<Value, String> {
    let e = |x: ClientError| x.to_string();
    let action = |rt: &str, id: &str, act: &str, tags: Vec<String>| {
        let tags = tags
            .into_iter()
            .map(|t| match t.split_once('=') {
                Some((k, v)) => TagBody {
                    key: Some(k.into()),
                    value: Some(v.into()),
                },
                None => TagBody {
                    key: Some(t),
                    value: None,
                },
            })
            .collect();
        let body = TagAction {
            tags: Some(tags),
            action: Some(act.into()),
        };
        let path = c.path(&format!("/{}/{}/tags/action", segment(rt), segment(id)));
        c.send("POST", &path, &body)
            .map(|_| json!({"tagged": id}))
            .map_err(e)
    };
    match cmd {
        TagCmd::Add {
            resource_type,
            id,
            tags,
        } => action(&resource_type, &id, "create", tags),
        TagCmd::Remove {
            resource_type,
            id,
            tags,
        } => action(&resource_type, &id, "delete", tags),
        TagCmd::List { resource_type } => c
            .call(
                "GET",
                &c.path(&format!("/{}/tags", segment(&resource_type))),
                &[],
                None,
            )
            .map_err(e),
        TagCmd::Find {
            resource_type,
            tags,
            count,
        } => {
            let filters = tags
                .into_iter()
                .map(|t| {
                    let (key, values) = match t.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.split(',').map(String::from).collect()),
                        None => (t, Vec::new()),
                    };
                    TagValuesBody {
                        key: Some(key),
                        values: Some(values),
                    }
                })
                .collect();
            let body = ResourceQueryBody {
                tags: Some(filters),
                action: Some(if count { "count" } else { "filter" }.into()),
                ..ResourceQueryBody::default()
            };
            let path = c.path(&format!(
                "/{}/resource_instances/action",
                segment(&resource_type)
            ));
            c.send("POST", &path, &body).map_err(e)
        }
    }
}

/// `vpcepctl hash-password`: the password from stdin's first line (without its line end).
fn hash_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err("the password is empty (give it on standard input)".into());
    }
    control::auth::session::hash_password(password).map_err(|e| format!("cannot hash: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::HashPassword = cli.command {
        return match hash_password() {
            Ok(hash) => {
                println!("{hash}");
                ExitCode::SUCCESS
            }
            Err(msg) => {
                eprintln!("vpcepctl: {msg}");
                ExitCode::FAILURE
            }
        };
    }
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
