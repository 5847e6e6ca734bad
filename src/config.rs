//! Configuration: one TOML file, every key overridable by a `SANDCAT_<KEY>` environment
//! variable, defaults that run the embedded profile on a fresh machine.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// One section's choice of backend, read from TOML and from `SANDCAT_*` alike; an unknown
/// name is refused naming the section and the names it takes.
macro_rules! backend {
    ($(#[$doc:meta])* $name:ident, $section:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = anyhow::Error;

            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(anyhow::anyhow!(
                        "{} backend must be {}, not {other:?}",
                        $section,
                        [$(concat!("\"", $text, "\"")),+].join(" or ")
                    )),
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(|e: anyhow::Error| serde::de::Error::custom(e))
            }
        }
    };
}

backend!(
    /// `[storage]`: SQLite in `<data_dir>/sandcat.db`, or PostgreSQL shared by every instance.
    StorageBackend, "[storage]", { Embedded => "embedded", Postgres => "postgres" }
);
backend!(
    /// `[bus]`: in-process lanes, or Kafka.
    BusBackend, "[bus]", { Embedded => "embedded", Kafka => "kafka" }
);
backend!(
    /// `[cache]`: one process, or wake-ups through Redis.
    CacheBackend, "[cache]", { Embedded => "embedded", Redis => "redis" }
);
backend!(
    /// `[media]`: files under `<data_dir>/media`, or S3.
    MediaBackend, "[media]", { Embedded => "embedded", S3 => "s3" }
);
backend!(
    /// `[inbox]`: a table of the `[storage]` database, or MongoDB.
    InboxBackend, "[inbox]", { Embedded => "embedded", Mongodb => "mongodb" }
);

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The server name in user ids and room aliases (`@alice:<server_name>`).
    pub server_name: String,
    /// Address the HTTP listener binds to.
    pub listen: SocketAddr,
    /// Where the SQLite database, the signing key and media live.
    pub data_dir: PathBuf,
    /// The URL clients reach this server at, told in `/.well-known/matrix/client`.
    /// Empty: `http://<listen>`.
    pub public_base_url: String,
    /// Whether anyone may register an account through `/register`.
    pub registration_enabled: bool,
    /// Whether registering needs a registration token (`sandcat registration-token create`);
    /// only with `registration_enabled`.
    pub registration_requires_token: bool,
    /// Room version for new rooms: 10, 11 or 12.
    pub default_room_version: String,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `sandcat=debug,info`.
    pub log: String,
    /// Number of lanes of the embedded event bus (rooms are hashed onto them).
    pub bus_shards: usize,
    /// Sustained rate of rate-limited requests (sending, joining, login, register, …) per
    /// user, or per address before login. 0 turns rate limiting off.
    pub rate_limit_per_second: f64,
    /// Requests a user may make in a burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Wrong passwords an account may get (Matrix and Sandcat logins together) before its
    /// logins are refused for `login_lockout_secs`; 0 turns the lockout off.
    pub max_login_failures: u32,
    pub login_lockout_secs: u64,
    /// How long an access token handed out with a refresh token lives; 0: until logout.
    /// Clients that ask for no refresh token get tokens that never expire.
    pub access_token_lifetime_secs: u64,
    /// Directory of application service registration files (`*.yaml`), re-read while running.
    /// Empty: `<data_dir>/appservices`.
    pub appservice_dir: PathBuf,
    /// Secret that signs the Sandcat native API's JWTs. Empty: a random secret kept in
    /// `<data_dir>/jwt.secret`.
    pub jwt_secret: String,
    /// Largest media upload in bytes (Matrix media and Sandcat files); larger gets M_TOO_LARGE.
    pub max_upload_bytes: usize,
    /// Open HTTP connections at most; more wait until one closes.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers; an idle keep-alive connection is
    /// closed after as long.
    pub header_timeout_secs: u64,
    /// Where users, rooms and events live.
    pub storage: StorageConfig,
    /// How room events reach their sequencer.
    pub bus: BusConfig,
    /// Where media bytes live.
    pub media: MediaConfig,
    /// Cross-instance wake-ups.
    pub cache: CacheConfig,
    /// Per-user inboxes of messages (Sandcat offline delivery).
    pub inbox: InboxConfig,
    /// Sign-in of Sandcat clients through GitHub and Google.
    pub oauth: sandcat_api::oauth::OAuthConfig,
    /// What other servers are told about this one.
    pub federation: FederationConfig,
    /// The TURN servers calls go through.
    pub voip: VoipConfig,
    /// How notifications reach push gateways.
    pub push: PushConfig,
    /// Whom users and other admins contact about this server (`/.well-known/matrix/support`).
    pub support: SupportConfig,
    /// The mail relay that validates email addresses and sends Sandcat verification codes.
    pub email: EmailConfig,
}

/// How the connection to the mail relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain TCP: only for a relay on this host or a trusted network.
    None,
    /// STARTTLS (port 587), refused if the relay cannot.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl std::str::FromStr for SmtpSecurity {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(SmtpSecurity::None),
            "starttls" => Ok(SmtpSecurity::Starttls),
            "tls" => Ok(SmtpSecurity::Tls),
            other => anyhow::bail!(
                "email.smtp_security must be \"none\", \"starttls\" or \"tls\", not {other:?}"
            ),
        }
    }
}

/// `[email]`: the SMTP relay mail goes through. Without a host, email addresses cannot be
/// added or validated through the Matrix API, and Sandcat verification codes go to the log.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// Empty: no mail is sent.
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_security: SmtpSecurity,
    /// Empty: no login.
    pub smtp_user: String,
    pub smtp_password: String,
    /// The sender; empty: `Sandcat <noreply@SERVER_NAME>`.
    pub from: String,
    /// How long a mailed validation token works.
    pub validation_lifetime_secs: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            smtp_host: String::new(),
            smtp_port: 587,
            smtp_security: SmtpSecurity::Starttls,
            smtp_user: String::new(),
            smtp_password: String::new(),
            from: String::new(),
            validation_lifetime_secs: 3600,
        }
    }
}

/// `[push]`: how notifications reach the push gateways pushers name.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Let notifications go to gateways at private, loopback and link-local addresses (a
    /// gateway on this machine or network). Off: a pusher cannot make this server call into
    /// its own network.
    pub allow_private_gateways: bool,
    /// How long a notification its gateway keeps refusing is retried before it is dropped
    /// and the pusher goes on with the next (a day: later, it is no news).
    pub give_up_after_secs: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            allow_private_gateways: false,
            give_up_after_secs: 24 * 60 * 60,
        }
    }
}

/// `[voip]`: the TURN servers clients use for calls (`/voip/turnServer`), with credentials
/// made from a secret shared with them (TURN REST credentials: coturn's `use-auth-secret`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoipConfig {
    /// `turn:` and `turns:` URIs. Empty: no TURN server is offered.
    pub turn_uris: Vec<String>,
    pub turn_shared_secret: String,
    /// How long a credential is good for.
    pub turn_ttl_secs: u64,
}

impl Default for VoipConfig {
    fn default() -> Self {
        VoipConfig {
            turn_uris: Vec::new(),
            turn_shared_secret: String::new(),
            turn_ttl_secs: 86_400,
        }
    }
}

/// `[support]`: `/.well-known/matrix/support`, served when either is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupportConfig {
    /// A web page about getting help with this server.
    pub support_page: String,
    pub contacts: Vec<SupportContact>,
}

impl SupportConfig {
    /// The `/.well-known/matrix/support` document; `None` when nothing is configured. A
    /// contact needs a role and a Matrix id or an email address.
    pub fn document(&self) -> Result<Option<serde_json::Value>> {
        if self.support_page.is_empty() && self.contacts.is_empty() {
            return Ok(None);
        }
        let mut contacts = Vec::new();
        for c in &self.contacts {
            if c.role.is_empty() || (c.matrix_id.is_empty() && c.email_address.is_empty()) {
                anyhow::bail!("a [[support.contacts]] entry needs a role, and a matrix_id or an email_address");
            }
            let mut contact = serde_json::json!({ "role": c.role });
            if !c.matrix_id.is_empty() {
                ruma::UserId::parse(&c.matrix_id)
                    .with_context(|| format!("support contact {}", c.matrix_id))?;
                contact["matrix_id"] = c.matrix_id.clone().into();
            }
            if !c.email_address.is_empty() {
                contact["email_address"] = c.email_address.clone().into();
            }
            contacts.push(contact);
        }
        let mut doc = serde_json::json!({ "contacts": contacts });
        if !self.support_page.is_empty() {
            doc["support_page"] = self.support_page.clone().into();
        }
        Ok(Some(doc))
    }
}

/// A contact of `[support]`: a role (`m.role.admin`, `m.role.security`) and a Matrix id or
/// an email address, or both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupportContact {
    pub role: String,
    pub matrix_id: String,
    pub email_address: String,
}

/// `[federation]`: how other homeservers find and trust this one, and how it reaches them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// `host[:port]` that `/.well-known/matrix/server` delegates federation to (`m.server`).
    /// Empty: that document is not served (404), and servers reach `server_name` directly.
    pub well_known_server: String,
    /// Where the TLS listener for other servers listens (`0.0.0.0:8448`); it serves the
    /// client API too. Empty: none (a reverse proxy ends TLS in front of `listen`).
    pub listen: String,
    /// PEM files of the TLS listener's certificate chain and private key.
    pub tls_certificate: String,
    pub tls_private_key: String,
    /// Check other servers' certificates. Off only where servers use self-signed ones.
    pub verify_certificates: bool,
    /// Let requests to other servers go to private, loopback and link-local addresses
    /// (several servers on one machine or network).
    pub allow_private_destinations: bool,
    /// The DNS server (`ip:port`) that finds other servers (addresses and SRV records).
    /// Empty: the system's (`/etc/resolv.conf`, `/etc/hosts`).
    pub dns_server: String,
    /// Requests each other server may make per second, sustained (0: no limit), and the burst
    /// above it; counted per instance.
    pub rate_limit_per_second: f64,
    pub rate_limit_burst: u32,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            well_known_server: String::new(),
            listen: String::new(),
            tls_certificate: String::new(),
            tls_private_key: String::new(),
            verify_certificates: true,
            allow_private_destinations: false,
            dns_server: String::new(),
            rate_limit_per_second: 100.0,
            rate_limit_burst: 1000,
        }
    }
}

/// `[inbox]`: `backend = "embedded"` (a table of the `[storage]` database) or `"mongodb"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboxConfig {
    pub backend: InboxBackend,
    /// `mongodb://host:port[,host:port…][/?options]`
    pub url: String,
    pub database: String,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            backend: InboxBackend::Embedded,
            url: "mongodb://127.0.0.1:27017".into(),
            database: "sandcat".into(),
        }
    }
}

/// `[storage]`: `backend = "embedded"` (SQLite in `<data_dir>/sandcat.db`) or `"postgres"`
/// (shared by every instance).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// `postgres://user:password@host:port/database`
    pub url: String,
    /// Connections of this instance's pool.
    pub max_connections: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Embedded,
            url: "postgres://postgres@127.0.0.1:5432/sandcat".into(),
            max_connections: 16,
        }
    }
}

/// `[bus]`: `backend = "embedded"` (in-process lanes) or `"kafka"` (one topic of room
/// batches keyed by room id; the instances' sequencers form one consumer group).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    pub backend: BusBackend,
    /// Kafka bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    pub topic: String,
    /// Partitions of the topic when this server creates it.
    pub partitions: i32,
    /// Consumer group of the sequencers.
    pub group: String,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            backend: BusBackend::Embedded,
            brokers: "127.0.0.1:9092".into(),
            topic: "sandcat.rooms".into(),
            partitions: 8,
            group: "sandcat-sequencers".into(),
        }
    }
}

/// `[cache]`: `backend = "embedded"` (one process) or `"redis"` (wake-ups of `/sync` and
/// WebSockets on every instance through Redis pub/sub).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub backend: CacheBackend,
    pub url: String,
    /// Prefix of this deployment's Redis channel (`{prefix}:{server_name}:wake`), so that
    /// deployments sharing one Redis do not hear each other.
    pub prefix: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackend::Embedded,
            url: "redis://127.0.0.1:6379".into(),
            prefix: "sandcat".into(),
        }
    }
}

/// `[media]`: `backend = "embedded"` (files under `<data_dir>/media`) or `"s3"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    pub backend: MediaBackend,
    /// S3 endpoint URL, e.g. `http://127.0.0.1:9000` (MinIO); path-style addressing.
    pub s3_endpoint: String,
    pub s3_region: String,
    pub s3_bucket: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
    /// Previews of links (`/media/preview_url`): the server fetches the page a user names,
    /// never from a private, loopback or link-local address unless allowed below.
    pub url_preview: bool,
    /// Let previews fetch from private addresses (pages on this machine or network).
    pub url_preview_allow_private: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            backend: MediaBackend::Embedded,
            s3_endpoint: "http://127.0.0.1:9000".into(),
            s3_region: "us-east-1".into(),
            s3_bucket: "sandcat-media".into(),
            s3_access_key: String::new(),
            s3_secret_key: String::new(),
            url_preview: true,
            url_preview_allow_private: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: "localhost".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            data_dir: PathBuf::from("./data"),
            public_base_url: String::new(),
            registration_enabled: false,
            registration_requires_token: false,
            default_room_version: "12".into(),
            log: "info,ruma_state_res=warn".into(),
            bus_shards: 16,
            rate_limit_per_second: 10.0,
            rate_limit_burst: 50,
            max_login_failures: 5,
            login_lockout_secs: 60,
            access_token_lifetime_secs: 0,
            appservice_dir: PathBuf::new(),
            jwt_secret: String::new(),
            max_upload_bytes: 50 * 1024 * 1024,
            max_connections: 4096,
            header_timeout_secs: 15,
            storage: StorageConfig::default(),
            bus: BusConfig::default(),
            media: MediaConfig::default(),
            cache: CacheConfig::default(),
            inbox: InboxConfig::default(),
            oauth: Default::default(),
            federation: FederationConfig::default(),
            voip: VoipConfig::default(),
            push: PushConfig::default(),
            support: SupportConfig::default(),
            email: EmailConfig::default(),
        }
    }
}

impl Config {
    /// Reads the file (if any), then applies environment overrides.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self> {
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config file {}", p.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config file {}", p.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = get("SANDCAT_SERVER_NAME") {
            self.server_name = v;
        }
        if let Some(v) = get("SANDCAT_LISTEN") {
            self.listen = v
                .parse()
                .context("SANDCAT_LISTEN must be an address like 127.0.0.1:8008")?;
        }
        if let Some(v) = get("SANDCAT_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("SANDCAT_PUBLIC_BASE_URL") {
            self.public_base_url = v;
        }
        if let Some(v) = get("SANDCAT_REGISTRATION_ENABLED") {
            self.registration_enabled =
                matches!(v.to_lowercase().as_str(), "1" | "true" | "yes" | "on");
        }
        if let Some(v) = get("SANDCAT_REGISTRATION_REQUIRES_TOKEN") {
            self.registration_requires_token =
                matches!(v.to_lowercase().as_str(), "1" | "true" | "yes" | "on");
        }
        if let Some(v) = get("SANDCAT_DEFAULT_ROOM_VERSION") {
            self.default_room_version = v;
        }
        if let Some(v) = get("SANDCAT_LOG") {
            self.log = v;
        }
        if let Some(v) = get("SANDCAT_BUS_SHARDS") {
            self.bus_shards = v.parse().context("SANDCAT_BUS_SHARDS must be a number")?;
        }
        if let Some(v) = get("SANDCAT_RATE_LIMIT_PER_SECOND") {
            self.rate_limit_per_second = v
                .parse()
                .context("SANDCAT_RATE_LIMIT_PER_SECOND must be a number")?;
        }
        if let Some(v) = get("SANDCAT_RATE_LIMIT_BURST") {
            self.rate_limit_burst = v
                .parse()
                .context("SANDCAT_RATE_LIMIT_BURST must be a number")?;
        }
        if let Some(v) = get("SANDCAT_MAX_LOGIN_FAILURES") {
            self.max_login_failures = v
                .parse()
                .context("SANDCAT_MAX_LOGIN_FAILURES must be a number")?;
        }
        if let Some(v) = get("SANDCAT_ACCESS_TOKEN_LIFETIME_SECS") {
            self.access_token_lifetime_secs = v
                .parse()
                .context("SANDCAT_ACCESS_TOKEN_LIFETIME_SECS must be a number")?;
        }
        if let Some(v) = get("SANDCAT_LOGIN_LOCKOUT_SECS") {
            self.login_lockout_secs = v
                .parse()
                .context("SANDCAT_LOGIN_LOCKOUT_SECS must be a number")?;
        }
        if let Some(v) = get("SANDCAT_MAX_UPLOAD_BYTES") {
            self.max_upload_bytes = v
                .parse()
                .context("SANDCAT_MAX_UPLOAD_BYTES must be a number")?;
        }
        if let Some(v) = get("SANDCAT_MAX_CONNECTIONS") {
            self.max_connections = v
                .parse()
                .context("SANDCAT_MAX_CONNECTIONS must be a number")?;
        }
        if let Some(v) = get("SANDCAT_HEADER_TIMEOUT_SECS") {
            self.header_timeout_secs = v
                .parse()
                .context("SANDCAT_HEADER_TIMEOUT_SECS must be a number")?;
        }
        if let Some(v) = get("SANDCAT_STORAGE_MAX_CONNECTIONS") {
            self.storage.max_connections = v
                .parse()
                .context("SANDCAT_STORAGE_MAX_CONNECTIONS must be a number")?;
        }
        if let Some(v) = get("SANDCAT_BUS_PARTITIONS") {
            self.bus.partitions = v
                .parse()
                .context("SANDCAT_BUS_PARTITIONS must be a number")?;
        }
        for (key, field) in [
            ("SANDCAT_STORAGE_URL", &mut self.storage.url),
            ("SANDCAT_BUS_BROKERS", &mut self.bus.brokers),
            ("SANDCAT_BUS_TOPIC", &mut self.bus.topic),
            ("SANDCAT_BUS_GROUP", &mut self.bus.group),
            ("SANDCAT_MEDIA_S3_ENDPOINT", &mut self.media.s3_endpoint),
            ("SANDCAT_MEDIA_S3_REGION", &mut self.media.s3_region),
            ("SANDCAT_MEDIA_S3_BUCKET", &mut self.media.s3_bucket),
            ("SANDCAT_MEDIA_S3_ACCESS_KEY", &mut self.media.s3_access_key),
            ("SANDCAT_MEDIA_S3_SECRET_KEY", &mut self.media.s3_secret_key),
            ("SANDCAT_CACHE_URL", &mut self.cache.url),
            ("SANDCAT_CACHE_PREFIX", &mut self.cache.prefix),
            ("SANDCAT_INBOX_URL", &mut self.inbox.url),
            ("SANDCAT_INBOX_DATABASE", &mut self.inbox.database),
            (
                "SANDCAT_FEDERATION_WELL_KNOWN_SERVER",
                &mut self.federation.well_known_server,
            ),
            ("SANDCAT_FEDERATION_LISTEN", &mut self.federation.listen),
            (
                "SANDCAT_FEDERATION_TLS_CERTIFICATE",
                &mut self.federation.tls_certificate,
            ),
            (
                "SANDCAT_FEDERATION_TLS_PRIVATE_KEY",
                &mut self.federation.tls_private_key,
            ),
            (
                "SANDCAT_FEDERATION_DNS_SERVER",
                &mut self.federation.dns_server,
            ),
            (
                "SANDCAT_VOIP_TURN_SHARED_SECRET",
                &mut self.voip.turn_shared_secret,
            ),
            ("SANDCAT_EMAIL_SMTP_HOST", &mut self.email.smtp_host),
            ("SANDCAT_EMAIL_SMTP_USER", &mut self.email.smtp_user),
            ("SANDCAT_EMAIL_SMTP_PASSWORD", &mut self.email.smtp_password),
            ("SANDCAT_EMAIL_FROM", &mut self.email.from),
        ] {
            if let Some(v) = get(key) {
                *field = v;
            }
        }
        if let Some(v) = get("SANDCAT_FEDERATION_VERIFY_CERTIFICATES") {
            self.federation.verify_certificates = v
                .parse()
                .context("SANDCAT_FEDERATION_VERIFY_CERTIFICATES must be true or false")?;
        }
        if let Some(v) = get("SANDCAT_FEDERATION_ALLOW_PRIVATE_DESTINATIONS") {
            self.federation.allow_private_destinations = v
                .parse()
                .context("SANDCAT_FEDERATION_ALLOW_PRIVATE_DESTINATIONS must be true or false")?;
        }
        if let Some(v) = get("SANDCAT_PUSH_ALLOW_PRIVATE_GATEWAYS") {
            self.push.allow_private_gateways = v
                .parse()
                .context("SANDCAT_PUSH_ALLOW_PRIVATE_GATEWAYS must be true or false")?;
        }
        if let Some(v) = get("SANDCAT_EMAIL_SMTP_PORT") {
            self.email.smtp_port = v
                .parse()
                .context("SANDCAT_EMAIL_SMTP_PORT must be a port number")?;
        }
        if let Some(v) = get("SANDCAT_EMAIL_SMTP_SECURITY") {
            self.email.smtp_security = v.parse()?;
        }
        if let Some(v) = get("SANDCAT_PUSH_GIVE_UP_AFTER_SECS") {
            self.push.give_up_after_secs = v
                .parse()
                .context("SANDCAT_PUSH_GIVE_UP_AFTER_SECS must be a number of seconds")?;
        }
        if let Some(v) = get("SANDCAT_FEDERATION_RATE_LIMIT_PER_SECOND") {
            self.federation.rate_limit_per_second = v
                .parse()
                .context("SANDCAT_FEDERATION_RATE_LIMIT_PER_SECOND must be a number")?;
        }
        if let Some(v) = get("SANDCAT_FEDERATION_RATE_LIMIT_BURST") {
            self.federation.rate_limit_burst = v
                .parse()
                .context("SANDCAT_FEDERATION_RATE_LIMIT_BURST must be a number")?;
        }
        if let Some(v) = get("SANDCAT_STORAGE_BACKEND") {
            self.storage.backend = v.parse().context("SANDCAT_STORAGE_BACKEND")?;
        }
        if let Some(v) = get("SANDCAT_BUS_BACKEND") {
            self.bus.backend = v.parse().context("SANDCAT_BUS_BACKEND")?;
        }
        if let Some(v) = get("SANDCAT_CACHE_BACKEND") {
            self.cache.backend = v.parse().context("SANDCAT_CACHE_BACKEND")?;
        }
        if let Some(v) = get("SANDCAT_MEDIA_URL_PREVIEW") {
            self.media.url_preview = v
                .parse()
                .context("SANDCAT_MEDIA_URL_PREVIEW must be true or false")?;
        }
        if let Some(v) = get("SANDCAT_MEDIA_URL_PREVIEW_ALLOW_PRIVATE") {
            self.media.url_preview_allow_private = v
                .parse()
                .context("SANDCAT_MEDIA_URL_PREVIEW_ALLOW_PRIVATE must be true or false")?;
        }
        if let Some(v) = get("SANDCAT_MEDIA_BACKEND") {
            self.media.backend = v.parse().context("SANDCAT_MEDIA_BACKEND")?;
        }
        if let Some(v) = get("SANDCAT_INBOX_BACKEND") {
            self.inbox.backend = v.parse().context("SANDCAT_INBOX_BACKEND")?;
        }
        if let Some(v) = get("SANDCAT_JWT_SECRET") {
            self.jwt_secret = v;
        }
        if let Some(v) = get("SANDCAT_APPSERVICE_DIR") {
            self.appservice_dir = v.into();
        }
        Ok(())
    }

    /// Where application service registrations live.
    pub fn appservice_dir(&self) -> PathBuf {
        if self.appservice_dir.as_os_str().is_empty() {
            self.data_dir.join("appservices")
        } else {
            self.appservice_dir.clone()
        }
    }
}
