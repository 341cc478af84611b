//! The console, driven in a real headless Chromium against the daemon and simulated MQTT
//! sirens on the embedded broker: the overview shows the fleet and follows a fault without a
//! reload; an acknowledgement made on the page is audited under the user's name; a LIVE
//! warning is requested by one person and approved by another through the page (and not by
//! the requester), and stopped from the banner in one step; a finished test's report lists
//! its failures first; the Chinese console shows no English label.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use siren_sim::clock::SimClock;
use siren_sim::fault::Fault;
use siren_sim::fleet::{BuildOptions, SimFleet, lock};
use siren_sim::generate::{self, Options};
use siren_sim::mqtt::MqttConfig;
use sirend::auth::{Role, new_token};
use sirend::config::Loaded;
use sirend::daemon::Daemon;
use sirend::liveness::State;
use sirennet_e2e::browser::{Chromium, Tab, log_in};
use sirennet_e2e::http;
use sirennet_e2e::wait::wait_for;

/// What a page may take to show what the daemon knows: a guard against a hung test only.
const PAGE: Duration = Duration::from_secs(60);

struct Setup {
    loaded: Loaded,
    sim: Arc<SimFleet>,
    broker: String,
    operator: String,
    second: String,
    admin: String,
    /// A crew's token, for the first siren's district only.
    crew: String,
    district: String,
}

/// Six MQTT sirens on the embedded broker; an operator, a second officer and an
/// administrator; a `burst` LIVE signal; a chime `in_s` seconds from now.
fn setup(dir: &Path, in_s: i64) -> Setup {
    setup_with(dir, in_s, "")
}

/// As `setup`, with `extra` (TOML) appended to the configuration.
fn setup_with(dir: &Path, in_s: i64, extra: &str) -> Setup {
    let options = Options { sirens: 6, seed: 23, serial_share: 0.0, redundant_share: 0.0, ..Options::default() };
    let g = generate::generate(&options).unwrap();
    let (config, mut text, port) = sirennet_e2e::config::written(&g, dir).unwrap();
    let (operator, op_entry) = new_token("ops", Role::Operator);
    let (second, second_entry) = new_token("second-officer", Role::Operator);
    let (admin, admin_entry) = new_token("chief", Role::Admin);
    let district = g.fleet.sirens[0].zone.levels().take(2).collect::<Vec<_>>().join("/");
    let (crew, crew_entry) = new_token("crew-1", Role::Operator);
    let crew_entry = format!("{crew_entry}zones = [\"{district}\"]\n");
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(in_s);
    let start = start.to_zoned(jiff::tz::TimeZone::UTC).datetime().strftime("%Y-%m-%dT%H:%M:%S").to_string();
    write!(
        text,
        "\n{op_entry}\n{second_entry}\n{admin_entry}\n{crew_entry}\n[liveness]\nheartbeat_s = 2\n\n[soundings]\n\
         timezone = \"Asia/Shanghai\"\nlead_s = 8\narm_cutoff_s = 2\nverify_grace_s = 8\n\n\
         [live]\n[[live.signals]]\nname = \"burst\"\nsequence = [{{ pattern = \"chime\" }}]\n\n\
         [[schedule]]\nname = \"console-chime\"\nkind = \"chime\"\nstart = \"{start}\"\n\
         timezone = \"UTC\"\nrrule = \"FREQ=DAILY\"\nsequence = [{{ pattern = \"chime\" }}]\n\n{extra}\n"
    )
    .unwrap();
    std::fs::write(&config, text).unwrap();
    let loaded = Loaded::load(&config).unwrap();
    let sim = Arc::new(SimFleet::build(g.fleet, &g.keys, SimClock::real_time(), &BuildOptions::default()).unwrap());
    Setup { loaded, sim, broker: format!("mqtt://{port}"), operator, second, admin, crew, district }
}

fn mqtt(url: &str) -> MqttConfig {
    let mut config = MqttConfig::from_url(url).unwrap();
    config.heartbeat = Duration::from_secs(2);
    config.check_every = Duration::from_millis(50);
    config
}

async fn every_siren_ok(daemon: &Daemon, ids: &[String]) {
    wait_for("every siren ok", || {
        ids.iter().all(|id| daemon.fleet.read().unwrap().get(id).unwrap().liveness.state == State::Ok)
    })
    .await;
}

/// The daemon and its simulated sirens, every siren ok; the sirens' ids.
async fn running(s: &Setup) -> (Daemon, siren_sim::mqtt::MqttDevices, Vec<String>) {
    let daemon = Daemon::start(&s.loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt(&s.broker));
    let ids: Vec<String> = s.loaded.fleet.sirens.iter().map(|x| x.id.clone()).collect();
    every_siren_ok(&daemon, &ids).await;
    (daemon, devices, ids)
}

fn get_json(addr: SocketAddr, path: &str, token: Option<&str>) -> serde_json::Value {
    let r = http::request(addr, "GET", path, token, "");
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

/// A tab showing the console, logged in.
async fn console(chromium: &Chromium, daemon: &Daemon, token: &str, lang: &str, width: u32) -> Tab {
    let tab = chromium.open(&format!("http://{}/", daemon.http), width, 1000).await.unwrap();
    log_in(&tab, token, lang).await.unwrap();
    tab
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_follows_a_fault_without_reload_and_an_acknowledgement_is_audited_with_the_users_name() {
    let Some(chromium) = Chromium::launch().await.unwrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    // An office's own tile server under the map.
    let (tiles, tiles_asked) = tile_server().await;
    let basemap = format!(
        "[console]\nbasemap = \"http://{tiles}/{{z}}/{{x}}/{{y}}.png\"\nbasemap_attribution = \"tiles: test office\"\n"
    );
    let s = setup_with(dir.path(), 3600, &basemap);
    let (daemon, devices, ids) = running(&s).await;

    let tab = console(&chromium, &daemon, &s.operator, "en", 1920).await;
    wait_for("the map's tiles asked for", || !tiles_asked.lock().unwrap().is_empty()).await;
    let asked = tiles_asked.lock().unwrap().clone();
    // Each request is a tile: /{z}/{x}/{y}.png, numbers all.
    let tile = |p: &String| {
        let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
        let number = |x: &str| x.parse::<u32>().is_ok();
        parts.len() == 3 && number(parts[0]) && number(parts[1]) && parts[2].strip_suffix(".png").is_some_and(number)
    };
    assert!(asked.iter().all(tile), "{asked:?}");
    let attribution: String = tab.eval("document.querySelector('.attribution').textContent").await.unwrap();
    assert_eq!(attribution, "tiles: test office");
    tab.wait_for("six sirens, all ok", "document.querySelector('[data-state=ok]')?.textContent === '6'", PAGE)
        .await
        .unwrap();
    let total: String = tab.eval("document.querySelector('[data-state=total]').textContent").await.unwrap();
    assert_eq!(total, "6");
    let map_drawn: bool = tab.eval("document.querySelector('canvas.map').width > 0").await.unwrap();
    assert!(map_drawn, "the map is drawn");
    let user: String = tab.eval("document.querySelector('.who .user').textContent").await.unwrap();
    assert_eq!(user, "ops");

    // A fault in the field reaches the page through the stream: the page is never reloaded
    // (a mark set on it now is still there when the alarm shows).
    tab.run("window.sirendMark = 'same page'").await.unwrap();
    let broken = &ids[3];
    s.sim.inject(broken, &Fault::AmplifierFailure { channel: None }).unwrap();
    let row = format!("table.alarms tr[data-siren='{broken}']");
    tab.wait_for("the alarm on the overview", &format!("document.querySelector(\"{row}\")"), PAGE).await.unwrap();
    let mark: String = tab.eval("window.sirendMark").await.unwrap();
    assert_eq!(mark, "same page", "shown without a reload");
    let state: String = tab.eval(&format!("document.querySelector(\"{row} .badge\").className")).await.unwrap();
    assert!(state.contains("state-faulty") || state.contains("state-degraded"), "{state}");

    // Acknowledged from the page, with a note.
    tab.click(&format!("{row} a.button")).await.unwrap();
    tab.wait_for("the siren's page", "document.querySelector('#ack-note')", PAGE).await.unwrap();
    tab.type_into("#ack-note", "crew on the way, amplifier swap").await.unwrap();
    tab.click("form.action button[type=submit]").await.unwrap();
    tab.wait_for("the acknowledgement shown", "document.body.innerText.includes('crew on the way')", PAGE)
        .await
        .unwrap();
    let audit = get_json(daemon.http, "/api/audit", Some(&s.admin));
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"].as_str().is_some_and(|x| x.contains("acknowledge")) && a["target"] == broken.as_str())
        .unwrap_or_else(|| panic!("no audit entry: {audit:#}"));
    assert_eq!(entry["actor"], "ops", "{entry}");
    assert_eq!(entry["allowed"], true, "{entry}");
    assert!(entry["detail"].as_str().unwrap().contains("amplifier swap"), "{entry}");
    // Back on the overview, the alarm says who acknowledged it.
    tab.go("#/overview").await.unwrap();
    tab.wait_for(
        "acknowledged by ops",
        &format!("document.querySelector(\"{row} .acked\")?.textContent.includes('ops')"),
        PAGE,
    )
    .await
    .unwrap();

    tab.close().await.unwrap();

    // A crew's phone: its district only, on a page no wider than the screen.
    let phone = console(&chromium, &daemon, &s.crew, "zh-CN", 390).await;
    let mine = s.loaded.fleet.sirens.iter().filter(|x| x.zone.is_within(&s.district)).count();
    let shown: String = phone.eval("document.querySelector('[data-state=total]').textContent").await.unwrap();
    assert_eq!(shown, mine.to_string(), "the crew sees its district's {mine} sirens");
    let filter: String = phone.eval("document.getElementById('zone-filter').value").await.unwrap();
    assert_eq!(filter, s.district);
    let wide: bool = phone.eval("document.documentElement.scrollWidth <= window.innerWidth + 1").await.unwrap();
    assert!(wide, "nothing wider than the phone's screen");
    phone.close().await.unwrap();
    devices.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_warning_is_requested_and_approved_by_two_people_on_the_console_and_stopped_in_one_step() {
    let Some(chromium) = Chromium::launch().await.unwrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 3600);
    let (daemon, devices, ids) = running(&s).await;

    // The first officer requests a real warning on the page.
    let first = console(&chromium, &daemon, &s.operator, "en", 1920).await;
    first.go("#/warning").await.unwrap();
    first.wait_for("the request form", "document.querySelector('form.live-request')", PAGE).await.unwrap();
    first.set_value("#live-signal", "air-raid").await.unwrap();
    first.type_into("#live-reason", "chemical plant fire, shelter in place").await.unwrap();
    // Without the confirmation word typed back, nothing is requested.
    first.click("form.live-request button[type=submit]").await.unwrap();
    assert!(http::get(daemon.http, "/api/activations").json().as_array().unwrap().is_empty(), "nothing requested");
    first.type_into("#live-confirm", "LIVE").await.unwrap();
    first.click("form.live-request button[type=submit]").await.unwrap();
    first
        .wait_for("the request listed", "document.querySelector('[data-activation=\"1\"] .live-requested')", PAGE)
        .await
        .unwrap();
    let a = get_json(daemon.http, "/api/activations/1", None);
    assert_eq!((a["requested_by"].as_str(), a["state"].as_str()), (Some("ops"), Some("requested")), "{a}");
    assert_eq!(a["reason"], "chemical plant fire, shelter in place");
    // The requester is offered no approval, and the daemon refuses the same token's approval.
    let offered: bool =
        first.eval("Boolean(document.querySelector('[data-activation=\"1\"] button.approve'))").await.unwrap();
    assert!(!offered, "the requester is not offered the approval");
    let status: u16 = first
        .eval(
            "fetch('/api/activations/1/approve', {method: 'POST', headers: {'Authorization': \
             'Bearer ' + sessionStorage.getItem('sirend.token'), 'Content-Type': 'application/json'}, \
             body: '{}'}).then(r => r.status)",
        )
        .await
        .unwrap();
    assert_eq!(status, 403, "the same token is refused");
    let banner: bool = first.eval("!document.getElementById('live-banner').hidden").await.unwrap();
    assert!(banner, "the waiting request is on the banner");

    // The second officer approves it on another page, after reading what will sound.
    let second = console(&chromium, &daemon, &s.second, "en", 1920).await;
    second.go("#/warning").await.unwrap();
    second
        .wait_for("the approve button", "document.querySelector('[data-activation=\"1\"] button.approve')", PAGE)
        .await
        .unwrap();
    second.click("[data-activation=\"1\"] button.approve").await.unwrap();
    second.wait_for("the confirmation", "document.querySelector('dialog.ask-danger[open]')", PAGE).await.unwrap();
    let question: String = second.eval("document.querySelector('dialog.ask-danger').innerText").await.unwrap();
    assert!(question.contains("6 sirens") && question.contains("chemical plant fire"), "{question}");
    second.click("dialog.ask-danger button[type=submit]").await.unwrap();
    wait_for("the warning approved", || get_json(daemon.http, "/api/activations/1", None)["state"] == "approved").await;
    let a = get_json(daemon.http, "/api/activations/1", None);
    assert_eq!(a["by"], "second-officer", "{a}");
    let sounding = |id: &String| lock(s.sim.controller(id).unwrap()).device.sounding_campaign().is_some();
    wait_for("every siren sounding the warning", || ids.iter().all(sounding)).await;

    // The first officer stops it from the banner, in one step.
    first.front().await.unwrap();
    first.wait_for("the stop button", "document.querySelector('#live-banner button.stop-all')", PAGE).await.unwrap();
    first.click("#live-banner button.stop-all").await.unwrap();
    wait_for("every siren silent", || !ids.iter().any(sounding)).await;
    wait_for("the warning stopped", || get_json(daemon.http, "/api/activations/1", None)["stopped"].is_string()).await;
    for id in &ids {
        let truth = lock(s.sim.controller(id).unwrap()).device.soundings().to_vec();
        assert!(
            truth.iter().any(|t| t.live && t.started.is_some() && t.ended.is_some()),
            "{id} sounded LIVE: {truth:?}"
        );
    }
    first.wait_for("the banner gone", "document.getElementById('live-banner').hidden", PAGE).await.unwrap();
    let audit = get_json(daemon.http, "/api/audit", Some(&s.admin));
    let actions: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["allowed"] == true)
        .map(|e| (e["actor"].as_str().unwrap().to_owned(), e["action"].as_str().unwrap().to_owned()))
        .collect();
    for (actor, action) in [("ops", "request"), ("second-officer", "approve"), ("ops", "stop")] {
        assert!(actions.iter().any(|(a, x)| a == actor && x.contains(action)), "{actor} {action} in {actions:?}");
    }

    first.close().await.unwrap();
    second.close().await.unwrap();
    devices.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_tests_report_lists_its_failures_first_and_the_chinese_console_has_no_english_label() {
    let Some(chromium) = Chromium::launch().await.unwrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 16);
    let (daemon, devices, ids) = running(&s).await;
    // The last siren in report order fails the test: the report must still list it first.
    let mut sorted = ids.clone();
    sorted.sort();
    let broken = sorted.last().unwrap().clone();
    s.sim.inject(&broken, &Fault::AmplifierFailure { channel: None }).unwrap();
    let mut campaign = 0;
    wait_for("the chime judged", || {
        let list = get_json(daemon.http, "/api/soundings", None);
        list.as_array().unwrap().iter().any(|c| {
            campaign = c["id"].as_u64().unwrap();
            c["schedule"] == "console-chime" && c["phase"] == "done"
        })
    })
    .await;

    let tab = console(&chromium, &daemon, &s.admin, "en", 1920).await;
    tab.go(&format!("#/soundings/{campaign}")).await.unwrap();
    tab.wait_for("the report", "document.querySelector('table.report-sirens tbody tr')", PAGE).await.unwrap();
    let first_row: String = tab.eval("document.querySelector('table.report-sirens tbody tr').innerText").await.unwrap();
    assert!(first_row.contains(&broken), "the failure first: {first_row}");
    let failures: String = tab.eval("document.querySelector('.panel.failures').innerText").await.unwrap();
    assert!(failures.contains(&broken) && failures.contains("amplifier fault"), "{failures}");
    let order: Vec<String> =
        tab.eval("[...document.querySelectorAll('main h2')].map(h => h.textContent)").await.unwrap();
    assert!(order[0].starts_with("Failures"), "failures come before the rest: {order:?}");
    let times: String = tab.eval("document.querySelector('.report-facts .time-both').innerText").await.unwrap();
    assert!(times.contains("Asia/Shanghai") && times.contains("UTC"), "local time beside UTC: {times}");
    tab.close().await.unwrap();

    // The same views in Chinese: no word the console has in English shows untranslated.
    let zh = console(&chromium, &daemon, &s.admin, "zh-CN", 1920).await;
    let views = [
        "#/overview".to_owned(),
        format!("#/siren/{broken}"),
        "#/soundings".to_owned(),
        format!("#/soundings/{campaign}"),
        "#/warning".to_owned(),
        "#/events".to_owned(),
        "#/audit".to_owned(),
    ];
    for view in &views {
        zh.go(view).await.unwrap();
        zh.wait_for("the view drawn", "document.querySelector('main section, main h1')", PAGE).await.unwrap();
        // The parts loaded after the view (history, the report) have their moment.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let english: Vec<String> = zh.eval(UNTRANSLATED).await.unwrap();
        assert!(english.is_empty(), "{view} shows English in the Chinese console: {english:?}");
    }
    let unknown: Vec<String> = zh.eval("[...window.sirendUnknownNames]").await.unwrap();
    assert!(unknown.is_empty(), "names the daemon sent that the console has no word for: {unknown:?}");
    let missing: Vec<String> = zh.eval("[...window.sirendMissingWords]").await.unwrap();
    assert!(missing.is_empty(), "words asked for that zh-CN lacks: {missing:?}");
    let lacking: Vec<String> = zh
        .eval("import('/console/words.js').then(m => Object.keys(m.WORDS.en).filter(k => !(k in m.WORDS['zh-CN'])))")
        .await
        .unwrap();
    assert!(lacking.is_empty(), "zh-CN lacks {lacking:?}");
    let lang: String = zh.eval("document.documentElement.lang").await.unwrap();
    assert_eq!(lang, "zh-CN");

    zh.close().await.unwrap();
    devices.shutdown().await;
    daemon.stop().await;
}

/// Every piece of text on the page (and every label a screen reader reads) that is one of the
/// console's English words that Chinese says differently.
const UNTRANSLATED: &str = r"
import('/console/words.js').then(({ WORDS }) => {
  const zh = WORDS['zh-CN'];
  const english = new Set(Object.entries(WORDS.en)
    .filter(([k, v]) => zh[k] !== v && !v.includes('{'))
    .map(([, v]) => v.trim()));
  const found = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.textContent.trim();
    if (english.has(text)) found.add(text);
  }
  for (const el of document.querySelectorAll('[aria-label], [title], [placeholder]')) {
    for (const a of ['aria-label', 'title', 'placeholder']) {
      const v = (el.getAttribute(a) || '').trim();
      if (english.has(v)) found.add(v);
    }
  }
  return [...found];
})
";

/// A map tile server: every request is answered with the same 1×1 PNG, and its path kept.
async fn tile_server() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // A valid 1×1 grey PNG.
    const PNG: [u8; 67] = [
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3a, 0x7e, 0x9b, 0x55, 0x00, 0x00, 0x00,
        0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x68, 0x00, 0x00, 0x00, 0x82, 0x00, 0x81, 0x77, 0xcd, 0x72,
        0xb6, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = Arc::clone(&asked);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some(path) = text.split_whitespace().nth(1) {
                    kept.lock().unwrap().push(path.to_owned());
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    PNG.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&PNG).await;
            });
        }
    });
    (addr, asked)
}
