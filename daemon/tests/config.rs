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

/// Appends `text` to the configuration.
fn append(path: &Path, text: &str) {
    let mut all = std::fs::read_to_string(path).unwrap();
    all.push_str(text);
    std::fs::write(path, all).unwrap();
}

#[test]
fn mistakes_check_config_used_to_miss_are_named() {
    type Change = fn(&Path, &Path);
    let cases: &[(&str, Change, &str)] = &[
        (
            "coverage settings for a zone that does not exist",
            |_, c| append(c, "\n[coverage.zones.\"hangzhou/atlantis\"]\ntarget_ratio = 0.9\n"),
            "field `coverage.zones.\"hangzhou/atlantis\"`: no siren of the fleet is in this zone",
        ),
        (
            "a missing population file",
            |_, c| append(c, "\n[coverage]\npopulation = \"people.csv\"\n"),
            "field `coverage.population`",
        ),
        (
            "a missing include file",
            |_, c| append(c, "\n[soundings]\ninclude = [\"schedules.toml\"]\n"),
            "field `soundings.include[0]`",
        ),
        (
            "two buses on one port",
            |_, c| {
                let text = std::fs::read_to_string(c).unwrap();
                let ports: Vec<&str> = text.lines().filter(|l| l.starts_with("port = ")).collect();
                let replaced = text.replacen(ports[1], ports[0], 1);
                std::fs::write(c, replaced).unwrap();
            },
            "port`: ",
        ),
        (
            "the HTTP API and the embedded broker on one port",
            |_, c| edit(c, "listen = \"127.0.0.1:1884\"", "listen = \"127.0.0.1:9750\""),
            "field `mqtt.listen`: 127.0.0.1:9750 is also http.listen",
        ),
        (
            "a latitude with a sign typo",
            |d, _| {
                let path = d.join("fleet.csv");
                let text = std::fs::read_to_string(&path).unwrap();
                let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
                let column = lines[0].split(',').position(|h| h == "latitude").unwrap();
                let mut fields: Vec<String> = lines[1].split(',').map(str::to_owned).collect();
                fields[column] = format!("-{}", fields[column]);
                lines[1] = fields.join(",");
                std::fs::write(&path, lines.join("\n") + "\n").unwrap();
            },
            "km from the middle of the fleet",
        ),
        (
            "a rule that never occurs",
            |_, c| {
                append(
                    c,
                    "\n[[schedule]]\nname = \"feb30\"\nkind = \"chime\"\nstart = \"2027-01-01T10:00:00\"\n\
                     rrule = \"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30\"\nsequence = [{ pattern = \"chime\" }]\n",
                );
            },
            "field `schedule[0] (feb30)`: rule: it never occurs",
        ),
    ];
    for (what, change, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = fleet(dir.path());
        change(dir.path(), &config);
        let err = Loaded::load(&config).unwrap_err().to_string();
        assert!(err.contains(expected), "{what}: got `{err}`");
        // check-config says so on stderr, prints nothing that looks like success, exits 2.
        let out = Command::new(env!("CARGO_BIN_EXE_sirend"))
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{what}");
        assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "{what}: {}", String::from_utf8_lossy(&out.stdout));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{what}: one line, said once: {stderr}");
    }
}

#[test]
fn check_config_takes_config_and_survives_a_reader_that_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let config = fleet(dir.path());
    let ok =
        Command::new(env!("CARGO_BIN_EXE_sirend")).args(["check-config", "--config"]).arg(&config).output().unwrap();
    assert!(ok.status.success() && String::from_utf8_lossy(&ok.stdout).contains("80 sirens"));
    // `sirend check-config | true`: the reader is gone before the answer is written (the
    // configuration takes the command far longer to check than this takes to close).
    let mut child = Command::new(env!("CARGO_BIN_EXE_sirend"))
        .args(["check-config", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn a_token_limited_to_a_zone_that_does_not_exist_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = fleet(dir.path());
    let (_, entry) = sirend::auth::new_token("district", sirend::auth::Role::Operator);
    append(&config, &format!("\n{entry}zones = [\"hangzhou/atlantis\"]\n"));
    let err = Loaded::load(&config).unwrap_err().to_string();
    assert!(
        err.contains("field `http.tokens[0].zones[0]`: no siren of the fleet is in zone `hangzhou/atlantis`"),
        "{err}"
    );
}
