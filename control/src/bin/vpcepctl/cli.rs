//! The command line: every subcommand and its flags (clap), and the parsing of port
//! mappings into the API's typed wire body.

use clap::{Args, Parser, Subcommand, ValueEnum};
use control::requests::PortBody;

#[derive(Debug, Parser)]
#[command(
    name = "vpcepctl",
    version,
    about = "Drive a vpcep daemon's VPCEP API (signed with AK/SK)"
)]
pub(crate) struct Cli {
    /// API endpoint.
    #[arg(
        long,
        env = "VPCEP_ENDPOINT",
        default_value = "http://127.0.0.1:9797",
        global = true
    )]
    pub(crate) endpoint: String,
    /// Access key.
    #[arg(long, env = "VPCEP_AK", global = true)]
    pub(crate) ak: Option<String>,
    /// Secret key.
    #[arg(long, env = "VPCEP_SK", global = true, hide_env_values = true)]
    pub(crate) sk: Option<String>,
    /// Project id.
    #[arg(long, env = "VPCEP_PROJECT_ID", global = true)]
    pub(crate) project_id: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub(crate) output: Output,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// Tags of services and endpoints (RESOURCE_TYPE: endpoint_service or endpoint).
    #[command(subcommand)]
    Tag(TagCmd),
    /// Quotas and usage.
    Quota,
    /// The daemon's audit log (read from its data directory; no keys needed).
    Audit {
        /// The daemon's data directory.
        #[arg(long, env = "VPCEP_DATA_DIR", default_value = "/var/lib/vpcep")]
        data_dir: std::path::PathBuf,
        /// Only this project's writes.
        #[arg(long = "project")]
        project: Option<String>,
        /// Only the last N entries.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// The daemon's flow log, oldest first (read from its data directory; no keys needed).
    Flowlog {
        /// The daemon's data directory.
        #[arg(long, env = "VPCEP_DATA_DIR", default_value = "/var/lib/vpcep")]
        data_dir: std::path::PathBuf,
        /// Only `flow` lines or only `refused` ones.
        #[arg(long, value_parser = ["flow", "refused"])]
        kind: Option<String>,
        /// Only this endpoint's (its id).
        #[arg(long = "endpoint-id")]
        endpoint_id: Option<String>,
        /// Only this client's: an address (any port) or ADDRESS:PORT.
        #[arg(long)]
        client: Option<String>,
        /// Only this backend's: an address (any port) or ADDRESS:PORT.
        #[arg(long)]
        backend: Option<String>,
        /// Only this reason (fin, rst, idle, evicted, deleted, active, or a drop reason).
        #[arg(long)]
        reason: Option<String>,
        /// Only tcp or only udp.
        #[arg(long, value_parser = ["tcp", "udp"])]
        proto: Option<String>,
        /// Only lines that end at or after this UTC time (RFC 3339, e.g. 2026-12-06T14:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Hash a console user's password for the credentials file's `[[users]]`
    /// (`password_hash`): reads the password from the first line of standard input and
    /// prints an argon2id PHC string.
    HashPassword,
    /// The cluster of a node on etcd (read from its admin endpoint; no keys needed).
    #[command(subcommand)]
    Cluster(ClusterCmd),
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
pub(crate) enum Crud<C: Args> {
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
pub(crate) struct VpcCreate {
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// IPv4 block, e.g. 10.0.0.0/16.
    #[arg(long)]
    pub(crate) cidr: String,
}

#[derive(Debug, Args)]
pub(crate) struct SubnetCreate {
    #[arg(long)]
    pub(crate) vpc: String,
    #[arg(long)]
    pub(crate) cidr: String,
    #[arg(long)]
    pub(crate) name: Option<String>,
    #[arg(long)]
    pub(crate) gateway: Option<String>,
    /// 4 or 6.
    #[arg(long, default_value_t = 4)]
    pub(crate) ip_version: u8,
}

#[derive(Debug, Args)]
pub(crate) struct PortCreate {
    #[arg(long)]
    pub(crate) subnet: String,
    /// VM or LB.
    #[arg(long = "type")]
    pub(crate) server_type: String,
    /// Fixed address; automatic when absent.
    #[arg(long)]
    pub(crate) ip: Option<String>,
    /// The VM's MAC address (what port security checks); assigned when absent.
    #[arg(long)]
    pub(crate) mac: Option<String>,
    #[arg(long)]
    pub(crate) name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCmd {
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
        /// close (default), toa_open, proxy_open or open.
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
        /// close, toa_open, proxy_open or open (new flows only).
        #[arg(long)]
        tcp_proxy: Option<String>,
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
pub(crate) enum ConnectionCmd {
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
pub(crate) enum PermissionCmd {
    /// List the whitelist.
    List { service: String },
    /// Add entries (`iam:domain::<id>`, `*`, or `organizations:orgPath::<path>`).
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
pub(crate) enum ClusterCmd {
    /// The live nodes (from their etcd leases): revisions, table generation, attachments,
    /// and the VPCs whose addresses each owns.
    Status {
        /// A node's admin endpoint.
        #[arg(long, env = "VPCEP_ADMIN", default_value = "http://127.0.0.1:9798")]
        admin: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum EndpointCmd {
    /// Create an endpoint.
    Create {
        #[arg(long)]
        service: String,
        #[arg(long)]
        vpc: String,
        /// The subnet of the address (required for an interface endpoint; a gateway
        /// endpoint takes the VPC's first IPv4 subnet with a free address by default).
        #[arg(long)]
        subnet: Option<String>,
        /// Fixed address; automatic when absent.
        #[arg(long)]
        ip: Option<String>,
        /// Route tables to bind (gateway endpoints; default: the VPC's default table).
        #[arg(long, value_delimiter = ',')]
        routetables: Vec<String>,
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

pub(crate) fn parse_map(s: &str) -> Result<PortBody, String> {
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

pub(crate) fn maps(v: &[String]) -> Result<Vec<PortBody>, String> {
    v.iter().map(|m| parse_map(m)).collect()
}

#[derive(Debug, Subcommand)]
pub(crate) enum TagCmd {
    /// Add tags (an existing key takes the new value); on an endpoint,
    /// vpcep:duration=SECS extends its lifetime.
    Add {
        resource_type: String,
        id: String,
        /// KEY=VALUE, one or more.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Remove tags: KEY, or KEY=VALUE (only if the value matches).
    Remove {
        resource_type: String,
        id: String,
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Every key and its values on the project's resources of a type.
    List { resource_type: String },
    /// The project's resources that have every one of the tags: KEY (any value) or
    /// KEY=V1,V2 (one of the values).
    Find {
        resource_type: String,
        tags: Vec<String>,
        /// Only the number of resources.
        #[arg(long)]
        count: bool,
    },
}
