//! The workloads: send, fanout, initial-sync, login/register, join, versions, and (Sandcat
//! only) native — Matrix send to Sandcat WebSocket delivery; plus resource use read from /proc
//! for the server's process.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use futures::future::join_all;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::client::{http, login, register, Client};

#[derive(clap::Args, Clone)]
pub(crate) struct RunArgs {
    /// Name of the target in the report, e.g. "sandcat" or "synapse-postgres".
    #[arg(long)]
    pub name: String,
    /// Base URL of the homeserver. `send` also takes several, comma-separated: instances of
    /// one server sharing a pipeline; its clients are spread over them.
    #[arg(long)]
    pub url: String,
    /// Process id of the server, to read its memory and CPU use.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Comma-separated workloads: versions,send,fanout,initial-sync,login,register,join,native
    /// (native: Sandcat's own API, not in the default set).
    #[arg(
        long,
        default_value = "versions,send,fanout,initial-sync,login,register,join"
    )]
    pub workloads: String,
    /// Seconds each timed workload runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent clients of `send` (and of `versions`).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Rooms of `send`.
    #[arg(long, default_value_t = 16)]
    pub rooms: usize,
    /// Receivers of `fanout`.
    #[arg(long, default_value_t = 16)]
    pub receivers: usize,
    /// Messages of `fanout`.
    #[arg(long, default_value_t = 200)]
    pub fanout_messages: usize,
    /// Rooms of `initial-sync`.
    #[arg(long, default_value_t = 200)]
    pub sync_rooms: usize,
    /// Events per room of `initial-sync`.
    #[arg(long, default_value_t = 10)]
    pub sync_events: usize,
    /// Members of `join`.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Output file (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

/// Latency histogram in microseconds.
fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

fn summary(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| (v as f64 / 1000.0 * 100.0).round() / 100.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

/// `(rss_kb, cpu_seconds)` of a process.
pub(crate) fn proc_usage(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((rss, (utime + stime) / 100.0))
}

fn run_id() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    )
}

pub(crate) async fn run(args: RunArgs) -> Result<()> {
    let mut result = json!({ "target": args.name, "url": args.url, "workloads": {}, "failed": [] });
    if let Some(pid) = args.pid {
        if let Some((rss, cpu)) = proc_usage(pid) {
            result["rss_idle_kb"] = json!(rss);
            result["cpu_seconds_start"] = json!(cpu);
        }
    }
    let tag = run_id();
    for w in args
        .workloads
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        eprintln!("[{}] {w} ...", args.name);
        let outcome = match w {
            "versions" => versions(&args).await,
            "send" => send(&args, &tag).await,
            "fanout" => fanout(&args, &tag).await,
            "initial-sync" => initial_sync(&args, &tag).await,
            "login" => logins(&args, &tag).await,
            "register" => registers(&args, &tag).await,
            "join" => joins(&args, &tag).await,
            "native" => native(&args, &tag).await,
            other => Err(anyhow::anyhow!("unknown workload {other}")),
        };
        match outcome {
            Ok(v) => {
                eprintln!("[{}] {w}: {v}", args.name);
                if v.get("ok") == Some(&json!(false)) {
                    result["failed"]
                        .as_array_mut()
                        .expect("array")
                        .push(json!(w));
                }
                result["workloads"][w] = v;
            }
            Err(e) => {
                eprintln!("[{}] {w} FAILED: {e:#}", args.name);
                result["failed"]
                    .as_array_mut()
                    .expect("array")
                    .push(json!(w));
                result["workloads"][w] = json!({ "ok": false, "error": format!("{e:#}") });
            }
        }
        if w == "send" {
            if let Some((rss, _)) = args.pid.and_then(proc_usage) {
                result["rss_after_send_kb"] = json!(rss);
            }
        }
    }
    if let Some(pid) = args.pid {
        if let Some((rss, cpu)) = proc_usage(pid) {
            result["rss_end_kb"] = json!(rss);
            let start = result["cpu_seconds_start"].as_f64().unwrap_or(0.0);
            result["cpu_seconds"] = json!(((cpu - start) * 100.0).round() / 100.0);
        }
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let failed = result["failed"].as_array().map(|a| a.len()).unwrap_or(0);
    if failed > 0 {
        bail!("{failed} workload(s) failed: {}", result["failed"]);
    }
    Ok(())
}

/// GET /versions from many connections: the cheapest request, close to the HTTP limit.
async fn versions(args: &RunArgs) -> Result<Value> {
    let http = http();
    let url = format!("{}/_matrix/client/versions", args.url);
    timed_requests(args.seconds, args.clients, move |_, _| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http.get(&url).send().await?;
            anyhow::ensure!(r.status().is_success(), "status {}", r.status());
            r.bytes().await?;
            Ok(())
        }
    })
    .await
}

async fn users(http: &reqwest::Client, base: &str, prefix: &str, n: usize) -> Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let regs = chunk.iter().map(|i| {
            let name = format!("{prefix}{i}");
            async move { register(http, base, &name, "bench-password").await }
        });
        for r in join_all(regs).await {
            out.push(r?);
        }
    }
    Ok(out)
}

/// C clients send into R rooms for T seconds; every acknowledged event must be in its room.
async fn send(args: &RunArgs, tag: &str) -> Result<Value> {
    let http = http();
    let urls: Vec<&str> = args.url.split(',').map(str::trim).collect();
    let mut clients = users(&http, urls[0], &format!("s{tag}u"), args.clients).await?;
    for (i, c) in clients.iter_mut().enumerate() {
        c.base = urls[i % urls.len()].to_owned();
    }
    let owner = &clients[0];
    let mut rooms = Vec::new();
    for r in 0..args.rooms {
        rooms.push(
            owner
                .create_room(json!({ "preset": "public_chat", "name": format!("bench {r}") }))
                .await?,
        );
    }
    for (i, c) in clients.iter().enumerate() {
        let room = &rooms[i % rooms.len()];
        if i >= rooms.len() || c.user_id != owner.user_id {
            c.join(room).await?;
        }
    }
    let acked: Arc<Mutex<HashMap<String, usize>>> = Default::default();
    let senders: Arc<Vec<(Client, String)>> = Arc::new(
        clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), rooms[i % rooms.len()].clone()))
            .collect(),
    );
    let counted = acked.clone();
    let run_tag = tag.to_owned();
    let mut v = timed_requests(args.seconds, clients.len(), move |i, n| {
        let (senders, acked, tag) = (senders.clone(), counted.clone(), run_tag.clone());
        async move {
            let (c, room) = &senders[i];
            c.send(
                room,
                &format!("{tag}-{i}-{n}"),
                &format!("bench {tag} {i} {n}"),
            )
            .await?;
            *acked.lock().expect("lock").entry(room.clone()).or_default() += 1;
            Ok(())
        }
    })
    .await?;
    // Correctness: every acknowledged event is in its room, exactly once.
    let acked = acked.lock().expect("lock").clone();
    let mut missing = 0i64;
    for room in &rooms {
        let want = acked.get(room).copied().unwrap_or(0) as i64;
        let have = owner.count_messages(room, &format!("bench {tag} ")).await? as i64;
        missing += (want - have).abs();
    }
    v["unit"] = json!("events/s");
    v["missing_or_duplicated"] = json!(missing);
    v["ok"] = json!(v["errors"] == 0 && missing == 0);
    Ok(v)
}

const MESSAGES_ONLY: &str = r#"{"room":{"timeline":{"limit":50,"types":["m.room.message"]},"state":{"types":[]},"ephemeral":{"types":[]},"account_data":{"types":[]}},"presence":{"types":[]},"account_data":{"types":[]}}"#;

/// One sender, K receivers long-polling `/sync`: time from the sender's 200 to each receiver
/// seeing the event. Every receiver must see every event.
async fn fanout(args: &RunArgs, tag: &str) -> Result<Value> {
    let http = http();
    let sender = register(&http, &args.url, &format!("f{tag}s"), "bench-password").await?;
    let receivers = users(&http, &args.url, &format!("f{tag}r"), args.receivers).await?;
    let room = sender
        .create_room(json!({ "preset": "public_chat" }))
        .await?;
    for r in &receivers {
        r.join(&room).await?;
    }
    let acks: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for r in receivers {
        let (acks, done, room) = (acks.clone(), done.clone(), room.clone());
        let (first, _) = r.sync(None, 0, MESSAGES_ONLY).await?;
        let mut since = first["next_batch"]
            .as_str()
            .context("next_batch")?
            .to_owned();
        tasks.push(tokio::spawn(async move {
            let mut seen: HashMap<String, Instant> = HashMap::new();
            while !done.load(Ordering::Relaxed) {
                let Ok((body, _)) = r.sync(Some(&since), 5000, MESSAGES_ONLY).await else {
                    continue;
                };
                let now = Instant::now();
                if let Some(evs) = body["rooms"]["join"][&room]["timeline"]["events"].as_array() {
                    for e in evs {
                        if let Some(id) = e["event_id"].as_str() {
                            seen.entry(id.to_owned()).or_insert(now);
                        }
                    }
                }
                if let Some(n) = body["next_batch"].as_str() {
                    since = n.to_owned();
                }
            }
            let acks = acks.lock().expect("lock").clone();
            let mut h = hist();
            let mut missing = 0;
            for (id, acked) in &acks {
                match seen.get(id) {
                    Some(t) => {
                        h.record(t.saturating_duration_since(*acked).as_micros().max(1) as u64)
                            .ok();
                    }
                    None => missing += 1,
                }
            }
            (h, missing)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut errors = 0;
    for n in 0..args.fanout_messages {
        match sender
            .send(&room, &format!("{tag}-f{n}"), &format!("fanout {n}"))
            .await
        {
            Ok(id) => {
                acks.lock().expect("lock").insert(id, Instant::now());
            }
            Err(_) => errors += 1,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    // Let the last events arrive, then stop the receivers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    done.store(true, Ordering::Relaxed);
    // Wake the long-polls so they notice.
    let _ = sender.send(&room, &format!("{tag}-stop"), "stop").await;
    let mut h = hist();
    let mut missing = 0;
    for t in join_all(tasks).await {
        let (th, m) = t?;
        h.add(th).ok();
        missing += m;
    }
    let mut v = summary(&h);
    v["throughput"] = json!((args.fanout_messages as f64 / secs).round());
    v["unit"] = json!("msg/s sent");
    v["deliveries"] = json!(h.len());
    v["missing"] = json!(missing);
    v["errors"] = json!(errors);
    v["ok"] = json!(missing == 0 && errors == 0);
    Ok(v)
}

/// A user in N rooms with M events each: time and size of a full initial `/sync`.
async fn initial_sync(args: &RunArgs, tag: &str) -> Result<Value> {
    let http = http();
    let user = register(&http, &args.url, &format!("i{tag}"), "bench-password").await?;
    let mut rooms = Vec::new();
    for r in 0..args.sync_rooms {
        rooms.push(
            user.create_room(json!({ "name": format!("room {r}") }))
                .await?,
        );
    }
    let per_room = args.sync_events;
    for (chunk_no, chunk) in rooms.chunks(16).enumerate() {
        let sends = chunk.iter().enumerate().map(|(i, room)| {
            let (user, room, tag) = (user.clone(), room.clone(), tag.to_owned());
            let r = chunk_no * 16 + i;
            async move {
                for e in 0..per_room {
                    user.send(&room, &format!("{tag}-i{r}-{e}"), &format!("event {e}"))
                        .await?;
                }
                Ok::<_, anyhow::Error>(())
            }
        });
        for r in join_all(sends).await {
            r?;
        }
    }
    // The first sync and the repeated identical ones apart: a server may answer a repeat from
    // a response cache (Synapse does), which says nothing about computing one.
    let mut h = hist();
    let mut times = Vec::new();
    let mut size = 0;
    let mut rooms_seen = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let (body, bytes) = user
            .sync(None, 0, r#"{"room":{"timeline":{"limit":10}}}"#)
            .await?;
        let micros = t.elapsed().as_micros() as u64;
        h.record(micros).ok();
        times.push(micros as f64 / 1000.0);
        size = bytes;
        rooms_seen = body["rooms"]["join"]
            .as_object()
            .map(|m| m.len())
            .unwrap_or(0);
    }
    let mut v = summary(&h);
    let round = |ms: f64| (ms * 100.0).round() / 100.0;
    v["first_ms"] = json!(round(times[0]));
    v["repeated_ms"] = json!(round(
        times[1..].iter().sum::<f64>() / (times.len() - 1) as f64
    ));
    v["response_bytes"] = json!(size);
    v["rooms"] = json!(rooms_seen);
    v["ok"] = json!(rooms_seen == args.sync_rooms);
    Ok(v)
}

async fn timed_requests<F, Fut>(seconds: u64, concurrency: usize, f: F) -> Result<Value>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let stop = Instant::now() + Duration::from_secs(seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks = (0..concurrency).map(|w| {
        let (f, errors) = (f.clone(), errors.clone());
        tokio::spawn(async move {
            let mut h = hist();
            let mut n = 0;
            while Instant::now() < stop {
                let t = Instant::now();
                match f(w, n).await {
                    Ok(()) => {
                        h.record(t.elapsed().as_micros() as u64).ok();
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
            }
            h
        })
    });
    let mut h = hist();
    for r in join_all(tasks).await {
        h.add(r?).ok();
    }
    let secs = started.elapsed().as_secs_f64();
    let errors = errors.load(Ordering::Relaxed);
    let mut v = summary(&h);
    v["throughput"] = json!((h.len() as f64 / secs * 10.0).round() / 10.0);
    v["unit"] = json!("req/s");
    v["errors"] = json!(errors);
    v["ok"] = json!(errors == 0);
    Ok(v)
}

async fn logins(args: &RunArgs, tag: &str) -> Result<Value> {
    let http = http();
    let name = format!("l{tag}");
    register(&http, &args.url, &name, "bench-password").await?;
    let base = args.url.clone();
    timed_requests(args.seconds, 8, move |_, _| {
        let (http, base, name) = (http.clone(), base.clone(), name.clone());
        async move { login(&http, &base, &name, "bench-password").await }
    })
    .await
}

async fn registers(args: &RunArgs, tag: &str) -> Result<Value> {
    let http = http();
    let base = args.url.clone();
    let tag = tag.to_owned();
    timed_requests(args.seconds, 8, move |w, n| {
        let (http, base, tag) = (http.clone(), base.clone(), tag.clone());
        async move {
            register(&http, &base, &format!("r{tag}w{w}n{n}"), "bench-password")
                .await
                .map(|_| ())
        }
    })
    .await
}

/// Time for `members` users to join one room, then for one more to join.
async fn joins(args: &RunArgs, tag: &str) -> Result<Value> {
    let http = http();
    let owner = register(&http, &args.url, &format!("j{tag}o"), "bench-password").await?;
    let room = owner
        .create_room(json!({ "preset": "public_chat" }))
        .await?;
    let members = users(&http, &args.url, &format!("j{tag}m"), args.members).await?;
    let t = Instant::now();
    for chunk in members.chunks(16) {
        for r in join_all(chunk.iter().map(|m| m.join(&room))).await {
            r?;
        }
    }
    let fill = t.elapsed().as_secs_f64();
    let last = register(&http, &args.url, &format!("j{tag}last"), "bench-password").await?;
    let t = Instant::now();
    last.join(&room).await?;
    let one = t.elapsed().as_secs_f64() * 1000.0;
    let (s, b) = owner
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/joined_members",
            crate::client::enc(&room)
        ))
        .await?;
    let joined = if s == 200 {
        b["joined"].as_object().map(|m| m.len()).unwrap_or(0)
    } else {
        0
    };
    let ids: HashSet<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
    Ok(json!({
        "members": args.members,
        "fill_seconds": (fill * 100.0).round() / 100.0,
        "joins_per_second": ((args.members as f64 / fill) * 10.0).round() / 10.0,
        "next_join_ms": (one * 100.0).round() / 100.0,
        "joined": joined,
        "ok": joined == ids.len() + 2,
    }))
}

/// `fanout_messages` messages from a Matrix client into a friendship's DM room, one at a time;
/// the latency is from the `PUT /send` to the frame on the friend's Sandcat WebSocket.
async fn native(args: &RunArgs, tag: &str) -> Result<Value> {
    use base64::Engine;
    use futures::StreamExt;
    let http = http();
    let us = users(&http, &args.url, &format!("n{tag}u"), 2).await?;
    let (a, b) = (&us[0], &us[1]);
    let localpart = |c: &Client| {
        c.user_id[1..]
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let mut sessions = Vec::new();
    for c in [a, b] {
        let password = base64::engine::general_purpose::STANDARD_NO_PAD.encode("bench-password");
        let r = http
            .post(format!("{}/user/login", args.url))
            .json(&json!({ "account": localpart(c), "password": password }))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "native login: {}", r.status());
        sessions.push(r.json::<Value>().await?);
    }
    let token = |i: usize| sessions[i]["token"].as_str().unwrap_or_default().to_owned();
    let (ida, idb) = (localpart(a), localpart(b));
    let r = http
        .post(format!("{}/friend", args.url))
        .bearer_auth(token(0))
        .json(&json!({ "user_id": ida, "friend_id": idb, "source": "bench" }))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "friend request: {}", r.status());
    let apply: Value = http
        .get(format!("{}/friend/{idb}/apply", args.url))
        .bearer_auth(token(1))
        .send()
        .await?
        .json()
        .await?;
    let r = http
        .put(format!("{}/friend/agree", args.url))
        .bearer_auth(token(1))
        .json(&json!({ "fs_id": apply[0]["fs_id"] }))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "friend agree: {}", r.status());
    let (_, rooms) = b.get("/_matrix/client/v3/joined_rooms").await?;
    let dm = rooms["joined_rooms"][0]
        .as_str()
        .context("the friendship's room")?
        .to_owned();
    let ws_addr = sessions[0]["ws_addr"].as_str().unwrap_or_default();
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("{ws_addr}/{ida}/conn/{ida}/0/{}", token(0)))
            .await?;
    let (_, mut frames) = ws.split();
    let mut h = hist();
    for i in 0..args.fanout_messages {
        let start = Instant::now();
        b.send(&dm, &format!("n{tag}t{i}"), &format!("native {i}"))
            .await?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), frames.next())
                .await
                .context("no frame within 10 s")?
                .context("websocket closed")??;
            if frame.is_binary() {
                break;
            }
        }
        h.record(start.elapsed().as_micros().max(1) as u64)?;
    }
    let mut v = summary(&h);
    v["ok"] = json!(h.len() as usize == args.fanout_messages);
    Ok(v)
}
