//! The write ceiling of the store alone: N writers, each with its own connection pool and
//! sequencer as N instances would have, append messages to rooms of their own on one
//! PostgreSQL database as fast as they can. No HTTP, no bus: what is measured is the
//! sequencer (build, sign, authorise) and the positioned append. Every run checks each room's
//! log afterwards: every acknowledged message is there once, in the order it was sent.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ruma::{
    events::TimelineEventType, signatures::Ed25519KeyPair, OwnedRoomId, OwnedUserId, RoomVersionId,
};
use sandcat_backends::sql::{create_schema, SqlStore};
use sandcat_core::{
    intent::{EventIntent, RoomBatch},
    notifier::Notifier,
    ports::{BatchHandler, Direction, RoomStore, StreamPosition},
    sequencer::{Sequencer, SigningKey},
};
use serde_json::{json, Value};

#[derive(clap::Args, Clone)]
pub(crate) struct StoreArgs {
    /// PostgreSQL server (each N gets a fresh schema in it).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/sandcat_test"
    )]
    pub postgres: String,
    /// Comma-separated numbers of concurrent writers.
    #[arg(long, default_value = "1,2,4,8")]
    pub writers: String,
    /// Rooms per writer, each appended to by a task of its own (a sequencer lane).
    #[arg(long, default_value_t = 4)]
    pub rooms: usize,
    /// Seconds each N runs.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Connections in each writer's pool.
    #[arg(long, default_value_t = 8)]
    pub connections: u32,
    /// A label for the run, e.g. the commit measured.
    #[arg(long, default_value = "")]
    pub label: String,
    /// JSON file to write.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn sequencer(store: Arc<SqlStore>) -> Result<Arc<Sequencer>> {
    let der = Ed25519KeyPair::generate();
    let key = Ed25519KeyPair::from_der(&der, "bench".into()).context("reading the key")?;
    let signing = Arc::new(SigningKey {
        server_name: "bench.local".try_into()?,
        key,
    });
    Ok(Arc::new(Sequencer::new(
        store,
        signing,
        Notifier::default(),
    )))
}

fn create_batch(room: &OwnedRoomId, user: &OwnedUserId) -> RoomBatch {
    let ev = |kind: TimelineEventType, key: Option<&str>, content| {
        EventIntent::new(user.clone(), kind, key.map(str::to_owned), content)
    };
    RoomBatch {
        room_id: room.clone(),
        create_version: Some(RoomVersionId::V11),
        remote: Vec::new(),
        join: None,
        backfill: Vec::new(),
        outside: None,
        events: vec![
            ev(
                TimelineEventType::RoomCreate,
                Some(""),
                json!({ "room_version": "11" }),
            ),
            ev(
                TimelineEventType::RoomMember,
                Some(user.as_str()),
                json!({ "membership": "join" }),
            ),
            ev(
                TimelineEventType::RoomPowerLevels,
                Some(""),
                json!({ "users": { user.as_str(): 100 } }),
            ),
        ],
    }
}

/// One room's writer: sends numbered messages until told to stop; returns how many were
/// acknowledged.
async fn write_room(
    seq: Arc<Sequencer>,
    room: OwnedRoomId,
    user: OwnedUserId,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> Result<u64> {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let batch = RoomBatch {
            room_id: room.clone(),
            create_version: None,
            remote: Vec::new(),
            join: None,
            backfill: Vec::new(),
            outside: None,
            events: vec![EventIntent::new(
                user.clone(),
                "m.room.message".into(),
                None,
                json!({ "msgtype": "m.text", "body": "ceiling", "n": n }),
            )],
        };
        seq.handle(batch)
            .await
            .with_context(|| format!("appending to {room}"))?;
        n += 1;
        acked.fetch_add(1, Ordering::Relaxed);
    }
    Ok(n)
}

/// Reads a room's log back: its messages must be `0, 1, …, sent - 1`, in stream order.
async fn check_room(store: &SqlStore, room: &OwnedRoomId, sent: u64) -> Result<()> {
    let events = store
        .timeline(room, 0, i64::MAX, Direction::Forward, 1_000_000)
        .await?;
    let numbers: Vec<u64> = events
        .iter()
        .filter(|e| e.pdu.kind.to_string() == "m.room.message")
        .filter_map(|e| e.pdu.content_value().get("n").and_then(Value::as_u64))
        .collect();
    let expected: Vec<u64> = (0..sent).collect();
    if numbers != expected {
        bail!(
            "{room}: {} messages read back, {sent} acknowledged, or out of order",
            numbers.len()
        );
    }
    if !events.windows(2).all(|w| w[0].pos < w[1].pos) {
        bail!("{room}: positions do not increase");
    }
    Ok(())
}

/// CPU seconds (user + system) used so far by this process, and by every PostgreSQL process
/// of this machine (with the children it has reaped: closed connections), from /proc.
fn cpu_seconds() -> (f64, f64) {
    let ticks = |stat: &str, with_children: bool| -> Option<u64> {
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let own = get(11)? + get(12)?;
        Some(if with_children {
            own + get(13)? + get(14)?
        } else {
            own
        })
    };
    let hz = 100.0; // USER_HZ on Linux
    let me = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks(&s, false))
        .unwrap_or(0);
    let mut pg = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == "postgres" {
            if let Ok(stat) = std::fs::read_to_string(dir.join("stat")) {
                pg += ticks(&stat, true).unwrap_or(0);
            }
        }
    }
    (me as f64 / hz, pg as f64 / hz)
}

async fn run_n(args: &StoreArgs, n: usize) -> Result<Value> {
    let schema = format!("ceiling_{}_{n}", sandcat_core::now_ms());
    let url = create_schema(&args.postgres, &schema).await?;
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(Arc::new(SqlStore::postgres(&url, args.connections).await?));
    }
    let mut rooms = Vec::new();
    for (w, store) in stores.iter().enumerate() {
        let seq = sequencer(store.clone())?;
        for r in 0..args.rooms {
            let user: OwnedUserId = format!("@w{w}:bench.local").try_into()?;
            let room: OwnedRoomId = format!("!w{w}r{r}:bench.local").try_into()?;
            seq.handle(create_batch(&room, &user)).await?;
            rooms.push((w, seq.clone(), room, user));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let tasks: Vec<_> = rooms
        .iter()
        .map(|(_, seq, room, user)| {
            tokio::spawn(write_room(
                seq.clone(),
                room.clone(),
                user.clone(),
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds();
    let total: u64 = sent.iter().sum();
    let per_1000 = |s: f64| (s / total.max(1) as f64 * 1000.0 * 1000.0).round() / 1000.0;
    let writers_cpu = per_1000(cpu_after.0 - cpu_before.0);
    let postgres_cpu = per_1000(cpu_after.1 - cpu_before.1);
    for ((w, _, room, _), count) in rooms.iter().zip(&sent) {
        check_room(&stores[*w], room, *count).await?;
    }
    for s in &stores {
        s.refresh().await?;
    }
    let head = stores.iter().map(|s| s.current_pos()).max().unwrap_or(0);
    let per_s = total as f64 / elapsed;
    eprintln!("{n} writer(s): {total} events in {elapsed:.1} s = {per_s:.0} events/s, checked; CPU s per 1,000 events: writers {writers_cpu}, PostgreSQL {postgres_cpu}");
    Ok(json!({
        "writers": n,
        "rooms": rooms.len(),
        "events": total,
        "seconds": elapsed,
        "events_per_s": per_s,
        "cpu_s_per_1000_events": { "writers": writers_cpu, "postgresql": postgres_cpu },
        "head": head,
    }))
}

pub(crate) async fn run(args: StoreArgs) -> Result<()> {
    let mut runs = Vec::new();
    for n in args.writers.split(',') {
        let n: usize = n.trim().parse().context("--writers takes numbers")?;
        runs.push(run_n(&args, n).await?);
    }
    let out = json!({ "label": args.label, "rooms_per_writer": args.rooms, "runs": runs });
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&out)?)?;
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
