//! Test harness: a real server (the same wiring as the binary) on 127.0.0.1:0 with a real
//! SQLite file in a temporary directory, and a small HTTP client speaking JSON to it.
//!
//! With `SANDCAT_TEST_PROFILE=pipeline` every server of a test runs on the pipeline instead:
//! PostgreSQL (a fresh schema), Kafka (a fresh topic and consumer group), Redis and S3 — the
//! services `scripts/services.sh` starts (each overridable: `SANDCAT_TEST_POSTGRES`,
//! `SANDCAT_TEST_KAFKA`, `SANDCAT_TEST_REDIS`, `SANDCAT_TEST_S3`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly
#![allow(dead_code)]

pub(crate) mod cluster;
pub(crate) mod dns;
pub(crate) mod federation;
pub(crate) mod native;
pub(crate) mod smtp;

use serde_json::{json, Value};

pub(crate) struct Server {
    pub base: String,
    /// Verification codes the Sandcat API "mailed".
    pub outbox: std::sync::Arc<sandcat_api::Outbox>,
    pub dir: tempfile::TempDir,
    /// The configuration it runs with (for tests that act as its admin).
    pub config: sandcat::Config,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Whether the tests run on the pipeline services.
pub(crate) fn pipeline_profile() -> bool {
    std::env::var("SANDCAT_TEST_PROFILE").as_deref() == Ok("pipeline")
}

/// The test MongoDB (`scripts/services.sh`). A test server busy with another test may take
/// a few seconds to answer a new client; a missing one still fails, after 30 s.
const TEST_MONGO: &str = "mongodb://127.0.0.1:27017/?serverSelectionTimeoutMS=30000";

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// Points the config at the pipeline services. The names of the test's schema, topic, bucket
/// and inbox database are kept in its data directory, so a restarted server finds its data again.
pub(crate) async fn use_pipeline(config: &mut sandcat::Config, dir: &std::path::Path) {
    let file = dir.join("pipeline-profile");
    let name = match std::fs::read_to_string(&file) {
        Ok(n) => n,
        Err(_) => {
            let n = format!(
                "t{}",
                sandcat_core::token::random_string(12)
                    .to_lowercase()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "")
            );
            std::fs::write(&file, &n).expect("write profile");
            n
        }
    };
    let base = env_or(
        "SANDCAT_TEST_POSTGRES",
        "postgres://postgres@127.0.0.1:5432/sandcat_test",
    );
    config.storage.backend = sandcat::StorageBackend::Postgres;
    config.storage.max_connections = 4;
    config.storage.url = sandcat_backends::sql::create_schema(&base, &name)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {base} is needed ({e}); run scripts/services.sh")
        });
    config.bus.backend = sandcat::BusBackend::Kafka;
    config.bus.brokers = env_or("SANDCAT_TEST_KAFKA", "127.0.0.1:9092");
    config.bus.topic = format!("sandcat.{name}");
    config.bus.group = format!("sequencers.{name}");
    config.bus.partitions = 4;
    config.cache.backend = sandcat::CacheBackend::Redis;
    config.cache.url = env_or("SANDCAT_TEST_REDIS", "redis://127.0.0.1:6379");
    // Tests running side by side share Redis and the server name: one channel per test.
    config.cache.prefix = format!("sandcat-{name}");
    config.media.backend = sandcat::MediaBackend::S3;
    config.media.s3_endpoint = env_or("SANDCAT_TEST_S3", "http://127.0.0.1:9000");
    config.media.s3_bucket = format!("media-{name}");
    config.media.s3_access_key = env_or("SANDCAT_TEST_S3_KEY", "minioadmin");
    config.media.s3_secret_key = env_or("SANDCAT_TEST_S3_SECRET", "minioadmin");
    config.inbox.backend = sandcat::InboxBackend::Mongodb;
    config.inbox.url = env_or("SANDCAT_TEST_MONGO", TEST_MONGO);
    config.inbox.database = name;
}

impl Server {
    pub(crate) async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(tweak: impl FnOnce(&mut sandcat::Config)) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, tweak).await
    }

    pub(crate) async fn start_in(
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut sandcat::Config),
    ) -> Server {
        let mut config = sandcat::Config {
            data_dir: dir.path().to_path_buf(),
            registration_enabled: true,
            rate_limit_per_second: 0.0,
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        config.public_base_url = base.clone();
        if pipeline_profile() {
            use_pipeline(&mut config, dir.path()).await;
        }
        tweak(&mut config);
        let outbox = std::sync::Arc::new(sandcat_api::Outbox::default());
        let app = sandcat::build_with(&config, outbox.clone())
            .await
            .expect("server builds");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            sandcat::serve(app, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        Server {
            base,
            outbox,
            dir,
            config,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server gracefully and hands back its data directory.
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    pub(crate) fn anon(&self) -> Client {
        anon_at(&self.base)
    }

    /// Registers `name` with password `pw` and returns a logged-in client.
    pub(crate) async fn register(&self, name: &str) -> Client {
        register_at(&self.base, name).await
    }
}

/// A client of the server at `base`, not logged in.
pub(crate) fn anon_at(base: &str) -> Client {
    Client {
        base: base.to_owned(),
        token: None,
        user_id: String::new(),
        http: reqwest::Client::new(),
    }
}

/// Registers `name` (password `pw-<name>`) on the server at `base`; a logged-in client.
pub(crate) async fn register_at(base: &str, name: &str) -> Client {
    let c = anon_at(base);
    let (status, body) = c.post("/_matrix/client/v3/register", json!({ "username": name, "password": "pw-".to_owned() + name, "auth": { "type": "m.login.dummy" } })).await;
    assert_eq!(status, 200, "register {name}: {body}");
    Client {
        token: Some(body["access_token"].as_str().expect("token").to_owned()),
        user_id: body["user_id"].as_str().expect("user id").to_owned(),
        ..c
    }
}

#[derive(Clone)]
pub(crate) struct Client {
    pub base: String,
    pub token: Option<String>,
    pub user_id: String,
    pub http: reqwest::Client,
}

/// Percent-encodes a path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Client {
    pub(crate) async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.raw(reqwest::Method::GET, path, None).await
    }
    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.raw(
            reqwest::Method::POST,
            path,
            Some(body.to_string().into_bytes()),
        )
        .await
    }
    pub(crate) async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.raw(
            reqwest::Method::PUT,
            path,
            Some(body.to_string().into_bytes()),
        )
        .await
    }
    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        self.raw(reqwest::Method::DELETE, path, None).await
    }

    pub(crate) async fn create_room(&self, body: Value) -> String {
        let (s, b) = self.post("/_matrix/client/v3/createRoom", body).await;
        assert_eq!(s, 200, "createRoom: {b}");
        b["room_id"].as_str().expect("room id").to_owned()
    }

    pub(crate) async fn join(&self, room: &str) {
        let (s, b) = self
            .post(&format!("/_matrix/client/v3/join/{}", enc(room)), json!({}))
            .await;
        assert_eq!(s, 200, "join: {b}");
    }

    pub(crate) async fn send_text(&self, room: &str, txn: &str, text: &str) -> String {
        let (s, b) = self
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                    enc(room)
                ),
                json!({ "msgtype": "m.text", "body": text }),
            )
            .await;
        assert_eq!(s, 200, "send: {b}");
        b["event_id"].as_str().expect("event id").to_owned()
    }

    /// Starts typing in `room` for ten seconds.
    pub(crate) async fn start_typing(&self, room: &str) {
        let (s, b) = self
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/typing/{}",
                    enc(room),
                    enc(&self.user_id)
                ),
                json!({ "typing": true, "timeout": 10000 }),
            )
            .await;
        assert_eq!(s, 200, "typing: {b}");
    }

    /// Marks `room` read up to `event` (`m.read`).
    pub(crate) async fn read_up_to(&self, room: &str, event: &str) {
        let (s, b) = self
            .post(
                &format!(
                    "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                    enc(room),
                    enc(event)
                ),
                json!({}),
            )
            .await;
        assert_eq!(s, 200, "receipt: {b}");
    }

    pub(crate) async fn sync(&self, since: Option<&str>, timeout_ms: u64) -> Value {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(s) = since {
            path.push_str(&format!("&since={}", enc(s)));
        }
        let (s, b) = self.get(&path).await;
        assert_eq!(s, 200, "sync: {b}");
        b
    }
}

/// Bodies of `m.room.message` events in a sync response's timeline for `room`.
pub(crate) fn timeline_bodies(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|evs| {
            evs.iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /api/user/{id}` with a Sandcat token on the server at `base`: the status.
pub(crate) async fn sandcat_get_user(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
) -> u16 {
    http.get(format!("{base}/api/user/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A PNG picture of `w`×`h` (a gradient), to upload and thumbnail.
pub(crate) fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}
