//! Reading `/proc`: a process's state, parent and CPU time, its network namespace, the
//! namespaces it holds open, and the machine's CPU time.
//!
//! Everything here only reads; a process that is gone reads as `None` (or is skipped), since
//! one may end between listing `/proc` and reading its files.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What identifies a namespace (or any file): the device and inode of its nsfs file, the same
/// through `/run/netns/<name>`, `/proc/<pid>/ns/net` and an open descriptor to either.
pub type FileId = (u64, u64);

/// The fields of `/proc/<pid>/stat` that guestnet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The state letter: `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    /// The parent's process id.
    pub parent: i32,
    /// utime + stime + cutime + cstime: CPU time of the process and the children it waited
    /// for, in clock ticks (see [`clock_ticks`]).
    pub cpu_ticks: u64,
}

impl Stat {
    /// Whether the process has ended (a zombie nobody has reaped yet, or dead).
    pub fn has_ended(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parses the text of a `/proc/<pid>/stat` file. The command name, in parentheses, may itself
/// hold spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `f[0]` is field 3 (state); field n is `f[n - 3]`.
    let field = |n: usize| f.get(n - 3).copied();
    let state = field(3)?.chars().next()?;
    let parent = field(4)?.parse().ok()?;
    let cpu_ticks = [14, 15, 16, 17]
        .iter()
        .map(|&n| field(n)?.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some(Stat {
        state,
        parent,
        cpu_ticks,
    })
}

/// The stat fields of process `pid`, or `None` if it is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether process `pid` exists and has not ended (zombies count as ended).
pub fn is_alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| !s.has_ended())
}

/// The ids of every process on the machine, as `/proc` lists them now.
pub fn pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// The processes whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|s| s.parent == parent))
        .collect()
}

/// The command name of process `pid` (`/proc/<pid>/comm`, at most 15 bytes), or `None`.
pub fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_string())
}

/// The arguments of process `pid` (`/proc/<pid>/cmdline`, split at NUL bytes), or `None`.
/// A process may rewrite its own (PostgreSQL's backends put their title there).
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// How many threads process `pid` has (the entries of `/proc/<pid>/task`), or `None`.
pub fn thread_count(pid: i32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count())
}

/// The identity of the file at `path` (following links), or `None` if it cannot be read.
pub fn file_id(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The network namespace process `pid` is in, or `None` if it is gone.
pub fn net_namespace(pid: i32) -> Option<FileId> {
    file_id(Path::new(&format!("/proc/{pid}/ns/net")))
}

/// The program process `pid` runs (the identity of `/proc/<pid>/exe`), or `None` if it is gone
/// or not readable.
pub fn exe(pid: i32) -> Option<FileId> {
    file_id(Path::new(&format!("/proc/{pid}/exe")))
}

/// Whether process `pid` has a descriptor open on the file identified by `id` (for a
/// namespace: it could enter it with `setns` at any moment).
pub fn holds_open(pid: i32, id: FileId) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries.flatten().any(|e| file_id(&e.path()) == Some(id))
}

/// Clock ticks per second of the times in `/proc` (the auxiliary vector's `AT_CLKTCK`; 100,
/// Linux's value everywhere that matters, if it cannot be read).
pub fn clock_ticks() -> u64 {
    const AT_CLKTCK: u64 = 17;
    let Ok(bytes) = std::fs::read("/proc/self/auxv") else {
        return 100;
    };
    let word = |b: &[u8]| b.try_into().ok().map(u64::from_ne_bytes);
    for pair in bytes.chunks_exact(16) {
        if let (Some(k), Some(v)) = (word(&pair[..8]), word(&pair[8..])) {
            if k == AT_CLKTCK && v > 0 {
                return v;
            }
        }
    }
    100
}

/// The busy clock ticks of the whole machine, every CPU together, from `/proc/stat`: user,
/// nice, system, irq, softirq and steal (guest time is inside user); 0 if unreadable.
pub fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    [0, 1, 2, 5, 6, 7].iter().filter_map(|i| v.get(*i)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_and_parentheses_in_the_name_parses() {
        let text = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 \
                    11 22 33 44 20 0 1 0 12345 1000 100";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                state: 'S',
                parent: 17,
                cpu_ticks: 11 + 22 + 33 + 44,
            })
        );
    }

    #[test]
    fn a_zombie_has_ended_and_a_cut_line_does_not_parse() {
        let zombie = parse_stat("7 (x) Z 1 7 7 0 -1 0 0 0 0 0 1 2 3 4").expect("parses");
        assert!(zombie.has_ended());
        assert_eq!(parse_stat("7 (x) S 1 7"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn this_process_reads_as_alive_in_its_own_namespace() {
        let me = i32::try_from(std::process::id()).expect("a pid fits i32");
        assert!(is_alive(me));
        assert_eq!(
            stat(me).map(|s| s.parent),
            Some(i32::try_from(std::os::unix::process::parent_id()).expect("fits"))
        );
        assert_eq!(net_namespace(me), file_id(Path::new("/proc/self/ns/net")));
        assert!(pids().contains(&me));
        assert!(clock_ticks() > 0);
    }
}
