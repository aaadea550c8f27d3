//! A log file of JSON lines rotated by size, for the audit log ([`crate::audit`]) and the
//! flow log ([`crate::flowlog`]).
//!
//! When a write would take `NAME` past `max_bytes`, `NAME` becomes `NAME.1`, `.1` becomes
//! `.2`, and so on; the oldest past `files` is deleted. So the log takes at most
//! `max_bytes * (files + 1)` of disk (a file over `max_bytes` holds a single write that is
//! bigger on its own). [`files_oldest_first`] lists the files for a reader.
//!
//! Written here rather than with the `file-rotate` crate: that crate asserts that the file
//! it rotates still exists, and an operator who removes a log by hand would then abort a
//! daemon built with `panic = "abort"`. Here a missing file is simply created again.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `path` with `.n` appended.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The open log.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    files: usize,
    file: File,
    len: u64,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl RotatingFile {
    /// Open (or create) `path`, rotating at `max_bytes` and keeping `files` rotated files.
    ///
    /// # Errors
    /// The I/O error of opening the file.
    pub fn open(path: PathBuf, max_bytes: u64, files: usize) -> std::io::Result<Self> {
        let file = open_append(&path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            path,
            max_bytes,
            files,
            file,
            len,
        })
    }

    /// Append `bytes` (whole lines) with one `write`, rotating first if they would not fit.
    ///
    /// # Errors
    /// The I/O error of rotating or writing.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let n = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if self.len > 0 && self.len.saturating_add(n) > self.max_bytes {
            self.rotate()?;
            self.file = open_append(&self.path)?;
            self.len = 0;
        }
        self.file.write_all(bytes)?;
        self.len = self.len.saturating_add(n);
        Ok(())
    }

    /// Shift `NAME.N` to `.N+1` (dropping the last) and `NAME` to `.1`. A `NAME` removed
    /// by hand meanwhile is nothing to move.
    fn rotate(&self) -> std::io::Result<()> {
        if self.files == 0 {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let _ = std::fs::remove_file(rotated(&self.path, self.files));
        for n in (1..self.files).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        match std::fs::rename(&self.path, rotated(&self.path, 1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// `path`'s rotated files and then `path`, oldest first: those that exist.
pub fn files_oldest_first(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| rotated(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    files.retain(|f| f.exists());
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_bounds_the_files_and_survives_a_removed_log() {
        let dir = std::env::temp_dir().join(format!("vpcep-logfile-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.log");
        let mut log = RotatingFile::open(path.clone(), 8, 2).unwrap();
        for n in 0..6 {
            log.append(format!("line{n}\n").as_bytes()).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let all: Vec<String> = files_oldest_first(&path).iter().map(|p| read(p)).collect();
        assert_eq!(all, ["line3\n", "line4\n", "line5\n"]);
        std::fs::remove_file(&path).unwrap();
        log.append(b"line6\n").unwrap();
        log.append(b"line7\n").unwrap();
        let all: Vec<String> = files_oldest_first(&path).iter().map(|p| read(p)).collect();
        assert_eq!(
            all,
            ["line6\n", "line7\n"],
            "the removed log is created again"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
