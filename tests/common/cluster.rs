//! Instances of the real `sandcat` binary on the pipeline services, for the scale-out tests.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{enc, Client};

/// One `sandcat serve` process.
pub(crate) struct Instance {
    pub base: String,
    pub child: Child,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn start(
    config: &sandcat::Config,
    data: &std::path::Path,
    name: &str,
) -> Instance {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(data.join(format!("{name}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sandcat"))
        .arg("serve")
        .env("SANDCAT_LISTEN", format!("127.0.0.1:{port}"))
        .env("SANDCAT_PUBLIC_BASE_URL", &base)
        .env("SANDCAT_DATA_DIR", data)
        .env("SANDCAT_SERVER_NAME", "scale.test")
        .env("SANDCAT_REGISTRATION_ENABLED", "true")
        .env("SANDCAT_RATE_LIMIT_PER_SECOND", "0")
        .env("SANDCAT_LOG", "warn,sandcat_backends=info")
        .env("SANDCAT_STORAGE_BACKEND", "postgres")
        .env("SANDCAT_STORAGE_URL", &config.storage.url)
        .env("SANDCAT_BUS_BACKEND", "kafka")
        .env("SANDCAT_BUS_BROKERS", &config.bus.brokers)
        .env("SANDCAT_BUS_TOPIC", &config.bus.topic)
        .env("SANDCAT_BUS_GROUP", &config.bus.group)
        .env("SANDCAT_BUS_PARTITIONS", "4")
        .env("SANDCAT_CACHE_BACKEND", "redis")
        .env("SANDCAT_CACHE_URL", &config.cache.url)
        .env("SANDCAT_CACHE_PREFIX", &config.cache.prefix)
        .env("SANDCAT_MEDIA_BACKEND", "s3")
        .env("SANDCAT_MEDIA_S3_ENDPOINT", &config.media.s3_endpoint)
        .env("SANDCAT_MEDIA_S3_BUCKET", &config.media.s3_bucket)
        .env("SANDCAT_MEDIA_S3_ACCESS_KEY", &config.media.s3_access_key)
        .env("SANDCAT_MEDIA_S3_SECRET_KEY", &config.media.s3_secret_key)
        .env("SANDCAT_INBOX_BACKEND", "mongodb")
        .env("SANDCAT_INBOX_URL", &config.inbox.url)
        .env("SANDCAT_INBOX_DATABASE", &config.inbox.database)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start sandcat");
    let mut instance = Instance { base, child };
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{}/health", instance.base)).send().await {
            if r.status().is_success() {
                return instance;
            }
        }
        if let Ok(Some(status)) = instance.child.try_wait() {
            let log = std::fs::read_to_string(data.join(format!("{name}.log"))).unwrap_or_default();
            panic!("{name} exited with {status}:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} did not answer on {}", instance.base);
}

pub(crate) fn on(instance: &Instance, c: &Client) -> Client {
    Client {
        base: instance.base.clone(),
        ..c.clone()
    }
}

/// Every `m.room.message` body of a room, oldest first, read with `/messages`.
pub(crate) async fn bodies(c: &Client, room: &str) -> Vec<String> {
    let (s, b) = c
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=f&limit=1000",
            enc(room)
        ))
        .await;
    assert_eq!(s, 200, "messages: {b}");
    b["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}
