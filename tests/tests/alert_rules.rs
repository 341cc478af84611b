//! The Prometheus alert rules under dashboards/: promtool accepts them and their unit tests pass
//! (tests/tests/dashboards.rs evaluates them in a real Prometheus scraping the daemon).
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::path::PathBuf;
use std::process::Command;

use sirennet_e2e::tools;

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let Some(promtool) = tools::find("promtool") else { return };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards/prometheus");
    for args in [
        &["check", "rules", "rules/sirennet.rules.yml"][..],
        &["test", "rules", "rules/sirennet.rules.test.yml"][..],
        &["check", "config", "prometheus.yml"][..],
    ] {
        let out = Command::new(&promtool).args(args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
