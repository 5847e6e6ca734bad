//! A minimal Matrix client over plain HTTP: what the workloads need and nothing more.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

#[derive(Clone)]
pub(crate) struct Client {
    pub base: String,
    pub token: String,
    pub user_id: String,
    http: reqwest::Client,
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client")
}

/// Percent-encodes a path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await?;
    let status = res.status().as_u16();
    let bytes = res.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Registers through the `m.login.dummy` flow (asking for the session first, as Element does).
pub(crate) async fn register(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    password: &str,
) -> Result<Client> {
    let url = format!("{base}/_matrix/client/v3/register");
    let (status, body) = call(
        http,
        reqwest::Method::POST,
        url.clone(),
        None,
        Some(&json!({ "username": name, "password": password })),
    )
    .await?;
    let session = if status == 401 {
        body["session"].clone()
    } else {
        Value::Null
    };
    let (status, body) = call(
        http,
        reqwest::Method::POST,
        url,
        None,
        Some(&json!({ "username": name, "password": password, "auth": { "type": "m.login.dummy", "session": session }, "inhibit_login": false })),
    )
    .await?;
    if status != 200 {
        bail!("register {name}: {status} {body}");
    }
    Ok(Client {
        base: base.to_owned(),
        token: body["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned(),
        user_id: body["user_id"].as_str().context("user_id")?.to_owned(),
        http: http.clone(),
    })
}

pub(crate) async fn login(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    password: &str,
) -> Result<()> {
    let (status, body) = call(
        http,
        reqwest::Method::POST,
        format!("{base}/_matrix/client/v3/login"),
        None,
        Some(&json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": name }, "password": password })),
    )
    .await?;
    if status != 200 {
        bail!("login {name}: {status} {body}");
    }
    Ok(())
}

impl Client {
    pub(crate) async fn get(&self, path: &str) -> Result<(u16, Value)> {
        call(
            &self.http,
            reqwest::Method::GET,
            format!("{}{path}", self.base),
            Some(&self.token),
            None,
        )
        .await
    }
    pub(crate) async fn post(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        call(
            &self.http,
            reqwest::Method::POST,
            format!("{}{path}", self.base),
            Some(&self.token),
            Some(&body),
        )
        .await
    }
    pub(crate) async fn put(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        call(
            &self.http,
            reqwest::Method::PUT,
            format!("{}{path}", self.base),
            Some(&self.token),
            Some(&body),
        )
        .await
    }

    pub(crate) async fn create_room(&self, body: Value) -> Result<String> {
        let (s, b) = self.post("/_matrix/client/v3/createRoom", body).await?;
        if s != 200 {
            bail!("createRoom: {s} {b}");
        }
        Ok(b["room_id"].as_str().context("room_id")?.to_owned())
    }

    pub(crate) async fn join(&self, room: &str) -> Result<()> {
        let (s, b) = self
            .post(&format!("/_matrix/client/v3/join/{}", enc(room)), json!({}))
            .await?;
        if s != 200 {
            bail!("join: {s} {b}");
        }
        Ok(())
    }

    /// Sends a text message; the event id on success.
    pub(crate) async fn send(&self, room: &str, txn: &str, body: &str) -> Result<String> {
        let (s, b) = self
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                    enc(room)
                ),
                json!({ "msgtype": "m.text", "body": body }),
            )
            .await?;
        if s != 200 {
            bail!("send: {s} {b}");
        }
        Ok(b["event_id"].as_str().context("event_id")?.to_owned())
    }

    /// `/sync` with a minimal filter; the raw response and its size in bytes.
    pub(crate) async fn sync(
        &self,
        since: Option<&str>,
        timeout_ms: u64,
        filter: &str,
    ) -> Result<(Value, usize)> {
        let mut url = format!(
            "{}/_matrix/client/v3/sync?timeout={timeout_ms}&filter={}",
            self.base,
            enc(filter)
        );
        if let Some(s) = since {
            url.push_str(&format!("&since={}", enc(s)));
        }
        let res = self.http.get(url).bearer_auth(&self.token).send().await?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await?;
        if status != 200 {
            bail!("sync: {status}");
        }
        Ok((serde_json::from_slice(&bytes)?, bytes.len()))
    }

    /// Counts the `m.room.message` events of a room whose body starts with `prefix`.
    pub(crate) async fn count_messages(&self, room: &str, prefix: &str) -> Result<usize> {
        let mut from: Option<String> = None;
        let mut n = 0;
        loop {
            let mut path = format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000",
                enc(room)
            );
            if let Some(f) = &from {
                path.push_str(&format!("&from={}", enc(f)));
            }
            let (s, b) = self.get(&path).await?;
            if s != 200 {
                bail!("messages: {s} {b}");
            }
            let chunk = b["chunk"].as_array().cloned().unwrap_or_default();
            n += chunk
                .iter()
                .filter(|e| {
                    e["type"] == "m.room.message"
                        && e["content"]["body"]
                            .as_str()
                            .is_some_and(|x| x.starts_with(prefix))
                })
                .count();
            match b["end"].as_str() {
                Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
                _ => return Ok(n),
            }
        }
    }
}
