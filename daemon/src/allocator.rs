//! glibc allocator tunables for the long-running commands (`run`, `demo`).
//!
//! glibc raises its mmap threshold each time a large buffer allocated with mmap is freed, so
//! from the second scrape on, the megabytes of a /metrics exposition (or a large JSON answer)
//! come from the heap and stay resident after they are freed; and it gives each thread its own
//! arena. With 10,000 sirens that held 22 MiB of a 56 MiB daemon (BENCHMARKS.md). Both are
//! tunables read from the environment when the process starts, and setting them from inside
//! would need `mallopt` (unsafe FFI, which this crate forbids), so the daemon sets
//! `GLIBC_TUNABLES` and executes itself again, once, before it starts any thread. An operator
//! who sets `GLIBC_TUNABLES` (or `SIREND_KEEP_ALLOCATOR=1`) keeps their own.

/// The tunables: one arena, and large buffers always mapped (so returned when freed).
pub const TUNABLES: &str = "glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=131072";

/// Set in the re-executed process's environment.
pub const MARKER: &str = "SIREND_ALLOCATOR_TUNED";

/// Why the process was not re-executed with the tunables.
#[derive(Debug)]
pub enum Kept {
    /// This is the re-executed process: the tunables are in force.
    Tuned,
    /// Not glibc on Linux: nothing to tune.
    NotGlibc,
    /// The operator's own `GLIBC_TUNABLES`, or `SIREND_KEEP_ALLOCATOR`.
    OperatorChoice,
    /// Re-executing failed; the daemon runs with the defaults.
    ExecFailed(std::io::Error),
}

/// Re-executes the current program with [`TUNABLES`] unless they are set; returns only if it
/// did not (the reason says why).
pub fn tune() -> Kept {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return Kept::NotGlibc;
    }
    // glibc rewrites GLIBC_TUNABLES once it has read it, so the re-executed process is told
    // apart by a marker of its own.
    if std::env::var_os(MARKER).is_some() {
        return Kept::Tuned;
    }
    if std::env::var_os("GLIBC_TUNABLES").is_some() || std::env::var_os("SIREND_KEEP_ALLOCATOR").is_some() {
        return Kept::OperatorChoice;
    }
    reexec()
}

#[cfg(unix)]
fn reexec() -> Kept {
    use std::os::unix::process::CommandExt as _;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return Kept::ExecFailed(e),
    };
    let mut argv = std::env::args_os();
    let name = argv.next().unwrap_or_else(|| exe.clone().into_os_string());
    // `exec` only returns on failure.
    Kept::ExecFailed(
        std::process::Command::new(&exe).arg0(name).args(argv).env("GLIBC_TUNABLES", TUNABLES).env(MARKER, "1").exec(),
    )
}

#[cfg(not(unix))]
fn reexec() -> Kept {
    Kept::NotGlibc
}
