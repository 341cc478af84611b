//! Takeover time (BENCHMARKS.md, "Two control rooms"): two sirend processes on one
//! PostgreSQL database with six simulated sirens (MQTT and TCP serial); the leader is killed
//! with SIGKILL again and again, and each time the time until the other daemon leads is
//! measured; the killed one is started again and stands by.
//!
//! `cargo build --release -p sirennet-e2e --bins && target/release/takeover [KILLS]` with
//! `SIRENNET_POSTGRES_URL` naming a server (default 20 kills; the lease is
//! `sirennet_e2e::rooms::LEASE_S`).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use sirennet_e2e::rooms;
use sirennet_e2e::wait::wait_for;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let kills: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(20);
    let node = std::env::current_exe()?.with_file_name("sirend_node");
    anyhow::ensure!(node.exists(), "{} is missing: build every binary (--bins)", node.display());
    let (mut s, _) = rooms::setup(&node, 36_000, 10, false).context("set SIRENNET_POSTGRES_URL")?;
    s.a_leads_b_stands_by().await;
    let names = ["room-a", "room-b"];
    let mut leader = 0;
    let mut times = Vec::new();
    for i in 0..kills {
        let standby = 1 - leader;
        s.rooms[leader].kill();
        let killed = Instant::now();
        let room = &s.rooms[standby];
        wait_for("the standby leads", || room.leads()).await;
        let took = killed.elapsed();
        println!("kill {}: {} took over after {} ms", i + 1, names[standby], took.as_millis());
        times.push(took);
        s.rooms[leader].start();
        let back = &s.rooms[leader];
        wait_for("the killed daemon stands by", || back.leader().as_deref() == Some(names[standby])).await;
        // A few renewals in the new arrangement before the next death.
        tokio::time::sleep(Duration::from_secs(2)).await;
        leader = standby;
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "lease {} s, {kills} kills: takeover median {:.0} ms, best {:.0} ms, worst {:.0} ms",
        rooms::LEASE_S,
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    if let Some(d) = s.devices.take() {
        d.shutdown().await;
    }
    Ok(())
}
