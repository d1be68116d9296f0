//! The `memshare` command-line tool.

mod bench;
mod cmd;
mod entry;
mod fail;
mod os;
mod owner;
mod size;
mod table;
mod window;

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
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
    Bench(bench::Args),
    #[command(hide = true)]
    BenchPeer(bench::PeerArgs),
    Ls(cmd::ls::Args),
    Info(cmd::info::Args),
    Create(cmd::create::Args),
    Rm(cmd::rm::Args),
    Gc(cmd::gc::Args),
    Cat(cmd::cat::Args),
    Write(cmd::write::Args),
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
        Command::Bench(args) => bench::run(args),
        Command::BenchPeer(args) => bench::peer(args),
        Command::Ls(args) => cmd::ls::run(args),
        Command::Info(args) => cmd::info::run(args),
        Command::Create(args) => cmd::create::run(args),
        Command::Rm(args) => cmd::rm::run(args),
        Command::Gc(args) => cmd::gc::run(args),
        Command::Cat(args) => cmd::cat::run(args),
        Command::Write(args) => cmd::write::run(args),
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

/// A command line clap refused. A value our parsers refused (a size, an
/// offset) gets one line like every other bad input; anything else (help,
/// version, unknown options) is clap's to print.
fn parse_failure(err: clap::Error) -> ExitCode {
    if err.kind() == ErrorKind::ValueValidation {
        let arg = match err.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(arg)) => arg.clone(),
            _ => "argument".to_owned(),
        };
        if let Some(reason) = std::error::Error::source(&err) {
            Failure::usage(format!("invalid {arg}: {reason}")).print();
            return ExitCode::from(fail::status::USAGE);
        }
    }
    let status = err.exit_code();
    // Help goes to stdout, errors to stderr; a closed pipe is no matter.
    let _ = err.print();
    ExitCode::from(u8::try_from(status).unwrap_or(fail::status::USAGE))
}
