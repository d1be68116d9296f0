//! The few operating-system calls the CLI makes itself (the library's `sys`
//! layer covers everything about shared memory).

/// The CPUs this process may run on, as the system numbers them. Read it
/// before pinning anything: a pinned process (and its children) sees only
/// its own CPU.
pub fn cpu_ids() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

/// Pins the calling thread to CPU `id`; `false` where the system does not
/// allow it.
pub fn pin_to_cpu(id: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id })
}

/// Asks the kernel to kill this process when its parent dies, so that a
/// benchmark peer never outlives the benchmark (Linux; elsewhere the peer's
/// own deadline stops it).
pub fn die_with_parent() {
    #[cfg(target_os = "linux")]
    {
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    }
}

/// A short description of the machine, for reports.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_owned());
    format!("{} CPUs, {model}, {kernel}", cpu_ids().len())
}
