//! The audit log: one JSON line per authenticated write (any method but GET and HEAD),
//! saying when, who (domain, project, access key), the operation, the resource, the result
//! and the request id, in `audit.log` in the data directory.
//!
//! Rotation by size ([`crate::logfile`]): when a line would take the file past `max_bytes`,
//! `audit.log` becomes `audit.log.1`, `.1` becomes `.2`, and so on; the oldest past `files`
//! is deleted. So the log takes at most `max_bytes * (files + 1)` of disk whatever the
//! callers do. [`read`] returns the entries of every file, oldest first.
//!
//! Lines are appended with one `write` each and not synced: the log is for people, and the
//! store (which is synced) is the truth. A write that fails is logged and counted
//! (`vpcep_audit_write_failures_total`); it never fails the request, which already happened.
//! Unauthenticated requests are not recorded: they have no verified "who", and anyone could
//! flood the log with them.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Mutex;

use crate::logfile::{RotatingFile, files_oldest_first};

use serde::{Deserialize, Serialize};

/// The log's file name in the data directory.
pub const FILE: &str = "audit.log";

/// One write, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the answer was sent (RFC 3339, UTC).
    pub at: String,
    /// The caller's account.
    pub domain_id: String,
    /// The caller's project.
    pub project_id: String,
    /// The access key that signed.
    pub ak: String,
    /// Method and path, e.g. `POST /v1/p/vpcs`.
    pub operation: String,
    /// The resource written (from the path, or the id the answer gave a new one).
    pub resource_id: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
    /// `OK`, or the API error code.
    pub result: String,
    /// The request id (`X-Request-Id` of the answer).
    pub request_id: String,
}

/// The open log.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<RotatingFile>,
}

impl AuditLog {
    /// Open (or create) `dir/audit.log`, rotating at `max_bytes` and keeping `files` rotated
    /// files.
    ///
    /// # Errors
    /// The I/O error of opening the file.
    pub fn open(dir: &Path, max_bytes: u64, files: usize) -> std::io::Result<Self> {
        let file = RotatingFile::open(dir.join(FILE), max_bytes, files)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Append `e` as one line, rotating first if it would not fit.
    ///
    /// # Errors
    /// The I/O error of rotating or writing.
    pub fn record(&self, e: &AuditEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .append(&line)
    }
}

/// Every entry in `dir`'s log and its rotated files, oldest first. Lines that do not parse
/// are skipped.
///
/// # Errors
/// The I/O error of reading a file that exists.
pub fn read(dir: &Path) -> std::io::Result<Vec<AuditEntry>> {
    let mut out = Vec::new();
    for f in files_oldest_first(&dir.join(FILE)) {
        for line in BufReader::new(File::open(f)?).lines() {
            if let Ok(e) = serde_json::from_str(&line?) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> AuditEntry {
        AuditEntry {
            at: "2026-01-01T00:00:00Z".into(),
            domain_id: "d".into(),
            project_id: "p".into(),
            ak: "AK".into(),
            operation: "POST /v1/p/vpcs".into(),
            resource_id: Some(format!("r{n}")),
            status: 200,
            result: "OK".into(),
            request_id: format!("q{n}"),
        }
    }

    #[test]
    fn rotation_keeps_the_newest_and_reads_back_in_order() {
        let dir = std::env::temp_dir().join(format!("vpcep-audit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = serde_json::to_vec(&entry(0)).unwrap().len() as u64 + 1;
        // Two lines per file, two rotated files: six lines fit, the rest rotate away.
        let log = AuditLog::open(&dir, 2 * one + 1, 2).unwrap();
        for n in 0..9 {
            log.record(&entry(n)).unwrap();
        }
        let got: Vec<String> = read(&dir)
            .unwrap()
            .into_iter()
            .map(|e| e.request_id)
            .collect();
        assert_eq!(got, ["q4", "q5", "q6", "q7", "q8"]);
        assert!(!dir.join("audit.log.3").exists());
        // Reopening appends.
        drop(log);
        AuditLog::open(&dir, 2 * one + 1, 2)
            .unwrap()
            .record(&entry(9))
            .unwrap();
        assert_eq!(read(&dir).unwrap().last().unwrap().request_id, "q9");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
