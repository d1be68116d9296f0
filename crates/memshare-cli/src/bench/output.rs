//! Where `--json` and `--plot` go: a file, opened before the benchmark runs
//! so that a path that cannot be written fails at once, or standard output
//! (`-`).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::fail::{status, Failure};

/// An output the results are written to at the end.
#[derive(Debug)]
pub enum Output {
    /// `-`: standard output (instead of the table).
    Stdout,
    /// A file, open for writing; a file this run created is removed again
    /// if the run ends without writing it.
    File {
        path: PathBuf,
        file: File,
        created: bool,
        written: bool,
    },
}

impl Output {
    /// Opens the output `path` given to `--{option}`: `-` is standard
    /// output; a file is opened (created if need be) but not truncated yet.
    pub fn open(path: &Path, option: &str) -> Result<Output, Failure> {
        if path.as_os_str() == "-" {
            return Ok(Output::Stdout);
        }
        let refused = |e: std::io::Error| Failure {
            status: if e.kind() == ErrorKind::PermissionDenied {
                status::PERMISSION_DENIED
            } else {
                status::USAGE
            },
            message: format!("invalid --{option}: cannot write {}: {e}", path.display()),
        };
        let (file, created) = match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(file) => (file, true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => (
                OpenOptions::new().write(true).open(path).map_err(refused)?,
                false,
            ),
            Err(e) => return Err(refused(e)),
        };
        Ok(Output::File {
            path: path.to_owned(),
            file,
            created,
            written: false,
        })
    }

    /// Whether this is standard output.
    pub fn is_stdout(&self) -> bool {
        matches!(self, Output::Stdout)
    }

    /// Replaces the contents with `text`.
    pub fn write(&mut self, text: &str) -> Result<(), Failure> {
        match self {
            Output::Stdout => crate::cmd::print_stdout(text),
            Output::File {
                path,
                file,
                written,
                ..
            } => {
                file.set_len(0)
                    .and_then(|()| file.write_all(text.as_bytes()))
                    .map_err(|e| Failure::other(format!("writing {}: {e}", path.display())))?;
                *written = true;
                Ok(())
            }
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Output::File {
            path,
            created: true,
            written: false,
            ..
        } = self
        {
            let _ = std::fs::remove_file(path);
        }
    }
}
