//! Runs the Python package's pytest suite (`tests/python`) as part of
//! `cargo test`, on a machine that has nothing but `python3` (>= 3.11)
//! and access to PyPI.
//!
//! Under `<target>/memshare-py/` it keeps
//!
//! - `venv/`: a virtual environment with maturin, pytest and numpy, made
//!   once (delete it to start over);
//! - `target/`: the cargo target directory of the builds below (a nested
//!   cargo cannot use the outer one, whose lock `cargo test` holds);
//! - the package built by `maturin build` and installed into the venv,
//!   rebuilt only when a source it is built from changed (`built` holds
//!   their fingerprint).
//!
//! The Rust peer program the tests talk to (`examples/peer.rs`) is the one
//! `cargo test` built beside this test (it builds the examples when run
//! without target filters) if it is up to date, else it is built into
//! `target/` above.
//!
//! pytest's output is printed; a failing suite fails this test.
//! `MEMSHARE_PYTHON` picks the interpreter the venv is made from.

#![cfg(target_os = "linux")]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// The crate's directory.
fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `<target>/memshare-py`.
fn work_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp")
        .join("memshare-py")
}

/// Runs `cmd`, failing the test with its output if it fails.
fn run(what: &str, cmd: &mut Command) {
    let start = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{cmd:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("pytest.rs: {what}: {:.1} s", start.elapsed().as_secs_f64());
}

/// The virtual environment, made (once) with what the tests need.
fn venv(dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".memshare-ready");
    if ready.exists() && python.exists() {
        return venv;
    }
    let base = std::env::var("MEMSHARE_PYTHON").unwrap_or_else(|_| "python3".into());
    let _ = std::fs::remove_dir_all(&venv);
    run(
        "checking the Python version (3.11 or later)",
        Command::new(&base).args([
            "-c",
            "import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
             f'memshare needs Python 3.11 or later, not {sys.version}')",
        ]),
    );
    run(
        "making the virtual environment",
        Command::new(&base).arg("-m").arg("venv").arg(&venv),
    );
    run(
        "installing maturin, pytest and numpy into it",
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "maturin>=1.9,<2",
            "pytest",
            "numpy",
        ]),
    );
    std::fs::write(&ready, "").expect("mark the venv ready");
    venv
}

/// Every file the package and the peer are built from.
fn sources() -> Vec<PathBuf> {
    let root = crate_dir().join("../..");
    let mut files = Vec::new();
    for dir in [
        "crates/memshare/src",
        "crates/memshare-py/src",
        "crates/memshare-py/python",
        "crates/memshare-py/examples",
    ] {
        walk(&root.join(dir), &mut files);
    }
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "crates/memshare/Cargo.toml",
        "crates/memshare-py/Cargo.toml",
        "crates/memshare-py/pyproject.toml",
        "crates/memshare-py/README.md",
    ] {
        files.push(root.join(f));
    }
    files.sort();
    files
}

/// A fingerprint of `files`: paths, sizes, modification times.
fn fingerprint(files: &[PathBuf]) -> String {
    let mut h = DefaultHasher::new();
    for f in files {
        let m = std::fs::metadata(f).ok();
        f.hash(&mut h);
        m.as_ref().map(|m| m.len()).hash(&mut h);
        m.and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .hash(&mut h);
    }
    format!("{:016x} {}", h.finish(), files.len())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "__pycache__") {
                walk(&p, out);
            }
        } else if p.extension().is_none_or(|x| x != "so" && x != "pyc") {
            out.push(p);
        }
    }
}

/// A command with the venv active and builds going to `<dir>/target`.
fn in_venv(venv: &Path, dir: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![venv.join("bin")];
    paths.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(paths).expect("PATH"))
        .env("VIRTUAL_ENV", venv)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("PYTHONHOME")
        .current_dir(crate_dir());
    cmd
}

/// The peer program `cargo test` built beside this test (it builds the
/// examples when run without target filters), if it is newer than every
/// source.
fn outer_peer(sources: &[PathBuf]) -> Option<PathBuf> {
    let this = std::env::current_exe().ok()?;
    let peer = this.parent()?.parent()?.join("examples/peer");
    let built = std::fs::metadata(&peer).ok()?.modified().ok()?;
    let fresh = sources.iter().all(|s| {
        std::fs::metadata(s)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t <= built)
    });
    fresh.then_some(peer)
}

/// Builds and installs the package if a source changed, and the peer
/// program unless `cargo test` built a fresh one; returns the peer.
fn build(venv: &Path, dir: &Path) -> PathBuf {
    let sources = sources();
    let stamp = dir.join("built");
    let now = fingerprint(&sources);
    let nested_peer = dir.join("target/debug/examples/peer");
    let peer = outer_peer(&sources);
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(now.as_str()) {
        if let Some(p) = peer
            .clone()
            .or_else(|| nested_peer.exists().then(|| nested_peer.clone()))
        {
            eprintln!("pytest.rs: the package is up to date");
            return p;
        }
    }
    let wheels = dir.join("wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    run(
        "maturin build (the memshare package)",
        in_venv(venv, dir, "maturin")
            .args(["build", "--profile", "dev", "--quiet", "--out"])
            .arg(&wheels),
    );
    let wheel = std::fs::read_dir(&wheels)
        .expect("maturin's output directory")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .expect("maturin built no wheel");
    run(
        "installing the wheel into the venv",
        in_venv(venv, dir, venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--force-reinstall",
            ])
            .arg(&wheel),
    );
    std::fs::write(&stamp, now).expect("write the build stamp");
    if let Some(p) = peer {
        return p;
    }
    run(
        "cargo build --example peer",
        in_venv(venv, dir, env!("CARGO")).args([
            "build",
            "--quiet",
            "-p",
            "memshare-py",
            "--example",
            "peer",
        ]),
    );
    nested_peer
}

#[test]
fn the_python_test_suite_passes() {
    let dir = work_dir();
    std::fs::create_dir_all(&dir).expect("make <target>/memshare-py");
    let venv = venv(&dir);
    let peer = build(&venv, &dir);
    let start = Instant::now();
    let mut child = in_venv(&venv, &dir, venv.join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-r", "fEs"])
        .arg(crate_dir().join("tests/python"))
        .env("MEMSHARE_PEER", &peer)
        .env("MEMSHARE_TEST_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pytest");
    // Read as it comes, so that a suite killed for hanging still shows
    // how far it got.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out_thread = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err_thread = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    // A hung suite fails after 10 minutes instead of hanging cargo test
    // (each test has its own limit of 60 s: tests/python/conftest.py).
    let limit = Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for pytest") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_thread.join().expect("pytest's stdout");
    let stderr = err_thread.join().expect("pytest's stderr");
    println!("{stdout}");
    if !stderr.is_empty() {
        println!("--- pytest's stderr\n{stderr}");
    }
    eprintln!("pytest.rs: pytest: {:.1} s", start.elapsed().as_secs_f64());
    let status = status.unwrap_or_else(|| {
        panic!("the Python test suite did not end within {limit:?}: killed; its output is above")
    });
    assert!(
        status.success(),
        "the Python test suite failed ({status}); its output is above"
    );
    assert!(
        stdout.contains(" passed"),
        "pytest ran no test; its output is above"
    );
}
