//! MQTT brokers for tests: the embedded rumqttd (always available) and Mosquitto (when the
//! machine has it; CI installs it and sets `SIRENNET_REQUIRE_MOSQUITTO=1` so that its absence
//! fails instead of skipping).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A broker the tests can connect to.
#[derive(Debug)]
pub struct TestBroker {
    pub addr: SocketAddr,
    kind: &'static str,
    binary: Option<String>,
    /// Mosquitto's process, stopped on drop. The embedded broker has no stop: it lives as long
    /// as the test process.
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
}

impl TestBroker {
    /// `mqtt://host:port` for this broker.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// `"embedded"` or `"mosquitto"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Starts the daemon's embedded broker (rumqttd) on a free port.
    ///
    /// Another test may take the free port between our probe and the broker's bind (tests run in
    /// parallel): `start` then refuses the port, and a new one is tried.
    pub fn embedded() -> anyhow::Result<Self> {
        let mut attempt = 0;
        loop {
            let addr = free_port()?;
            match sirend::link::broker::start(addr, 20_000, None) {
                Ok(()) => return Ok(Self { addr, kind: "embedded", binary: None, child: None, dir: None }),
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    eprintln!("embedded broker on {addr}: {e:#}; trying another port");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts a private Mosquitto on a free port, if Mosquitto is installed.
    pub fn mosquitto() -> anyhow::Result<Option<Self>> {
        Self::mosquitto_with("")
    }

    /// A Mosquitto broker with `extra` lines appended to its configuration.
    pub fn mosquitto_with(extra: &str) -> anyhow::Result<Option<Self>> {
        let Some(binary) = find_mosquitto() else {
            anyhow::ensure!(
                std::env::var_os("SIRENNET_REQUIRE_MOSQUITTO").is_none(),
                "SIRENNET_REQUIRE_MOSQUITTO is set but no mosquitto binary was found"
            );
            return Ok(None);
        };
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("mosquitto.conf");
        let mut attempt = 0;
        loop {
            let addr = free_port()?;
            std::fs::write(
                &conf,
                format!(
                    "listener {} 127.0.0.1\n{}persistence false\nmax_keepalive 600\nset_tcp_nodelay true\n{extra}",
                    addr.port(),
                    if extra.contains("allow_anonymous") { "" } else { "allow_anonymous true\n" }
                ),
            )?;
            let mut child = spawn_mosquitto(&binary, &conf)?;
            match wait_listening(addr, &mut child) {
                Ok(()) => {
                    return Ok(Some(Self {
                        addr,
                        kind: "mosquitto",
                        binary: Some(binary),
                        child: Some(child),
                        dir: Some(dir),
                    }));
                }
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    let _ = child.kill();
                    let _ = child.wait();
                    eprintln!("mosquitto on {addr}: {e:#}; trying another port");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Kills a Mosquitto broker (as a crash would: no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.child = None;
    }

    /// Stops a Mosquitto broker as an operator would (SIGTERM): it publishes the wills of
    /// its clients as it goes.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// Freezes a Mosquitto broker (SIGSTOP): its connections stay open, nothing moves, as with
    /// a hung broker.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused broker (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = std::process::Command::new("kill").arg(signal).arg(child.id().to_string()).status();
        }
    }

    /// Starts a stopped or killed Mosquitto again on the same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let (Some(binary), Some(dir)) = (&self.binary, &self.dir) else {
            anyhow::bail!("only a Mosquitto broker can be restarted")
        };
        let mut child = spawn_mosquitto(binary, &dir.path().join("mosquitto.conf"))?;
        let listening = wait_listening(self.addr, &mut child);
        self.child = Some(child);
        listening
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_mosquitto(binary: &str, conf: &std::path::Path) -> anyhow::Result<Child> {
    Command::new(binary)
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {binary}"))
}

fn find_mosquitto() -> Option<String> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/local/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_owned)
}

/// A port that was free a moment ago: the broker binds it itself.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Waits until `child` listens on `addr`. A Mosquitto that cannot bind exits, and whatever else
/// holds the port must not pass for it, so the process is checked alive after the connect.
fn wait_listening(addr: SocketAddr, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("mosquitto exited ({status}) instead of listening on {addr}");
        }
        if TcpStream::connect(addr).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("mosquitto exited ({status}); {addr} belongs to another process");
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("broker at {addr} did not start listening")
}
