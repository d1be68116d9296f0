//! `memshare serve NAME (--echo | --exec CMD...)`: a request/response
//! server for demos, tests and scripts.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memshare::rpc::{Request, Server, ServerConfig};
use memshare::Error;

use crate::fail::{status, Failure};
use crate::size::parse_size;

/// Serve a request/response service: echo each request, or answer it with
/// a command's output
///
/// Creates the request/response service NAME, shaped by --max-clients,
/// --max-in-flight, --max-request-len and --max-response-len, and answers
/// its requests one at a time, the clients taking turns. Prints `memshare:
/// serving NAME` on standard error once clients can connect (`memshare
/// call NAME REQUEST` is one). A name whose server died is taken over (its
/// clients get "no server"); a name a live server serves, or that holds
/// something else, is refused (status 4).
///
/// --echo answers every request with its own bytes. --exec CMD [ARG...]
/// runs CMD once per request, the request on its standard input, and
/// answers with what it wrote to its standard output; everything after
/// --exec is the command and its arguments, so it comes last. CMD's
/// standard error is serve's. A request is declined (the client gets no
/// response: `memshare call` exits with status 8), with a line on standard
/// error saying why, when CMD exits with a nonzero status or is killed by
/// a signal, or when the response would be longer than --max-response-len.
/// A command that cannot be started at all stops serve (status 1).
///
/// Runs until SIGINT or SIGTERM, or until --count requests were served
/// (answered or declined), then removes the service (status 0); its
/// clients see the server gone. While CMD runs, a signal waits for it to
/// finish; a second one ends serve at once, leaving the name to its clients
/// (or to `memshare gc` when none is left).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The service's name
    name: String,
    /// Answer every request with its own bytes
    #[arg(long, conflicts_with = "exec", required_unless_present = "exec")]
    echo: bool,
    /// Answer every request with the standard output of CMD ARG..., run
    /// once per request with the request on its standard input; the rest
    /// of the command line
    #[arg(long, value_name = "CMD", num_args = 1.., allow_hyphen_values = true)]
    exec: Vec<OsString>,
    /// Stop after this many requests (answered or declined)
    #[arg(short = 'n', long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// On standard error, one line per request: its client, id, length and
    /// the response's
    #[arg(short, long)]
    verbose: bool,
    /// How many clients may be connected at once, 1 to 256
    #[arg(long, value_name = "N", default_value_t = ServerConfig::new().get_max_clients())]
    max_clients: u32,
    /// How many requests one client may have in flight at once, 1 to 64
    #[arg(long, value_name = "N", default_value_t = ServerConfig::new().get_max_in_flight())]
    max_in_flight: u32,
    /// The largest request, at most 4G - 1 (units as for sizes: 4K, 1M…;
    /// every client has --max-in-flight buffers this large)
    #[arg(long, value_name = "SIZE", value_parser = parse_size,
          default_value_t = ServerConfig::new().get_max_request_len())]
    max_request_len: u64,
    /// The largest response, at most 4G - 1 (every client has
    /// --max-in-flight buffers this large)
    #[arg(long, value_name = "SIZE", value_parser = parse_size,
          default_value_t = ServerConfig::new().get_max_response_len())]
    max_response_len: u64,
}

/// How long a wait for a request lasts before the stop flag is looked at.
const SLICE: Duration = Duration::from_millis(50);

impl Args {
    fn config(&self) -> ServerConfig {
        ServerConfig::new()
            .max_clients(self.max_clients)
            .max_in_flight(self.max_in_flight)
            .max_request_len(self.max_request_len)
            .max_response_len(self.max_response_len)
    }
}

pub fn run(args: Args) -> Result<(), Failure> {
    let name = args.name.as_str();
    // Before the service exists: a signal from now on ends the loop below,
    // and the server's drop removes the name.
    let stop = stop_on_signals()?;
    let server = Server::create(name, args.config()).map_err(|e| match e {
        e @ Error::AlreadyAttached { .. } => Failure {
            status: status::ALREADY_EXISTS,
            message: e.to_string(),
        },
        e => e.into(),
    })?;
    eprintln!("memshare: serving {name}");
    let max_response =
        usize::try_from(server.config().get_max_response_len()).unwrap_or(usize::MAX);
    let mut served: u64 = 0;
    while args.count.is_none_or(|n| served < n) && !stop.load(Ordering::Relaxed) {
        let request = match server.recv_timeout(SLICE) {
            Ok(request) => request,
            Err(Error::TimedOut { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        served += 1;
        let (client, id, len) = (request.client(), request.id(), request.len());
        let answered = if args.echo {
            echo(request, max_response)?
        } else {
            exec(request, &args.exec, max_response)?
        };
        match answered {
            Ok(response_len) if args.verbose => eprintln!(
                "memshare: request {id} from client {client}: {len} bytes, answered with \
                 {response_len} bytes"
            ),
            Ok(_) => {}
            Err(why) => eprintln!(
                "memshare: declined request {id} from client {client} ({len} bytes): {why}"
            ),
        }
    }
    if args.verbose {
        eprintln!("memshare: stopped serving {name} after {served} requests");
    }
    Ok(())
}

/// A flag that SIGINT and SIGTERM set; a second signal, once it is set,
/// ends the process at once (status 130 or 143, as if killed).
#[cfg(unix)]
fn stop_on_signals() -> Result<Arc<AtomicBool>, Failure> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for (signal, status) in [(SIGINT, 130), (SIGTERM, 143)] {
        // The exit first: it acts only when the flag is already set, so
        // the first signal sets it and the second ends the process.
        signal_hook::flag::register_conditional_shutdown(signal, status, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .map_err(|e| Failure::other(format!("installing a signal handler: {e}")))?;
    }
    Ok(stop)
}

/// Never set: on Windows Ctrl+C ends the process (the service's name goes
/// with it, as every Windows name goes with its last holder).
#[cfg(not(unix))]
fn stop_on_signals() -> Result<Arc<AtomicBool>, Failure> {
    Ok(Arc::new(AtomicBool::new(false)))
}

/// What became of a request: the response's length, or why it was
/// declined. (`Err` of the outer result: serving cannot go on.)
type Answered = Result<usize, String>;

/// Answers `request` with its own bytes, copied from the request buffer
/// straight into the response buffer.
fn echo(request: Request<'_>, max_response: usize) -> Result<Answered, Failure> {
    let len = request.len();
    if len > max_response {
        return Ok(Err(too_long(len, max_response)));
    }
    let mut out = request.loan_response(len)?;
    let (request, response) = out.split();
    response.copy_from_slice(request);
    out.send()?;
    Ok(Ok(len))
}

fn too_long(len: usize, max: usize) -> String {
    format!("the response of {len} bytes would be longer than --max-response-len ({max})")
}

/// Answers `request` with the output of `command`, run with the request on
/// its standard input.
fn exec(
    request: Request<'_>,
    command: &[OsString],
    max_response: usize,
) -> Result<Answered, Failure> {
    let input = request.to_vec();
    let shown = command
        .iter()
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::other(format!("cannot run `{shown}`: {e}")))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let output = std::thread::scope(|scope| {
        // Written by a thread of its own: a command may write before it has
        // read everything (or never read it: `echo`, whose closed pipe is
        // no error).
        scope.spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let mut output = Vec::new();
        let limit = u64::try_from(max_response)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let read = (&mut stdout).take(limit).read_to_end(&mut output);
        if read.is_err() || output.len() > max_response {
            // Killed, so that neither the writer nor the wait below waits
            // for a command that will not be heard out.
            let _ = child.kill();
        }
        read.map(|_| output)
    });
    let exit = child
        .wait()
        .map_err(|e| Failure::other(format!("waiting for `{shown}`: {e}")))?;
    let output = match output {
        Ok(output) => output,
        Err(e) => return Ok(Err(format!("reading the output of `{shown}`: {e}"))),
    };
    if output.len() > max_response {
        return Ok(Err(format!(
            "`{shown}` wrote more than --max-response-len ({max_response} bytes)"
        )));
    }
    if !exit.success() {
        return Ok(Err(format!("`{shown}` {}", exit_text(exit))));
    }
    request.respond(&output)?;
    Ok(Ok(output.len()))
}

/// How a command ended, for a message: `exited with status 3`, `was
/// killed by signal 9`.
fn exit_text(exit: ExitStatus) -> String {
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&exit);
    #[cfg(not(unix))]
    let signal: Option<i32> = None;
    match (exit.code(), signal) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended: {exit}"),
    }
}
