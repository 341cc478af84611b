//! `sirend.toml` with its fleet and key files: what an operator gets wrong is named precisely.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use siren_sim::generate::{self, Options};
use sirend::config::{ConfigError, Loaded};

/// A generated fleet with its configuration, in a fresh directory.
fn fleet(dir: &Path) -> PathBuf {
    let g = generate::generate(&Options { sirens: 80, seed: 4, ..Options::default() }).unwrap();
    generate::write(&g, dir).unwrap().config
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_generated_configuration_loads_and_is_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let config = fleet(dir.path());
    let loaded = Loaded::load(&config).unwrap();
    assert_eq!(loaded.own_sirens().count(), 80);
    let summary = loaded.summary();
    assert!(summary.contains("80 sirens"), "{summary}");
    assert!(summary.contains("hangzhou ") && summary.contains("hangzhou/c "), "{summary}");
    assert!(summary.contains("serial bus-c-1 (") && summary.contains("mqtt"), "{summary}");
}

#[test]
fn the_key_file_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let config = fleet(dir.path());
    std::fs::set_permissions(dir.path().join("keys.csv"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Loaded::load(&config).unwrap_err();
    assert!(matches!(err, ConfigError::KeysExposed { mode: 0o644, .. }), "{err}");
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn errors_name_the_file_and_the_field() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("sirend.toml", "baud = 9600", "baud = 12", "field `serial[0].baud`: 12 is not a plausible baud rate"),
        ("sirend.toml", "embedded = true", "embedded = maybe", "sirend.toml: TOML parse error"),
        ("sirend.toml", "[http]", "[http]\nport = 80", "unknown field `port`"),
        ("sirend.toml", "topic_root = \"sirennet/v1\"", "topic_root = \"a/#\"", "field `mqtt.topic_root`"),
        (
            "sirend.toml",
            "topic_root = \"sirennet/v1\"",
            "topic_root = \"sirennet/v1\"\nzones = [\"mars\"]",
            "field `mqtt.zones[0]`: no siren of the fleet is in zone `mars`",
        ),
        ("sirend.toml", "bus = \"bus-c-1\"", "bus = \"bus-x-9\"", "no siren of the fleet hangs on bus `bus-x-9`"),
        ("fleet.csv", ",hangzhou/", ",hangzhou//", "fleet.csv:2: field `zone`"),
    ];
    for (file, from, to, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = fleet(dir.path());
        edit(&dir.path().join(file), from, to);
        let err = Loaded::load(&config).unwrap_err().to_string();
        assert!(err.contains(expected), "editing {file} `{from}` -> `{to}`: got `{err}`");
        assert!(err.contains(file), "the error names {file}: `{err}`");
    }
}

#[test]
fn a_bus_without_a_port_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = fleet(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    // Drop the last [[serial]] section.
    let cut = text.rfind("[[serial]]").unwrap();
    std::fs::write(&config, &text[..cut]).unwrap();
    let err = Loaded::load(&config).unwrap_err().to_string();
    assert!(err.contains("but no [[serial]] section names its port"), "{err}");
}

#[test]
fn zones_limit_a_daemon_to_its_share_of_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let config = fleet(dir.path());
    edit(
        &config,
        "topic_root = \"sirennet/v1\"",
        "topic_root = \"sirennet/v1\"\nzones = [\"hangzhou/c\", \"hangzhou/n\"]",
    );
    let loaded = Loaded::load(&config).unwrap();
    let own: Vec<_> = loaded.own_sirens().collect();
    assert!(!own.is_empty() && own.len() < 80);
    assert!(own.iter().all(|s| s.zone.is_within("hangzhou/c") || s.zone.is_within("hangzhou/n")));
}

#[test]
fn check_config_command_reports_and_exits_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let config = fleet(dir.path());
    let ok = Command::new(env!("CARGO_BIN_EXE_sirend")).arg("check-config").arg(&config).output().unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("80 sirens"));
    edit(&config, "baud = 9600", "baud = 12");
    let bad = Command::new(env!("CARGO_BIN_EXE_sirend")).arg("check-config").arg(&config).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("serial[0].baud"));
}
