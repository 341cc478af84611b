//! A real headless Chromium (Debian's `chromium`, never a downloaded one), driven over the
//! `DevTools` protocol with chromiumoxide: the console's tests, its screenshots and its page
//! benchmark use it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::page::ScreenshotParams;
use futures_util::StreamExt as _;

/// A running Chromium; closed when dropped.
pub struct Chromium {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts Chromium, or `None` where it is not installed (a failure where
    /// `SIRENNET_REQUIRE_CHROMIUM` is set, as in CI).
    pub async fn launch() -> anyhow::Result<Option<Self>> {
        let names = ["chromium", "chromium-browser", "google-chrome"];
        let Some(path) = crate::tools::find_required_by(&names, "SIRENNET_REQUIRE_CHROMIUM") else {
            return Ok(None);
        };
        // chromiumoxide wants the program's path, not a name to look up.
        let path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(&path))
            .find(|p| p.is_file())
            .with_context(|| format!("{path} is not on the PATH"))?;
        let profile = tempfile::tempdir()?;
        let config = BrowserConfig::builder()
            .chrome_executable(path)
            .no_sandbox()
            .user_data_dir(profile.path())
            .viewport(None)
            .window_size(1920, 1080)
            .launch_timeout(Duration::from_secs(60))
            .request_timeout(Duration::from_secs(60))
            .args([
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--font-render-hinting=none",
            ])
            .build()
            .map_err(anyhow::Error::msg)?;
        let (browser, mut events) = Browser::launch(config).await.context("starting Chromium")?;
        // The protocol's messages must be read for anything to happen; a message this version
        // of the client cannot parse is an error of that message only.
        let handler = tokio::spawn(async move { while events.next().await.is_some() {} });
        Ok(Some(Self { browser, handler, _profile: profile }))
    }

    /// A new tab of `width` × `height` CSS pixels (a phone when narrower than 600), showing
    /// `url`.
    pub async fn open(&self, url: &str, width: u32, height: u32) -> anyhow::Result<Tab> {
        let page = self.browser.new_page("about:blank").await?;
        let phone = width < 600;
        let metrics = SetDeviceMetricsOverrideParams::builder()
            .width(i64::from(width))
            .height(i64::from(height))
            .device_scale_factor(if phone { 2.0 } else { 1.0 })
            .mobile(phone)
            .build()
            .map_err(anyhow::Error::msg)?;
        page.execute(metrics).await?;
        page.goto(url).await?;
        Ok(Tab { page })
    }
}

impl std::fmt::Debug for Chromium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chromium").finish_non_exhaustive()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.handler.abort();
        // The child process is killed by chromiumoxide when its `Browser` drops.
    }
}

/// One tab.
pub struct Tab {
    page: chromiumoxide::Page,
}

impl std::fmt::Debug for Tab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tab").finish_non_exhaustive()
    }
}

impl Tab {
    /// The value of a JavaScript expression (promises are awaited).
    pub async fn eval<T: serde::de::DeserializeOwned>(&self, expression: &str) -> anyhow::Result<T> {
        let params = EvaluateParams::builder()
            .expression(expression)
            .await_promise(true)
            .return_by_value(true)
            .build()
            .map_err(anyhow::Error::msg)?;
        let result = self.page.evaluate_expression(params).await.with_context(|| format!("evaluating {expression}"))?;
        // `undefined` and `null` come back as no value at all.
        let value = result.value().cloned().unwrap_or(serde_json::Value::Null);
        serde_json::from_value(value).with_context(|| format!("the value of {expression}"))
    }

    /// Runs a JavaScript statement for what it does (promises are awaited).
    pub async fn run(&self, statement: &str) -> anyhow::Result<()> {
        let _: serde_json::Value = self.eval(&format!("(async () => {{ {statement}; return null; }})()")).await?;
        Ok(())
    }

    /// Waits until `expression` is true; gives up (an error) after `limit`, which only stops a
    /// hung test.
    pub async fn wait_for(&self, what: &str, expression: &str, limit: Duration) -> anyhow::Result<()> {
        let guard = Instant::now() + limit;
        loop {
            let done: bool = self.eval(&format!("Boolean({expression})")).await.unwrap_or(false);
            if done {
                return Ok(());
            }
            if Instant::now() > guard {
                let text: String = self.eval("document.body.innerText.slice(0, 3000)").await.unwrap_or_default();
                anyhow::bail!("gave up waiting for {what} ({expression}); the page reads:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element `selector` finds, as a person would (the mouse, at its centre).
    ///
    /// A page that redraws the element between finding it and clicking it detaches the node
    /// found; a person's click at that place would reach the new one, so it is found again.
    pub async fn click(&self, selector: &str) -> anyhow::Result<()> {
        let mut attempts = 0;
        loop {
            let element = self.page.find_element(selector).await.with_context(|| format!("no `{selector}`"))?;
            let clicked = match element.scroll_into_view().await {
                Ok(_) => element.click().await.map(drop),
                Err(e) => Err(e),
            };
            match clicked {
                Ok(()) => return Ok(()),
                Err(e) if attempts < 5 && e.to_string().contains("detached") => attempts += 1,
                Err(e) => return Err(e).with_context(|| format!("clicking `{selector}`")),
            }
        }
    }

    /// Types `text` into the field `selector` finds, key by key.
    pub async fn type_into(&self, selector: &str, text: &str) -> anyhow::Result<()> {
        let element = self.page.find_element(selector).await.with_context(|| format!("no `{selector}`"))?;
        element.click().await?;
        element.type_str(text).await?;
        Ok(())
    }

    /// Sets the value of a field a person picks from a widget (a date, a list), and tells the
    /// page it changed.
    pub async fn set_value(&self, selector: &str, value: &str) -> anyhow::Result<()> {
        let selector_js = serde_json::to_string(selector)?;
        let value_js = serde_json::to_string(value)?;
        let found: bool = self
            .eval(&format!(
                "(() => {{ const el = document.querySelector({selector_js}); if (!el) return false; \
                 el.value = {value_js}; el.dispatchEvent(new Event('input', {{bubbles: true}})); \
                 el.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()"
            ))
            .await?;
        anyhow::ensure!(found, "no `{selector}`");
        Ok(())
    }

    /// Goes to `hash` (`#/warning`) within the page, without reloading it.
    pub async fn go(&self, hash: &str) -> anyhow::Result<()> {
        let hash_js = serde_json::to_string(hash)?;
        self.run(&format!("location.hash = {hash_js}")).await
    }

    /// Brings the tab to the front, as a person switching to it does (Chromium slows the
    /// tabs behind it).
    pub async fn front(&self) -> anyhow::Result<()> {
        self.page.bring_to_front().await?;
        Ok(())
    }

    /// Samples the page's JavaScript while `during` runs: the functions it spent most time
    /// in (self time, ms), busiest first.
    pub async fn profile<F: std::future::Future<Output = anyhow::Result<()>>>(
        &self,
        during: F,
    ) -> anyhow::Result<Vec<(String, f64)>> {
        use chromiumoxide::cdp::js_protocol::profiler::{
            EnableParams, SetSamplingIntervalParams, StartParams, StopParams,
        };
        self.page.execute(EnableParams::default()).await?;
        self.page.execute(SetSamplingIntervalParams::new(200)).await?;
        self.page.execute(StartParams::default()).await?;
        during.await?;
        let profile = self.page.execute(StopParams::default()).await?.result.profile;
        let deltas: Vec<i64> = profile.time_deltas.clone().unwrap_or_default();
        let samples: Vec<i64> = profile.samples.clone().unwrap_or_default();
        let mut by_node = std::collections::HashMap::new();
        for (node, delta) in samples.iter().zip(deltas.iter().skip(1).chain(std::iter::once(&0))) {
            *by_node.entry(*node).or_insert(0i64) += *delta;
        }
        let mut by_function: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
        for node in &profile.nodes {
            let us = by_node.get(&node.id).copied().unwrap_or(0);
            let f = &node.call_frame;
            let name = format!(
                "{} {}:{}",
                if f.function_name.is_empty() { "(anonymous)" } else { &f.function_name },
                f.url.rsplit('/').next().unwrap_or(""),
                f.line_number + 1
            );
            #[allow(clippy::cast_precision_loss, reason = "a display value")]
            let ms = us as f64 / 1000.0;
            *by_function.entry(name).or_insert(0.0) += ms;
        }
        let mut top: Vec<(String, f64)> = by_function.into_iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(top)
    }

    /// Reloads the page.
    pub async fn reload(&self) -> anyhow::Result<()> {
        self.page.reload().await?;
        Ok(())
    }

    /// A PNG of the whole page.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let params = ScreenshotParams::builder().format(CaptureScreenshotFormat::Png).full_page(true).build();
        self.page.save_screenshot(params, path).await?;
        Ok(())
    }

    /// Closes the tab.
    pub async fn close(self) -> anyhow::Result<()> {
        self.page.close().await?;
        Ok(())
    }
}

/// Logs `tab` (showing the console at its origin) in with `token`, in `lang`, and waits until
/// the console has loaded the fleet.
pub async fn log_in(tab: &Tab, token: &str, lang: &str) -> anyhow::Result<()> {
    let token_js = serde_json::to_string(token)?;
    let lang_js = serde_json::to_string(lang)?;
    tab.run(&format!(
        "sessionStorage.setItem('sirend.token', {token_js}); localStorage.setItem('sirend.lang', {lang_js})"
    ))
    .await?;
    tab.reload().await?;
    tab.wait_for("the console loaded", "document.body.dataset.ready === 'true'", Duration::from_secs(60)).await
}
