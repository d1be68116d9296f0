//! Processes as `/proc` shows them: their state and their parent. This
//! file uses nothing but `std`: the CLI crate's tests include it by path.

#![allow(dead_code)] // each test binary uses its own subset

/// The fields of `/proc/PID/stat` after the command name (which is in
/// parentheses and may itself hold spaces or parentheses): the state
/// letter, the parent's id, and so on.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    Some(rest.split(' ').map(str::to_owned).collect())
}

/// The state letter of process `pid` (`Z` for a zombie); `None` once it
/// is gone.
pub fn state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// Whether process `pid` runs (a zombie does not).
pub fn runs(pid: u32) -> bool {
    state(pid).is_some_and(|s| s != 'Z')
}

/// The ids of the processes whose parent is `parent` (running or
/// zombies), sorted.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<u32> = dir
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let ppid: u32 = stat_fields(pid)?.get(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect();
    found.sort_unstable();
    found
}
