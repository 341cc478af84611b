//! The files under dashboards/ against the real tools: Grafana's provisioning and dashboards
//! hold together; Alertmanager accepts its configuration, routes each zone to its crew and
//! inhibits a link's sirens while the link is down; and a real Prometheus scraping `sirend
//! demo` answers every dashboard query with data and evaluates every alert rule.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use siren_sim::generate::{self, Options};
use sirend::demo::{self, DEMO_SCHEDULE, DemoOptions};
use sirennet_e2e::broker::free_port;
use sirennet_e2e::http::{self, post_form};
use sirennet_e2e::tools::{self, Running};
use sirennet_e2e::wait::wait_within;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// Every dashboard file, by name.
fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir().join("grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((name, value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 3, "coverage, fleet and soundings");
    out
}

/// The panels of a dashboard, those inside collapsed rows included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// Every Prometheus query a dashboard runs, with where it is: panel targets and query variables.
fn queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((format!("panel {:?} {}", p["title"], t["refId"]), t["expr"].as_str().unwrap().to_owned()));
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            out.push((format!("variable {}", v["name"]), v["definition"].as_str().unwrap().to_owned()));
        }
    }
    out
}

/// The query Prometheus runs for a Grafana one: variables filled in, and `label_values(m, l)`
/// (a variable query) as the series it reads.
fn as_promql(query: &str, zone: &str) -> String {
    if let Some(inner) = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')) {
        return inner.split(',').next().unwrap().trim().to_owned();
    }
    query.replace("$__rate_interval", "30s").replace("$__range", "10m").replace("$zone", zone)
}

/// The `$name` and `${name}` variables a text uses.
fn variables_used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let name: String =
            rest.trim_start_matches('{').chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() && !name.starts_with("__") && !name.starts_with("labels") && name != "value" {
            out.insert(name);
        }
    }
    out
}

/// The `siren_*` and `sirend_*` series names a query mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("siren_") || w.starts_with("sirend_"))
        .map(str::to_owned)
        .collect()
}

/// The `expr:` of every alert rule.
fn alert_exprs() -> Vec<String> {
    let rules = std::fs::read_to_string(dir().join("prometheus/rules/sirennet.rules.yml")).unwrap();
    rules.lines().filter_map(|l| l.trim_start().strip_prefix("expr:")).map(|e| e.trim().to_owned()).collect()
}

#[test]
fn grafana_provisioning_and_dashboards_hold_together() {
    let datasource = std::fs::read_to_string(dir().join("grafana/provisioning/datasources/sirennet.yml")).unwrap();
    let uid = datasource.lines().find_map(|l| l.trim().strip_prefix("uid:")).unwrap().trim().to_owned();
    let provider = std::fs::read_to_string(dir().join("grafana/provisioning/dashboards/sirennet.yml")).unwrap();
    assert!(provider.contains("type: file") && provider.contains("path:"), "{provider}");

    let mut uids = BTreeSet::new();
    for (name, d) in dashboards() {
        let text = d.to_string();
        assert!(!text.contains("${DS_") && d.get("__inputs").is_none(), "{name}: import placeholders");
        assert!(uids.insert(d["uid"].as_str().unwrap().to_owned()), "{name}: duplicate uid");
        let defined: BTreeSet<String> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect();
        assert!(defined.contains("zone"), "{name}: every dashboard has the zone variable");
        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            assert!(ids.insert(p["id"].as_u64().unwrap()), "{name}: duplicate panel id {}", p["id"]);
            assert!(p["gridPos"]["w"].as_u64().unwrap() > 0 && !p["title"].as_str().unwrap().is_empty());
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], uid.as_str(), "{name}: panel {} datasource", p["title"]);
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: panel {} has no query", p["title"]);
            for t in targets {
                assert_eq!(t["datasource"]["uid"], uid.as_str(), "{name}: {} target datasource", p["title"]);
            }
        }
        for v in d["templating"]["list"].as_array().unwrap().iter().filter(|v| v["type"] == "query") {
            assert_eq!(v["datasource"]["uid"], uid.as_str(), "{name}: variable {} datasource", v["name"]);
        }
        let undefined: Vec<String> = variables_used(&text).difference(&defined).cloned().collect();
        assert!(undefined.is_empty(), "{name} uses undefined variables {undefined:?}");
    }

    // The duty officer's map: sirens placed by siren_info's coordinates, coloured by state, over
    // the uncovered ground sirend serves as GeoJSON.
    let (_, coverage) = dashboards().into_iter().find(|(n, _)| n == "coverage.json").unwrap();
    let map = panels(&coverage).into_iter().find(|p| p["type"] == "geomap").unwrap();
    let layers = map["options"]["layers"].as_array().unwrap();
    let markers = layers.iter().find(|l| l["type"] == "markers").unwrap();
    assert_eq!(markers["location"]["latitude"], "latitude");
    assert_eq!(markers["location"]["longitude"], "longitude");
    assert_eq!(markers["config"]["style"]["color"]["field"], "state");
    let geojson = layers.iter().find(|l| l["type"] == "geojson").unwrap();
    assert_eq!(geojson["config"]["src"], "${sirend_url}/api/coverage.geojson");
    let expr = map["targets"][0]["expr"].as_str().unwrap();
    assert!(expr.contains("siren_info") && expr.contains("siren_state"), "{expr}");
}

fn amtool(args: &[&str]) -> Option<String> {
    let program = tools::find("amtool")?;
    let out = Command::new(program).args(args).current_dir(dir().join("alertmanager")).output().unwrap();
    assert!(
        out.status.success(),
        "amtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Who receives an alert with these labels.
fn receivers(labels: &[&str]) -> Option<String> {
    let mut args = vec!["config", "routes", "test", "--config.file=alertmanager.yml"];
    args.extend_from_slice(labels);
    amtool(&args)
}

#[test]
fn alertmanager_accepts_its_configuration_and_routes_each_zone_to_its_crew() {
    let Some(check) = amtool(&["check-config", "alertmanager.yml"]) else { return };
    assert!(check.contains("SUCCESS"), "{check}");
    for (labels, expected) in [
        (&["alertname=SirenDown", "zone=hangzhou/c/t3", "severity=critical"][..], "crew-north-pager"),
        (&["alertname=SirenBatteryLow", "zone=hangzhou/s/t2", "severity=warning"][..], "crew-south"),
        // Acknowledged: the crew knows; its queue, not its pager.
        (&["alertname=SirenDown", "zone=hangzhou/c/t3", "severity=warning", "acknowledged=yes"][..], "crew-north"),
        // In maintenance: the crew's queue, never a pager, whatever the severity says.
        (&["alertname=SirenDown", "zone=hangzhou/s/t3", "severity=info", "maintenance=yes"][..], "crew-south"),
        (&["alertname=SirenFaulty", "zone=hangzhou/c/t1", "severity=critical", "maintenance=yes"][..], "crew-north"),
        // A siren sounding that nobody ordered: the duty officer and the crew's pager.
        (
            &["alertname=SirenUncommandedActivation", "zone=hangzhou/s/t1", "severity=critical"][..],
            "duty-officer,crew-south-pager",
        ),
        (
            &["alertname=SirenSoundedUncommanded", "zone=hangzhou/c/t2", "severity=critical"][..],
            "duty-officer,crew-north-pager",
        ),
        (&["alertname=SirendNotScraped", "zone=all", "severity=critical"][..], "duty-officer"),
        // The MQTT broker serves the whole city: its link alert goes to the duty officer.
        (&["alertname=SirenLinkDown", "zone=hangzhou", "severity=critical"][..], "duty-officer"),
        // People unwarned because sirens failed: the duty officer and the zone's crew.
        (&["alertname=CoverageLost", "zone=hangzhou/e/t2", "severity=critical"][..], "duty-officer,crew-south-pager"),
        (&["alertname=CoverageLost", "zone=hangzhou/n/t1", "severity=warning"][..], "duty-officer,crew-north"),
        // A design short of its target is planning: never a crew, never a pager.
        (&["alertname=CoverageDesignBelowTarget", "zone=hangzhou/e/t2", "severity=info"][..], "planning"),
        // A zone name that merely starts like a district's is not that district's.
        (&["alertname=SirenDown", "zone=hangzhou/cx", "severity=critical"][..], "duty-officer"),
    ] {
        assert_eq!(receivers(labels).unwrap(), expected, "{labels:?}");
    }
    // Every zone of the demo fleet has a crew.
    let g = generate::generate(&Options { sirens: 120, seed: 12, serial_share: 0.25, ..Options::default() }).unwrap();
    let zones: BTreeSet<String> = g.fleet.sirens.iter().map(|s| s.zone.to_string()).collect();
    for zone in zones {
        let to = receivers(&["alertname=SirenDown", &format!("zone={zone}"), "severity=warning"]).unwrap();
        assert!(to.starts_with("crew-"), "{zone} goes to {to}");
    }
}

/// Starts Alertmanager on a free port with the repository's configuration.
async fn alertmanager(scratch: &Path) -> Option<(Running, SocketAddr)> {
    let program = tools::find_any(&["prometheus-alertmanager", "alertmanager"])?;
    let addr = free_port().unwrap();
    let args = [
        format!("--config.file={}", dir().join("alertmanager/alertmanager.yml").display()),
        format!("--storage.path={}", scratch.join("am").display()),
        format!("--web.listen-address={addr}"),
        "--cluster.listen-address=".to_owned(),
    ];
    Some((serve(&program, &args, &scratch.join("alertmanager.log"), addr).await, addr))
}

/// Starts a Prometheus-family server and waits until it reports itself ready on `addr`; its
/// log goes to `log`.
async fn serve(program: &str, args: &[String], log: &Path, addr: SocketAddr) -> Running {
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let running = Running(child);
    wait_within(&format!("{program} ready"), Duration::from_secs(30), || {
        http::send(addr, "GET", "/-/ready", None, "text/plain", "").is_ok_and(|r| r.status == 200)
    })
    .await;
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_inhibits_the_alerts_of_a_links_sirens_while_the_link_is_down() {
    let scratch = tempfile::tempdir().unwrap();
    let Some((_am, addr)) = alertmanager(scratch.path()).await else { return };
    let alert = |name: &str, labels: Value| {
        let mut l = labels;
        l["alertname"] = json!(name);
        json!({ "labels": l, "annotations": { "summary": name } })
    };
    let alerts = json!([
        alert("SirenLinkDown", json!({"link": "serial:bus-c-1", "zone": "hangzhou/c", "severity": "critical"})),
        alert(
            "SirenUnreachable",
            json!({"siren": "HZ-C-0001", "link": "serial:bus-c-1", "zone": "hangzhou/c/t1", "severity": "warning"})
        ),
        alert(
            "SirenBatteryLow",
            json!({"siren": "HZ-C-0001", "link": "serial:bus-c-1", "zone": "hangzhou/c/t1", "severity": "warning"})
        ),
        // Redundant: its MQTT link still reaches it.
        alert(
            "SirenUnreachable",
            json!({"siren": "HZ-C-0002", "link": "mqtt+serial:bus-c-1", "zone": "hangzhou/c/t1", "severity": "warning"})
        ),
        // On another bus.
        alert(
            "SirenUnreachable",
            json!({"siren": "HZ-E-0001", "link": "serial:bus-e-1", "zone": "hangzhou/e/t1", "severity": "warning"})
        ),
    ]);
    let r = http::request(addr, "POST", "/api/v2/alerts", None, &alerts.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let mut listed = Value::Null;
    wait_within("five alerts listed", Duration::from_secs(30), || {
        listed = http::get(addr, "/api/v2/alerts").json();
        listed.as_array().is_some_and(|a| a.len() == 5)
    })
    .await;
    let mut inhibited = BTreeSet::new();
    for a in listed.as_array().unwrap() {
        let by = a["status"]["inhibitedBy"].as_array().unwrap();
        if !by.is_empty() {
            assert_eq!(a["status"]["state"], "suppressed", "{a}");
            inhibited.insert(format!("{} {}", a["labels"]["alertname"].as_str().unwrap(), a["labels"]["siren"]));
        }
    }
    let expected: BTreeSet<String> =
        ["SirenUnreachable \"HZ-C-0001\"", "SirenBatteryLow \"HZ-C-0001\""].iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(inhibited, expected, "{listed:#}");
}

/// `sirend demo` (60 generated sirens, the scenario of faults or none) with a real
/// Prometheus scraping it.
struct DemoUnderPrometheus {
    sirend: SocketAddr,
    prom: SocketAddr,
    _prometheus: Running,
    stop: tokio::sync::oneshot::Sender<()>,
    demo: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl DemoUnderPrometheus {
    /// `None` where Prometheus is not installed (CI installs it and requires it).
    async fn start(scratch: &Path, faults: bool) -> Option<Self> {
        tools::find("prometheus")?;
        let mut options = DemoOptions::new(scratch.join("demo"));
        options.sirens = 60;
        options.faults = faults;
        options.listen = free_port().unwrap();
        options.broker = free_port().unwrap();
        let sirend = options.listen;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let demo = tokio::spawn(demo::run(options, async {
            let _ = stopped.await;
        }));
        let (prometheus, prom) = prometheus(scratch, sirend).await?;
        Some(Self { sirend, prom, _prometheus: prometheus, stop, demo })
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.demo.await.unwrap().unwrap();
    }
}

/// Starts Prometheus scraping `target` every second with the repository's alert rules.
async fn prometheus(scratch: &Path, target: SocketAddr) -> Option<(Running, SocketAddr)> {
    let program = tools::find("prometheus")?;
    let rules = dir().join("prometheus/rules/sirennet.rules.yml").canonicalize().unwrap();
    let config = scratch.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: sirend\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules.display()
        ),
    )
    .unwrap();
    let addr = free_port().unwrap();
    let args = [
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", scratch.join("tsdb").display()),
        format!("--web.listen-address={addr}"),
    ];
    Some((serve(&program, &args, &scratch.join("prometheus.log"), addr).await, addr))
}

/// The alerts the demo scenario's faults raise (pending or firing) concern the sirens it
/// touched and the zones they stand in, nothing else; a design gap raises none.
fn assert_alerts_concern_the_scenario(prom: SocketAddr, config: &Path) {
    let loaded = sirend::config::Loaded::load(config).unwrap();
    let touched: BTreeSet<String> = demo::scenario(&loaded.fleet)
        .events
        .iter()
        .filter_map(|e| match &e.target {
            siren_sim::scenario::Target::Siren(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let zone_of = |id: &str| loaded.fleet.sirens.iter().find(|s| s.id == id).map(|s| s.zone.to_string());
    let touched_zones: BTreeSet<String> = touched.iter().filter_map(|id| zone_of(id)).collect();
    let raised = alerts(prom);
    for (name, labels) in &raised {
        let concerns = match (labels["siren"].as_str(), labels["zone"].as_str()) {
            (Some(siren), _) => touched.contains(siren),
            (None, Some(zone)) if name == "CoverageLost" => {
                touched_zones.iter().any(|z| z == zone || z.starts_with(&format!("{zone}/")))
            }
            // The replayed frames of the scenario's attack.
            (None, _) => name == "SirenFramesRejectedRising",
        };
        assert!(concerns, "{name} {labels} concerns nothing the scenario did; touched: {touched:?}");
        assert_ne!(name, "CoverageDesignBelowTarget", "the demo fleet meets its targets by design");
    }
    let amplifier = demo::scenario(&loaded.fleet)
        .events
        .iter()
        .find(|e| matches!(e.fault, siren_sim::fault::Fault::AmplifierFailure { .. }))
        .and_then(|e| match &e.target {
            siren_sim::scenario::Target::Siren(id) => Some(id.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        raised.iter().any(|(n, l)| n == "SirenFaulty" && l["siren"] == amplifier.as_str()),
        "the failed amplifier raises SirenFaulty: {raised:?}"
    );
}

/// The alerts Prometheus holds now, pending or firing: (name, labels).
fn alerts(prometheus: SocketAddr) -> Vec<(String, Value)> {
    let data = query(prometheus, "ALERTS").unwrap();
    data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["metric"]["alertname"].as_str().unwrap_or_default().to_owned(), r["metric"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_a_healthy_demo_raises_no_alert() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(demo) = DemoUnderPrometheus::start(scratch.path(), false).await else { return };
    let prom = demo.prom;
    // Every siren heard and able, the way Prometheus sees it, for long enough that the rules
    // have been evaluated on it several times.
    wait_within("every siren ok in Prometheus", Duration::from_secs(120), || {
        query(
            prom,
            "sum(siren_zone_sirens{zone=\"hangzhou\",state=\"ok\"}) == sum(siren_zone_sirens{zone=\"hangzhou\"})",
        )
        .is_ok_and(|d| has_data(&d))
    })
    .await;
    let since = std::time::Instant::now();
    wait_within("ten more rule evaluations", Duration::from_secs(60), || since.elapsed() >= Duration::from_secs(10))
        .await;
    let raised = alerts(prom);
    assert!(raised.is_empty(), "a healthy demo raises alerts: {raised:#?}");
    // Its design meets every zone's target, and nothing is lost.
    let short = query(prom, "siren_design_coverage_below_target == 1 or siren_coverage_below_target == 1").unwrap();
    assert!(!has_data(&short), "{short}");
    let lost = query(prom, "siren_coverage_lost_population > 0").unwrap();
    assert!(!has_data(&lost), "{lost}");
    demo.stop().await;
}

/// Runs an instant query; returns Prometheus's `data` or its error.
fn query(prometheus: SocketAddr, promql: &str) -> Result<Value, String> {
    let r = post_form(prometheus, "/api/v1/query", &[("query", promql)]).map_err(|e| e.to_string())?;
    let v = r.json();
    if v["status"] == "success" { Ok(v["data"].clone()) } else { Err(format!("{}: {}", v["errorType"], v["error"])) }
}

fn has_data(data: &Value) -> bool {
    match data["resultType"].as_str() {
        Some("vector" | "matrix") => data["result"].as_array().is_some_and(|r| !r.is_empty()),
        Some("scalar" | "string") => true,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_the_demo_answers_every_dashboard_query_and_alert_rule() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(demo) = DemoUnderPrometheus::start(scratch.path(), true).await else { return };
    let (sirend, prom) = (demo.sirend, demo.prom);

    // The demo's first chime must have sounded and been verified (the soundings dashboard shows
    // results), with the scenario's first faults injected meanwhile.
    wait_within("the demo's first sounding verified", Duration::from_secs(150), || {
        http::send(sirend, "GET", "/api/soundings", None, "application/json", "").is_ok_and(|r| {
            r.json()
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c["schedule"] == DEMO_SCHEDULE && c["phase"] == "done"))
        })
    })
    .await;
    wait_within("prometheus scraped the sounding's results", Duration::from_secs(30), || {
        query(prom, "sirend_sounding_sirens").is_ok_and(|d| has_data(&d))
    })
    .await;

    let zone = "hangzhou";
    let mut failures = Vec::new();
    let mut used = BTreeSet::new();
    for (name, d) in dashboards() {
        for (place, q) in queries(&d) {
            used.extend(metric_names(&q));
            let promql = as_promql(&q, zone);
            match query(prom, &promql) {
                Ok(data) if has_data(&data) => {}
                Ok(_) => failures.push(format!("{name} {place}: no data for {promql}")),
                Err(e) => failures.push(format!("{name} {place}: {e} in {promql}")),
            }
        }
    }
    for expr in alert_exprs() {
        used.extend(metric_names(&expr));
        if let Err(e) = query(prom, &expr) {
            failures.push(format!("alert expression {expr}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Prometheus loaded the rules and evaluates them without error.
    let rules = http::get(prom, "/api/v1/rules").json();
    let groups = rules["data"]["groups"].as_array().unwrap();
    let evaluated: Vec<&Value> = groups.iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert_eq!(evaluated.len(), alert_exprs().len(), "every rule loaded");
    for r in evaluated {
        assert_ne!(r["health"], "err", "{r}");
    }

    // Every series the dashboards and rules read is one sirend exports. Some appear only
    // once what they report happens: the last missed occurrence after a miss
    // (tests/tests/soundings.rs sees it), a command-path fault while a siren has one, the
    // last activation nobody ordered (tests/tests/daemon_mqtt.rs sees both), CAP feed polls
    // where feeds are configured (tests/tests/soundings.rs sees them).
    let on_event_only = [
        "sirend_sounding_last_missed_timestamp_seconds",
        "siren_command_path_failing",
        "siren_last_uncommanded_activation_timestamp_seconds",
        "sirend_cap_feed_polls_total",
    ];
    let exposition = http::get(sirend, "/metrics").body;
    let exported: BTreeSet<&str> =
        exposition.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
    let missing: Vec<&String> =
        used.iter().filter(|m| !exported.contains(m.as_str()) && !on_event_only.contains(&m.as_str())).collect();
    assert!(missing.is_empty(), "dashboards or rules read series sirend does not export: {missing:?}");

    // The map's uncovered-ground layer.
    let layer = http::get(sirend, "/api/coverage.geojson");
    assert_eq!(layer.status, 200);
    assert_eq!(layer.json()["type"], "FeatureCollection");

    assert_alerts_concern_the_scenario(prom, &scratch.path().join("demo/sirend.toml"));

    demo.stop().await;
}
