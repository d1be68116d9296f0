//! Deaths of processes, for the async notifier's liveness (`crate::aio`):
//! not watched on Windows. The notifier asks each peer's lock mutex every
//! liveness interval instead (as it does on Linux for peers that publish
//! no pid). A port would wait on the peers' process handles
//! (`OpenProcess(SYNCHRONIZE)`, checked against their creation time).

/// Sets the hook called after each death: no death is ever told here.
pub(crate) fn on_death(_hook: fn()) {}

/// Sets fork handlers: Windows has no fork, so they never run.
#[cfg(feature = "async")]
pub(crate) fn on_fork(
    _prepare: extern "C" fn(),
    _parent: extern "C" fn(),
    _child: extern "C" fn(),
) {
}

/// How many watched processes have died so far: none is watched.
pub(crate) fn deaths() -> u64 {
    0
}

/// Watches process `pid`: never possible here (`false`: the caller polls).
pub(crate) fn watch_pid(_pid: u32) -> bool {
    false
}

/// One watcher fewer of `pid`: nothing was watched.
pub(crate) fn unwatch_pid(_pid: u32) {}
