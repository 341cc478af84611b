//! Screenshots of every view of the console, at 1920 and at 390 pixels wide, in Chinese and in
//! English, against the demo (its simulated fleet, with the faults of its scenario and its
//! first test chime judged):
//!
//! ```text
//! cargo run --release -p sirennet-e2e --bin console_screenshots -- [DIR]
//! ```
//!
//! writes `DIR/<view>-<lang>-<width>.png` (default `target/console-screenshots`). Needs
//! Debian's `chromium`; Chinese text needs a CJK font (`fonts-noto-cjk`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sirend::demo::{self, DemoOptions};
use sirennet_e2e::broker::free_port;
use sirennet_e2e::browser::{Chromium, log_in};
use sirennet_e2e::http;

const WIDTHS: [u32; 2] = [1920, 390];
const LANGS: [&str; 2] = ["zh-CN", "en"];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "target/console-screenshots".to_owned()));
    std::fs::create_dir_all(&out)?;
    let chromium = Chromium::launch().await?.context("Chromium is not installed (apt-get install chromium)")?;
    let scratch = tempfile::tempdir()?;
    let mut options = DemoOptions::new(scratch.path().to_owned());
    options.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    options.broker = free_port()?;
    options.first_sounding_in = Duration::from_secs(20);
    let running = demo::start(&options).await?;
    let addr = running.daemon.http;
    let [operator, _, _, admin] = running.tokens.clone();

    eprintln!("waiting for the demo's faults and its first chime to be judged…");
    let report = wait_for_report(addr).await?;
    let sirens = http::get(addr, "/api/sirens").json();
    let broken = sirens
        .as_array()
        .and_then(|all| all.iter().find(|s| s["state"] != "ok").or_else(|| all.first()))
        .and_then(|s| s["id"].as_str())
        .context("no siren")?
        .to_owned();

    let views: Vec<(&str, String)> = vec![
        ("login", String::new()),
        ("overview", "#/overview".to_owned()),
        ("siren", format!("#/siren/{broken}")),
        ("soundings", "#/soundings".to_owned()),
        ("report", format!("#/soundings/{report}")),
        ("events", "#/events".to_owned()),
        ("audit", "#/audit".to_owned()),
        ("warning", "#/warning".to_owned()),
    ];
    for (name, hash) in &views {
        if *name == "warning" {
            // A real warning waiting for its second person, as the duty officer would see it.
            let first_zone = sirens[0]["zone"].as_str().unwrap_or_default().split('/').take(2).collect::<Vec<_>>();
            let body = serde_json::json!({"zones": [first_zone.join("/")], "signal": "air-raid",
                "reason": "chemical plant fire: shelter in place"});
            let answer = http::request(addr, "POST", "/api/activations", Some(&operator), &body.to_string());
            anyhow::ensure!(answer.status == 201, "requesting the warning: {}", answer.body);
        }
        for lang in LANGS {
            for width in WIDTHS {
                let tab =
                    chromium.open(&format!("http://{addr}/"), width, if width < 600 { 844 } else { 1080 }).await?;
                if *name == "login" {
                    tab.run(&format!("localStorage.setItem('sirend.lang', '{lang}')")).await?;
                    tab.reload().await?;
                    tab.wait_for("the console", "document.body.dataset.ready === 'true'", Duration::from_secs(30))
                        .await?;
                    tab.go("#/login").await?;
                    tab.wait_for("the login", "document.querySelector('#token')", Duration::from_secs(30)).await?;
                } else {
                    log_in(&tab, &admin, lang).await?;
                    tab.go(hash).await?;
                    tab.wait_for(
                        "the view",
                        "document.querySelector('main section, main h1')",
                        Duration::from_secs(30),
                    )
                    .await?;
                    // What a view loads after it is drawn (history, a report, coverage).
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                let path = out.join(format!("{name}-{lang}-{width}.png"));
                tab.screenshot(&path).await?;
                eprintln!("{}", path.display());
                tab.close().await?;
            }
        }
    }
    running.stop().await;
    Ok(())
}

/// The id of the first test chime once it is judged.
async fn wait_for_report(addr: SocketAddr) -> anyhow::Result<u64> {
    let guard = Instant::now() + Duration::from_secs(180);
    loop {
        let list = http::get(addr, "/api/soundings").json();
        if let Some(id) =
            list.as_array().into_iter().flatten().find(|c| c["phase"] == "done").and_then(|c| c["id"].as_u64())
        {
            return Ok(id);
        }
        anyhow::ensure!(Instant::now() < guard, "the demo's chime was not judged within 3 minutes");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
