//! `sirend demo` (like `run`) executes itself again with glibc's allocator tunables, once, and
//! leaves an operator's choice alone.
#![cfg(all(target_os = "linux", target_env = "gnu"))]
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sirend::allocator::MARKER;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts a five-siren demo with `env` and returns its environment once it is running as the
/// daemon (the same process id across the re-execution).
fn demo_environment(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sirend"));
    command
        .args(["demo", "--sirens", "5", "--listen", "127.0.0.1:0"])
        .arg("--broker")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--dir")
        .arg(dir.path())
        .env_remove("GLIBC_TUNABLES")
        .env_remove("SIREND_KEEP_ALLOCATOR")
        .env_remove(MARKER)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let child = Killed(command.spawn().unwrap());
    let pid = child.0.id();
    // The demo writes its fleet once it runs: by then any re-execution has happened.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.path().join("sirend.toml").exists() {
        assert!(Instant::now() < deadline, "the demo did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    String::from_utf8_lossy(&environ).replace('\0', "\n")
}

#[test]
fn the_daemon_runs_with_the_allocator_tunables() {
    let environ = demo_environment(&[]);
    // glibc rewrites the variable once read (it keeps what children may inherit); the marker
    // says the daemon is the re-executed process.
    assert!(environ.lines().any(|l| l.starts_with("GLIBC_TUNABLES=glibc.malloc.")), "{environ}");
    assert!(environ.lines().any(|l| l == format!("{MARKER}=1")), "{environ}");
}

#[test]
fn an_operators_allocator_settings_are_kept() {
    let environ = demo_environment(&[("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")]);
    assert!(environ.lines().any(|l| l == "GLIBC_TUNABLES=glibc.malloc.arena_max=2"), "{environ}");
    assert!(!environ.contains(MARKER), "{environ}");
    let environ = demo_environment(&[("SIREND_KEEP_ALLOCATOR", "1")]);
    assert!(!environ.contains("GLIBC_TUNABLES") && !environ.contains(MARKER), "{environ}");
}
