//! The `memshare` command-line tool.

// The benchmarks (Unix sockets, pipes, epoll baselines) and the machine's
// list of named segments (`ls`, `info`, `gc`: /dev/shm and /proc) are
// Unix's; Windows has no list of names to show.
#[cfg(unix)]
mod bench;
mod cmd;
mod duration;
#[cfg(unix)]
mod entry;
mod fail;
mod hex;
#[cfg(unix)]
mod os;
#[cfg(unix)]
mod owner;
#[cfg(unix)]
mod service;
mod size;
#[cfg(unix)]
mod table;
mod window;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use fail::{Failure, EXIT_STATUS_HELP};

/// Shared memory between processes: benchmark, demonstrate and inspect it.
#[derive(Parser, Debug)]
#[command(
    name = "memshare",
    version,
    about,
    long_about = None,
    arg_required_else_help = true,
    after_help = EXIT_STATUS_HELP,
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[cfg(unix)]
    Bench(bench::Args),
    #[cfg(unix)]
    #[command(hide = true)]
    BenchPeer(bench::PeerArgs),
    #[cfg(unix)]
    Ls(cmd::ls::Args),
    #[cfg(unix)]
    Info(cmd::info::Args),
    Create(cmd::create::Args),
    Rm(cmd::rm::Args),
    #[cfg(unix)]
    Gc(cmd::gc::Args),
    Cat(cmd::cat::Args),
    Write(cmd::write::Args),
    #[command(name = "pub")]
    Pub(cmd::publish::Args),
    Sub(cmd::subscribe::Args),
    Call(cmd::call::Args),
    Serve(cmd::serve::Args),
    Demo(cmd::demo::Args),
    #[command(hide = true)]
    DemoPeer(cmd::demo::PeerArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return parse_failure(err),
    };
    let result = match cli.command {
        #[cfg(unix)]
        Command::Bench(args) => bench::run(args),
        #[cfg(unix)]
        Command::BenchPeer(args) => bench::peer(args),
        #[cfg(unix)]
        Command::Ls(args) => cmd::ls::run(args),
        #[cfg(unix)]
        Command::Info(args) => cmd::info::run(args),
        Command::Create(args) => cmd::create::run(args),
        Command::Rm(args) => cmd::rm::run(args),
        #[cfg(unix)]
        Command::Gc(args) => cmd::gc::run(args),
        Command::Cat(args) => cmd::cat::run(args),
        Command::Write(args) => cmd::write::run(args),
        Command::Pub(args) => cmd::publish::run(args),
        Command::Sub(args) => cmd::subscribe::run(args),
        Command::Call(args) => cmd::call::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::DemoPeer(args) => cmd::demo::run_peer(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.print();
            ExitCode::from(failure.status)
        }
    }
}

/// A command line clap refused: help and version requests print what was
/// asked for; every other refusal is one error line, status 2.
fn parse_failure(err: clap::Error) -> ExitCode {
    match Failure::from_parse_error(&err) {
        Some(failure) => {
            failure.print();
            ExitCode::from(failure.status)
        }
        None => {
            // Help goes to stdout; a closed pipe is no matter.
            let _ = err.print();
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(fail::status::USAGE))
        }
    }
}
