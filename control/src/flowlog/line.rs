//! One line of the flow log, and reading them back with filters.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::logfile::files_oldest_first;

/// One line: a flow (`kind: "flow"`) or the refused attempts of one source for one reason
/// in one interval (`kind: "refused"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLine {
    /// `flow` or `refused`.
    pub kind: String,
    /// The first packet (UTC, RFC 3339, whole seconds).
    pub start: String,
    /// The last packet; for an `active` line, the time of the report.
    pub end: String,
    /// For a flow: `active` (still open), `fin`, `rst`, `idle`, `evicted` or `deleted`;
    /// for refused attempts, the drop reason (`port_not_mapped`, ...).
    pub reason: String,
    /// `tcp` or `udp`.
    pub proto: String,
    /// The client's VPC.
    pub vpc_id: String,
    /// The client's address and port (for refused attempts: its address, or `*` for the
    /// sources past the dataplane's table).
    pub client: String,
    /// Where the client sent: the endpoint's address and port (a gateway destination's
    /// for a gateway endpoint's flow).
    pub endpoint: String,
    /// The endpoint, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// Its service, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// The backend's VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_vpc_id: Option<String>,
    /// The address and port the backend saw the flow come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat: Option<String>,
    /// The backend's address and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Packets from the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_to_backend: Option<u64>,
    /// IPv4 bytes from the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_to_backend: Option<u64>,
    /// Packets from the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_to_client: Option<u64>,
    /// IPv4 bytes from the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_to_client: Option<u64>,
    /// Refused attempts in the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// Which lines [`read`] returns: each field set must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// `flow` or `refused`.
    pub kind: Option<String>,
    /// The endpoint id.
    pub endpoint_id: Option<String>,
    /// The client: an address (any port) or `address:port`.
    pub client: Option<String>,
    /// The backend: an address (any port) or `address:port`.
    pub backend: Option<String>,
    /// The reason.
    pub reason: Option<String>,
    /// `tcp` or `udp`.
    pub proto: Option<String>,
    /// Lines that end at or after this time (RFC 3339, UTC, as the log writes it).
    pub since: Option<String>,
    /// Only the last N matching lines.
    pub tail: Option<usize>,
}

/// `value` is `want`, or `want` is an address and `value` that address with a port.
fn same_host(value: &str, want: &str) -> bool {
    value == want
        || value
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with(':'))
}

impl Filter {
    /// True if `l` passes.
    pub fn matches(&self, l: &FlowLine) -> bool {
        let is = |want: &Option<String>, value: &str| want.as_deref().is_none_or(|w| w == value);
        is(&self.kind, &l.kind)
            && is(&self.reason, &l.reason)
            && is(&self.proto, &l.proto)
            && self
                .endpoint_id
                .as_deref()
                .is_none_or(|w| l.endpoint_id.as_deref() == Some(w))
            && self
                .client
                .as_deref()
                .is_none_or(|w| same_host(&l.client, w))
            && self
                .backend
                .as_deref()
                .is_none_or(|w| l.backend.as_deref().is_some_and(|b| same_host(b, w)))
            && self.since.as_deref().is_none_or(|s| l.end.as_str() >= s)
    }
}

/// The lines of `dir`'s flow log and its rotated files that pass `filter`, oldest first.
/// Lines that do not parse are skipped; with `tail`, only the last lines are kept in memory.
///
/// # Errors
/// The I/O error of reading a file that exists.
pub fn read(dir: &Path, filter: &Filter) -> std::io::Result<Vec<FlowLine>> {
    let mut out = VecDeque::new();
    for f in files_oldest_first(&dir.join(super::FILE)) {
        for line in BufReader::new(File::open(f)?).lines() {
            let Ok(l) = serde_json::from_str::<FlowLine>(&line?) else {
                continue;
            };
            if filter.matches(&l) {
                if filter.tail.is_some_and(|n| out.len() >= n) {
                    out.pop_front();
                }
                if filter.tail != Some(0) {
                    out.push_back(l);
                }
            }
        }
    }
    Ok(out.into())
}
