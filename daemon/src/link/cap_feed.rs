//! Polls one CAP feed ([`crate::cap::rules::Feed`]): its index, then each CAP document it
//! links to that was not read before; each alert goes to the engine like one posted to
//! `/api/cap`, its source the feed's name. A failing or slow feed is retried later, the wait
//! doubling up to its maximum; nothing it serves can stop the daemon or another feed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::cap::Alert;
use crate::cap::feeds::{cap_links, next_poll};
use crate::cap::rules::Feed;
use crate::engine::Input;
use crate::engine::cap::CapInput;
use crate::metrics::Metrics;

/// Runs until the engine goes away.
pub async fn run(feed: Feed, inputs: mpsc::Sender<Input>, metrics: Arc<Metrics>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(u64::from(feed.timeout_s)))
        .user_agent(concat!("sirend/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(feed = %feed.name, error = %e, "cannot make an HTTP client: the feed is not polled");
            return;
        }
    };
    let interval = Duration::from_secs(u64::from(feed.interval_s));
    let max = Duration::from_secs(u64::from(feed.max_backoff_s));
    // The documents already read, of those the index still lists.
    let mut read: HashSet<String> = HashSet::new();
    let mut failures = 0u32;
    loop {
        match poll(&client, &feed, &mut read, &inputs, &metrics).await {
            Ok(()) => {
                failures = 0;
                metrics.cap_feed_poll(&feed.name, true);
            }
            Err(Stop) => return,
            Err(Failed(why)) => {
                failures += 1;
                metrics.cap_feed_poll(&feed.name, false);
                tracing::warn!(feed = %feed.name, url = %feed.url, failures, error = %why, "CAP feed poll failed");
            }
        }
        tokio::time::sleep(next_poll(interval, max, failures)).await;
    }
}

use Outcome::{Failed, Stop};

enum Outcome {
    /// The engine is gone.
    Stop,
    Failed(String),
}

async fn poll(
    client: &reqwest::Client,
    feed: &Feed,
    read: &mut HashSet<String>,
    inputs: &mpsc::Sender<Input>,
    metrics: &Metrics,
) -> Result<(), Outcome> {
    let index = fetch(client, &feed.url).await?;
    let links = cap_links(&index, &feed.url).map_err(Failed)?;
    read.retain(|l| links.contains(l));
    for link in links {
        if read.contains(&link) {
            continue;
        }
        let text = fetch(client, &link).await?;
        read.insert(link.clone());
        let alert = match Alert::parse(&text) {
            Ok(a) => Box::new(a),
            Err(e) => {
                // Counted and logged; read again only if the feed drops and relists it.
                tracing::warn!(feed = %feed.name, url = %link, error = %e, "CAP document refused");
                metrics.cap_alert(&feed.name, "refused");
                continue;
            }
        };
        let (tx, rx) = oneshot::channel();
        let submit = CapInput::Submit { alert, source: feed.name.clone(), zones: feed.zones.clone(), reply: tx };
        if inputs.send(Input::Cap(submit)).await.is_err() {
            return Err(Stop);
        }
        match rx.await {
            Ok(Ok(r)) => tracing::info!(feed = %feed.name, url = %link, outcome = %r.outcome, "CAP alert from a feed"),
            Ok(Err(e)) => tracing::warn!(feed = %feed.name, url = %link, error = %e, "CAP alert from a feed refused"),
            Err(_) => return Err(Stop),
        }
    }
    Ok(())
}

/// The body of a successful GET, as text.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, Outcome> {
    let response = client.get(url).send().await.map_err(|e| Failed(format!("{url}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failed(format!("{url}: HTTP {status}")));
    }
    let bytes = response.bytes().await.map_err(|e| Failed(format!("{url}: {e}")))?;
    if bytes.len() > crate::cap::MAX_DOCUMENT {
        return Err(Failed(format!("{url}: larger than {} bytes", crate::cap::MAX_DOCUMENT)));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| Failed(format!("{url}: not UTF-8 text")))
}
