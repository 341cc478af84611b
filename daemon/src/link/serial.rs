//! One serial port: opens it, passes received bytes to the engine, writes what the engine
//! sends, and reopens it with back-off when it fails (device unplugged, permission).

use std::path::PathBuf;

use siren_proto::master::LinkId;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_serial::SerialPortBuilderExt as _;

use super::Backoff;
use crate::engine::{Input, Output};

/// Runs the port until the engine goes away.
pub async fn run(
    link: LinkId,
    port: PathBuf,
    baud: u32,
    inputs: mpsc::Sender<Input>,
    mut outputs: mpsc::Receiver<Output>,
) {
    let mut backoff = Backoff::new();
    let mut reported_down = false;
    loop {
        let opened = tokio_serial::new(port.to_string_lossy(), baud).open_native_async();
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => {
                if !reported_down {
                    tracing::warn!(link = ?link, port = %port.display(), error = %e, "cannot open serial port");
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
        tracing::info!(link = ?link, port = %port.display(), baud, "serial port open");
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
        tracing::warn!(link = ?link, port = %port.display(), error = %failure, "serial port failed");
        // The engine knows the link is down from here on; reopening failures stay quiet.
        reported_down = true;
        if inputs.send(Input::LinkDown(link)).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff.delay()).await;
    }
}
