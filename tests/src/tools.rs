//! External programs the tests run (Prometheus, Alertmanager, their command-line tools): found
//! on the PATH, or skipped with a message where they are not installed. CI installs them and
//! sets `SIRENNET_REQUIRE_PROMETHEUS`, so that there a missing tool fails instead.

use std::process::{Child, Command};

/// The environment variable that makes a missing tool an error.
pub const REQUIRE: &str = "SIRENNET_REQUIRE_PROMETHEUS";

/// `Some(program)` when it runs here; `None` (after saying so) when it is not installed.
pub fn find(program: &str) -> Option<String> {
    find_any(&[program])
}

/// The first of `names` (one program under the names distributions give it) that runs here.
pub fn find_any(names: &[&str]) -> Option<String> {
    find_required_by(names, REQUIRE)
}

/// As [`find_any`], an error instead of a skip when the environment variable `require` is set.
pub fn find_required_by(names: &[&str], require: &str) -> Option<String> {
    for program in names {
        if Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Some((*program).to_owned());
        }
    }
    let names = names.join(" or ");
    assert!(std::env::var_os(require).is_none(), "{names} is required ({require} is set) but not installed");
    eprintln!("{names} is not installed here: skipped");
    None
}

/// A child process killed when dropped, so that a failing test leaves nothing running.
#[derive(Debug)]
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
