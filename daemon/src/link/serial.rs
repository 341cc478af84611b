//! One serial line: a local port, or a serial device server's TCP socket. Opens it, passes
//! received bytes to the engine, writes what the engine sends (while the command gate is
//! open), and reopens it with back-off when it fails (device unplugged, permission, device
//! server unreachable).

use std::time::Duration;

use siren_proto::master::LinkId;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_serial::SerialPortBuilderExt as _;

use super::Backoff;
use crate::config::SerialEndpoint;
use crate::engine::{Input, Output};
use crate::leadership::CommandGate;

/// How long connecting to a device server may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(3);

/// A byte stream to a line.
trait Line: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Line for T {}

/// Opens the line.
async fn open(endpoint: &SerialEndpoint, baud: u32) -> Result<Box<dyn Line>, String> {
    match endpoint {
        SerialEndpoint::Device(port) => tokio_serial::new(port.to_string_lossy(), baud)
            .open_native_async()
            .map(|s| Box::new(s) as Box<dyn Line>)
            .map_err(|e| e.to_string()),
        SerialEndpoint::Tcp(addr) => {
            let stream = tokio::time::timeout(CONNECT_WITHIN, tokio::net::TcpStream::connect(addr.as_str()))
                .await
                .map_err(|_| format!("no connection within {} s", CONNECT_WITHIN.as_secs()))?
                .map_err(|e| e.to_string())?;
            // A frame goes out as soon as it is written: the bus's timing is the protocol's.
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream))
        }
    }
}

impl std::fmt::Display for SerialEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device(p) => write!(f, "{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// Runs the line until the engine goes away.
pub async fn run(
    link: LinkId,
    port: SerialEndpoint,
    baud: u32,
    gate: CommandGate,
    inputs: mpsc::Sender<Input>,
    mut outputs: mpsc::Receiver<Output>,
) {
    let mut backoff = Backoff::new();
    let mut reported_down = false;
    loop {
        let opened = open(&port, baud).await;
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => {
                if !reported_down {
                    tracing::warn!(link = ?link, port = %port, error = %e, "cannot open serial line");
                    reported_down = true;
                    if inputs.send(Input::LinkDown(link)).await.is_err() {
                        return;
                    }
                }
                // Drop what the engine wanted to send meanwhile: its requests time out.
                while outputs.try_recv().is_ok() {}
                tokio::time::sleep(backoff.delay()).await;
                continue;
            }
        };
        tracing::info!(link = ?link, port = %port, baud, "serial line open");
        backoff.reset();
        if inputs.send(Input::LinkUp(link)).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; 1024];
        let failure = loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) => break "end of stream".to_owned(),
                    Ok(n) => {
                        let input = Input::Serial {
                            link,
                            bytes: buf[..n].to_vec(),
                            at: jiff::Timestamp::now(),
                            read: std::time::Instant::now(),
                        };
                        if inputs.send(input).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => break e.to_string(),
                },
                out = outputs.recv() => match out {
                    // Never a frame while the gate is shut: another daemon may lead.
                    Some(Output::Serial(_)) if !gate.is_open() => {}
                    Some(Output::Serial(bytes)) => {
                        if let Err(e) = stream.write_all(&bytes).await {
                            break e.to_string();
                        }
                    }
                    Some(Output::Mqtt { .. }) => {}
                    None => return,
                },
            }
        };
        tracing::warn!(link = ?link, port = %port, error = %failure, "serial line failed");
        // The engine knows the link is down from here on; reopening failures stay quiet.
        reported_down = true;
        if inputs.send(Input::LinkDown(link)).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff.delay()).await;
    }
}
