//! `memshare-bridge`: carries memshare services between machines over
//! Zenoh. Run one on each machine; see docs/bridge.md.
//!
//! ```text
//! memshare-bridge --pubsub camera --rpc calc --listen tcp/192.0.2.1:7447
//! memshare-bridge --pubsub camera --rpc-remote calc --connect tcp/192.0.2.1:7447
//! memshare-bridge --config bridge.toml
//! memshare-bridge bench
//! ```

#[cfg(unix)]
mod bench;

#[cfg(unix)]
fn main() {
    cli::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("memshare-bridge: memshare's services are Unix-only for now");
    std::process::exit(1);
}

#[cfg(unix)]
mod cli {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use clap::{Args, Parser, Subcommand};
    use memshare_bridge::config::{Mode, ServerSide};
    use memshare_bridge::{Bridge, Config, Error, PubsubConfig, RpcConfig};

    use crate::bench;

    #[derive(Parser)]
    #[command(
        name = "memshare-bridge",
        version,
        about = "Carries memshare publish-subscribe and request/response services between machines over Zenoh",
        args_conflicts_with_subcommands = true
    )]
    struct Cli {
        #[command(subcommand)]
        command: Option<Command>,
        #[command(flatten)]
        run: RunArgs,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Bridged throughput and latency against Zenoh's own pub/sub
        /// between the same two endpoints (about a minute; --quick: seconds)
        Bench(bench::BenchArgs),
        /// One process of the bench (run by `bench` itself)
        #[command(hide = true)]
        BenchRole(bench::RoleArgs),
    }

    /// Flags add to the configuration file's services; endpoint flags
    /// replace the file's endpoints.
    #[derive(Args)]
    struct RunArgs {
        /// A TOML configuration file (docs/bridge.md, "Configuration")
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Carry the publish-subscribe service NAME both ways, on the key
        /// expression memshare/NAME (or KEY)
        #[arg(long, value_name = "NAME[=KEY]")]
        pubsub: Vec<String>,
        /// Offer the request/response server NAME of this machine to
        /// clients on other machines
        #[arg(long, value_name = "NAME[=KEY]")]
        rpc: Vec<String>,
        /// Serve the name NAME here for a server on another machine
        #[arg(long, value_name = "NAME[=KEY]")]
        rpc_remote: Vec<String>,
        /// Zenoh mode: peer (default) or client (through a router)
        #[arg(long, value_name = "MODE")]
        mode: Option<Mode>,
        /// An endpoint to listen on (default tcp/127.0.0.1:7447 in peer
        /// mode: loopback only)
        #[arg(long, value_name = "ENDPOINT")]
        listen: Vec<String>,
        /// Listen nowhere (only connect)
        #[arg(long, conflicts_with = "listen")]
        no_listen: bool,
        /// An endpoint to connect to (another bridge, or a router)
        #[arg(long, value_name = "ENDPOINT")]
        connect: Vec<String>,
        /// Find peers by UDP multicast scouting too
        #[arg(long)]
        multicast_scouting: bool,
        /// A Zenoh configuration file (JSON5): TLS, access control...
        #[arg(long, value_name = "FILE")]
        zenoh_config: Option<PathBuf>,
        /// Say what the bridge does, on standard error
        #[arg(short, long)]
        verbose: bool,
    }

    pub fn main() {
        let cli = Cli::parse();
        // Zenoh's own diagnostics (a link that fails, a refused
        // certificate) on standard error: its errors unless RUST_LOG says
        // more (RUST_LOG=zenoh=info shows every link opened and closed).
        zenoh::init_log_from_env_or("error");
        let status = match cli.command {
            Some(Command::Bench(args)) => bench::run(&args),
            Some(Command::BenchRole(args)) => bench::role(&args),
            None => run(cli.run),
        };
        std::process::exit(status);
    }

    fn split(arg: &str) -> (&str, Option<String>) {
        match arg.split_once('=') {
            Some((name, key)) => (name, Some(key.to_owned())),
            None => (arg, None),
        }
    }

    /// The configuration the file and the flags make together.
    fn configuration(args: &RunArgs) -> Result<Config, Error> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        for arg in &args.pubsub {
            let (name, key) = split(arg);
            let mut p = PubsubConfig::new(name);
            p.key = key;
            config.pubsub.push(p);
        }
        for (args, side) in [
            (&args.rpc, ServerSide::Local),
            (&args.rpc_remote, ServerSide::Remote),
        ] {
            for arg in args {
                let (name, key) = split(arg);
                let mut r = RpcConfig::new(name, side);
                r.key = key;
                config.rpc.push(r);
            }
        }
        if let Some(mode) = args.mode {
            config.zenoh.mode = mode;
        }
        if args.no_listen {
            config.zenoh.listen = Some(Vec::new());
        } else if !args.listen.is_empty() {
            config.zenoh.listen = Some(args.listen.clone());
        }
        if !args.connect.is_empty() {
            config.zenoh.connect = args.connect.clone();
        }
        config.zenoh.multicast_scouting |= args.multicast_scouting;
        if let Some(file) = &args.zenoh_config {
            config.zenoh.config_file = Some(file.clone());
        }
        let origin = match &args.config {
            Some(path) => format!("{} and the flags", path.display()),
            None => "the flags".into(),
        };
        config.check(&origin)?;
        if config.pubsub.is_empty() && config.rpc.is_empty() {
            return Err(Error::Config {
                origin,
                detail: "no service to carry: name one (--pubsub, --rpc, --rpc-remote, \
                         or [[pubsub]] / [[rpc]] in --config)"
                    .into(),
            });
        }
        Ok(config)
    }

    fn run(args: RunArgs) -> i32 {
        let config = match configuration(&args) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("memshare-bridge: {e}");
                return 2;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        if let Err(e) = on_signals(&stop) {
            eprintln!("memshare-bridge: {e}");
            return 1;
        }
        let bridge = match Bridge::start(&config, args.verbose) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("memshare-bridge: {e}");
                return 1;
            }
        };
        let services: Vec<String> = config
            .pubsub
            .iter()
            .map(|p| format!("pubsub {} ({})", p.service, p.key()))
            .chain(config.rpc.iter().map(|r| {
                let side = match r.server {
                    ServerSide::Local => "server here",
                    ServerSide::Remote => "server remote",
                };
                format!("rpc {} ({}, {side})", r.service, r.key())
            }))
            .collect();
        eprintln!(
            "memshare-bridge: ready: bridge {}, zenoh {}, listening on {:?}, connecting to {:?}; {}",
            bridge.id(),
            bridge.session().zid(),
            config.listen(),
            config.zenoh.connect,
            services.join(", ")
        );
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for stats in bridge.stop() {
            eprintln!("memshare-bridge: {stats}");
        }
        0
    }

    /// SIGINT and SIGTERM set `stop`; a second one ends the process at once.
    fn on_signals(stop: &Arc<AtomicBool>) -> Result<(), Error> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        for signal in [SIGINT, SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(stop))
                .and_then(|_| signal_hook::flag::register(signal, Arc::clone(stop)))
                .map_err(|source| Error::Signal { signal, source })?;
        }
        Ok(())
    }
}
