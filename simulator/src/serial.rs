//! A multi-drop serial bus on a real pseudo-terminal, or on a TCP port as a serial device
//! server offers a line to a control room.
//!
//! The daemon opens the PTY's slave side as if it were an RS-485 adapter, or connects to the
//! TCP port. A device server passes what any connected client writes onto the line and what
//! the line carries to every client, as real ones do when several connections are allowed:
//! two masters connected at once would collide on the line, as in the field. Every device on the
//! bus sees every byte and answers only frames for its own address. The line is paced: bytes
//! the daemon writes "arrive" at 10 bits per byte at the configured baud rate (8N1), a device
//! starts answering after its turnaround, and its answer takes its own wire time, so the daemon
//! sees the timing of a real 9600 baud line even though a PTY is instantaneous.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::clock::SimClock;
use crate::fleet::{Shared, lock};

/// How often devices' physics advance while the line is quiet.
const TICK: Duration = Duration::from_millis(50);

/// Settings of one bus.
#[derive(Debug, Clone)]
pub struct BusConfig {
    pub name: String,
    pub baud: u32,
    /// A symbolic link to create to the PTY, so configurations can name a stable path.
    pub link: Option<PathBuf>,
    /// Serve the line on this TCP address instead of a PTY (port 0: any free one).
    pub tcp: Option<SocketAddr>,
    /// Seed for line-noise corruption.
    pub seed: u64,
}

/// A running bus; dropping it stops the bus and removes the link.
#[derive(Debug)]
pub struct SerialBus {
    /// The PTY, or `tcp://host:port`.
    path: PathBuf,
    tcp: Option<SocketAddr>,
    link: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SerialBus {
    /// Creates the PTY (or the TCP listener) and starts serving `devices` on it.
    pub fn start(config: &BusConfig, devices: Vec<Shared>, clock: SimClock) -> io::Result<Self> {
        if let Some(addr) = config.tcp {
            let listener = TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            let addr = listener.local_addr()?;
            let port = Port::Tcp { listener, clients: Vec::new() };
            let stop = Arc::new(AtomicBool::new(false));
            let state = Line::new(port, devices, clock, config.baud, config.seed);
            let thread = std::thread::Builder::new().name(format!("bus-{}", config.name)).spawn({
                let stop = Arc::clone(&stop);
                move || state.run(&stop)
            })?;
            let path = PathBuf::from(format!("tcp://{addr}"));
            return Ok(Self { path, tcp: Some(addr), link: None, stop, thread: Some(thread) });
        }
        let pty = nix::pty::openpty(None, None).map_err(io::Error::from)?;
        // Raw mode on the line: no echo, no CR/LF translation, no signals; bytes pass as they are.
        let mut termios = tcgetattr(pty.slave.as_fd()).map_err(io::Error::from)?;
        cfmakeraw(&mut termios);
        tcsetattr(pty.slave.as_fd(), SetArg::TCSANOW, &termios).map_err(io::Error::from)?;
        let path = nix::unistd::ttyname(pty.slave.as_fd()).map_err(io::Error::from)?;
        let link = match &config.link {
            Some(link) => {
                if let Some(dir) = link.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let _ = std::fs::remove_file(link);
                std::os::unix::fs::symlink(&path, link)?;
                Some(link.clone())
            }
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let port = Port::Pty { master: File::from(pty.master), _slave: pty.slave };
        let state = Line::new(port, devices, clock, config.baud, config.seed);
        let thread = std::thread::Builder::new().name(format!("bus-{}", config.name)).spawn({
            let stop = Arc::clone(&stop);
            move || state.run(&stop)
        })?;
        Ok(Self { path, tcp: None, link, stop, thread: Some(thread) })
    }

    /// The TCP address the line is served on, if it is.
    pub fn tcp(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The PTY device the daemon opens (`tcp://host:port` for a line on TCP).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stable link to it, if one was asked for.
    pub fn link(&self) -> Option<&Path> {
        self.link.as_deref()
    }
}

impl Drop for SerialBus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// Where the line's bytes come from and go.
enum Port {
    Pty {
        master: File,
        /// Held open so the master side never sees a hang-up while the daemon reopens the port.
        _slave: OwnedFd,
    },
    Tcp {
        listener: TcpListener,
        clients: Vec<TcpStream>,
    },
}

impl Port {
    /// Waits up to `ms` for bytes and reads them (none when nothing came).
    fn read(&mut self, ms: u16, buf: &mut [u8]) -> Vec<u8> {
        match self {
            Self::Pty { master, .. } => {
                let readable = {
                    let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
                    match poll(&mut fds, PollTimeout::from(ms)) {
                        Ok(n) if n > 0 => fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)),
                        _ => false,
                    }
                };
                if !readable {
                    return Vec::new();
                }
                match master.read(buf) {
                    Ok(0) | Err(_) => {
                        std::thread::sleep(TICK);
                        Vec::new()
                    }
                    Ok(n) => buf[..n].to_vec(),
                }
            }
            Self::Tcp { listener, clients } => {
                let ready: Vec<bool> = {
                    let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
                    fds.extend(clients.iter().map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN)));
                    let _ = poll(&mut fds, PollTimeout::from(ms));
                    fds.iter()
                        .map(|f| f.revents().is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP)))
                        .collect()
                };
                let mut bytes = Vec::new();
                let mut gone = Vec::new();
                for (i, c) in clients.iter_mut().enumerate() {
                    if ready[i + 1] {
                        match c.read(buf) {
                            Ok(0) | Err(_) => gone.push(i),
                            Ok(n) => bytes.extend_from_slice(&buf[..n]),
                        }
                    }
                }
                for i in gone.into_iter().rev() {
                    clients.remove(i);
                }
                if ready[0] {
                    while let Ok((c, _)) = listener.accept() {
                        let _ = c.set_nodelay(true);
                        clients.push(c);
                    }
                }
                bytes
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        match self {
            // A closed or full PTY loses the answer, as a cut line would.
            Self::Pty { master, .. } => drop(master.write_all(bytes)),
            Self::Tcp { clients, .. } => {
                for c in clients {
                    let _ = c.write_all(bytes);
                }
            }
        }
    }
}

/// The bus's state on its thread.
struct Line {
    port: Port,
    devices: Vec<Shared>,
    clock: SimClock,
    byte_time: Duration,
    /// The line is occupied until then (requests arriving, answers leaving).
    busy_until: Instant,
    /// Answers waiting to be written, at the instant their last byte is on the wire.
    outgoing: VecDeque<(Instant, Vec<u8>)>,
    last_rx: Option<Instant>,
    rng: ChaCha8Rng,
}

impl Line {
    fn new(port: Port, devices: Vec<Shared>, clock: SimClock, baud: u32, seed: u64) -> Self {
        for d in &devices {
            lock(d).serial_byte_us = 10_000_000 / i64::from(baud.max(1));
        }
        Self {
            port,
            devices,
            clock,
            byte_time: Duration::from_nanos(10_000_000_000 / u64::from(baud.max(1))),
            busy_until: Instant::now(),
            outgoing: VecDeque::new(),
            last_rx: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Silence after which a partial frame is abandoned: 3.5 byte times, as Modbus RTU uses.
    fn idle_gap(&self) -> Duration {
        (self.byte_time * 7 / 2).max(Duration::from_millis(2))
    }

    fn run(mut self, stop: &AtomicBool) {
        let mut buf = [0u8; 1024];
        let mut next_tick = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut wake = next_tick.min(now + TICK);
            if let Some((at, _)) = self.outgoing.front() {
                wake = wake.min(*at);
            }
            if let Some(last) = self.last_rx {
                wake = wake.min(last + self.idle_gap());
            }
            let timeout = wake.saturating_duration_since(now);
            let ms = u16::try_from(timeout.as_millis().max(1)).unwrap_or(u16::MAX);
            let bytes = self.port.read(ms, &mut buf);
            if !bytes.is_empty() {
                self.on_bytes(&bytes);
            }
            let now = Instant::now();
            self.write_due(now);
            if self.last_rx.is_some_and(|last| now >= last + self.idle_gap()) {
                self.last_rx = None;
                let t = self.clock.at(now);
                for d in &self.devices {
                    let mut c = lock(d);
                    c.serial_idle(t);
                    drop(c);
                }
                self.collect_answers(now);
            }
            if now >= next_tick {
                let t = self.clock.at(now);
                for d in &self.devices {
                    lock(d).device.advance(t);
                }
                next_tick = now + TICK;
            }
        }
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        let now = Instant::now();
        // At line rate these bytes finish arriving this much later.
        let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.busy_until = self.busy_until.max(now) + self.byte_time * n;
        let arrived = self.busy_until;
        let t = self.clock.at(arrived);
        for d in &self.devices {
            let mut c = lock(d);
            let noisy = corrupt(&mut self.rng, bytes, c.link.noise_rate);
            c.handle_serial(t, &noisy);
        }
        self.last_rx = Some(now);
        self.collect_answers(arrived);
    }

    /// Schedules every device's answers: after its turnaround, one at a time on the line.
    fn collect_answers(&mut self, request_end: Instant) {
        for d in &self.devices {
            let mut c = lock(d);
            let delay = Duration::from_micros(u64::try_from(c.reply_delay_us()).unwrap_or(0));
            let noise = c.link.noise_rate;
            while let Some(frame) = c.poll_serial() {
                let start = self.busy_until.max(request_end + delay);
                let n = u32::try_from(frame.len()).unwrap_or(u32::MAX);
                self.busy_until = start + self.byte_time * n;
                let frame = corrupt(&mut self.rng, &frame, noise);
                self.outgoing.push_back((self.busy_until, frame));
            }
        }
    }

    fn write_due(&mut self, now: Instant) {
        while self.outgoing.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, bytes)) = self.outgoing.pop_front() {
                self.port.write(&bytes);
            }
        }
    }
}

/// Flips one random bit in each byte hit at `rate`.
fn corrupt(rng: &mut ChaCha8Rng, bytes: &[u8], rate: f64) -> Vec<u8> {
    if rate <= 0.0 {
        return bytes.to_vec();
    }
    bytes.iter().map(|&b| if rng.random_bool(rate.min(1.0)) { b ^ (1 << rng.random_range(0..8)) } else { b }).collect()
}
