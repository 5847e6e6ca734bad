//! The `sandcat` binary's library half: configuration and wiring. Only this crate knows every
//! backend; it builds each port once and hands the services the handles they need.

pub mod config;
mod email;
pub mod listener;
mod pipeline;
pub mod signing_key;
pub mod tls;

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use ruma::{OwnedServerName, RoomVersionId};
use sandcat_api::{Hub, Jwt, LogMailer, Mailer, NativeState};
use sandcat_appservice::{Appservices, Backoff, Pushers, Registry};
use sandcat_backends::{
    bus::InProcessBus,
    fs_media::FsMediaStore,
    sql::{Dialect, SqlStore},
};
use sandcat_client_api::{metrics::Metrics, AppState};
use sandcat_core::{
    ephemeral::Ephemeral,
    inbox::{InboxIndexer, InboxWatch},
    notifier::Notifier,
    ports::{EventBus, IdentityServers, Inbox, StreamPosition},
    push::PushRules,
    ratelimit::Limiter,
    sequencer::{Sequencer, SigningKey},
    services::{
        accounts::Accounts,
        data::ClientData,
        deactivation::Deactivation,
        federation::{Inbound, ServerReads},
        key_backup::KeyBackup,
        keys::{Keys, KeysFederation},
        media::Media,
        openid::OpenId,
        push::Push,
        registration_tokens::{NewToken, RegistrationGate},
        reports::ContentReports,
        rooms::Rooms,
        server_keys::ServerKeys,
        sync::{Sync, SyncStores},
        third_party_invites::ThirdPartyInvites,
        threepids::ThreePids,
        url_previews::UrlPreviews,
    },
    ServerConfig, TurnServers,
};
use sandcat_federation::{
    client::{ClientOptions, FederationClient, RemoteEvents},
    edus::EduSender,
    identity::IdentityClient,
    sender::FederationSender,
};
use sandcat_push::{GatewayOptions, Gateways, PushSenders};
use tower_http::{catch_panic::CatchPanicLayer, cors::CorsLayer, trace::TraceLayer};

pub use config::{BusBackend, CacheBackend, Config, InboxBackend, MediaBackend, StorageBackend};
pub use pipeline::Wake;

/// A wired server: the router and what must be stopped with it.
pub struct App {
    pub router: Router,
    /// The listener's connection limits.
    pub limits: listener::Limits,
    pub accounts: Arc<Accounts>,
    pub bus: Arc<dyn EventBus>,
    pub ephemeral: Arc<Ephemeral>,
    /// Application service transaction pushers; started by [`serve`].
    pub pushers: Arc<Pushers>,
    /// The Sandcat native API's state (its connection hub, mailer, tokens).
    pub native: NativeState,
    /// Cross-instance wake-ups, when `[cache] backend = "redis"`.
    pub wake: Option<Wake>,
    /// The store, which decides which instance runs the application service pushers and the
    /// inbox indexer.
    pub store: Arc<SqlStore>,
    /// Fills the per-user inboxes from the event stream; started by [`serve`].
    pub indexer: Arc<InboxIndexer>,
    pub notifier: Notifier,
    /// The TLS listener other servers reach (`[federation] listen`), bound; served by [`serve`].
    pub federation_listener: Option<(tokio::net::TcpListener, tokio_rustls::TlsAcceptor)>,
    /// Sends this server's events to the servers in their rooms; started by [`serve`].
    pub federation_sender: Arc<FederationSender>,
    /// Sends notifications to push gateways; started by [`serve`].
    pub push_senders: Arc<PushSenders>,
}

/// The secret that signs Sandcat JWTs: from the config, else a random one kept in the data
/// directory.
fn jwt_secret(config: &Config) -> Result<Vec<u8>> {
    if !config.jwt_secret.is_empty() {
        return Ok(config.jwt_secret.as_bytes().to_vec());
    }
    let path = config.data_dir.join("jwt.secret");
    match std::fs::read(&path) {
        Ok(s) if s.len() >= 32 => Ok(s),
        _ => {
            let secret = sandcat_core::token::random_string(48).into_bytes();
            std::fs::write(&path, &secret)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(secret)
        }
    }
}

/// Learns the writes other instances made to the shared store; whether there were any.
async fn catch_up(store: &SqlStore) -> bool {
    let before = store.current_pos();
    if let Err(e) = store.refresh().await {
        tracing::warn!(error = %e, "catching up with the shared store failed");
    }
    store.current_pos() > before
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// The configured server name, checked.
pub fn server_name(config: &Config) -> Result<ruma::OwnedServerName> {
    config
        .server_name
        .as_str()
        .try_into()
        .context("server_name is not a valid Matrix server name")
}

/// Where the signing key lives.
fn signing_key_path(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("signing.key")
}

/// The `[storage]` database, migrated.
async fn open_store(config: &Config) -> Result<SqlStore> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    match config.storage.backend {
        StorageBackend::Embedded => SqlStore::open(&config.data_dir.join("sandcat.db"))
            .await
            .context("opening the SQLite database"),
        StorageBackend::Postgres => {
            SqlStore::postgres(&config.storage.url, config.storage.max_connections)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "[storage] backend = \"postgres\" at {}: {e}",
                        redact_url(&config.storage.url)
                    )
                })
        }
    }
}

/// `[federation] dns_server` as an address, if set.
fn dns_server(config: &Config) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let s = config.federation.dns_server.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| anyhow::anyhow!("[federation] dns_server must be ip:port, not {s:?}"))
}

/// `m.server` of `/.well-known/matrix/server`, if configured.
fn well_known_server(config: &Config) -> Result<Option<OwnedServerName>> {
    let v = config.federation.well_known_server.trim();
    if v.is_empty() {
        return Ok(None);
    }
    OwnedServerName::try_from(v)
        .map(Some)
        .with_context(|| format!("[federation] well_known_server {v:?} is not host[:port]"))
}

/// The latest reports users made (`sandcat reports`), newest first, at most `limit`.
pub async fn latest_reports(
    config: &Config,
    limit: usize,
) -> Result<Vec<sandcat_core::ports::Report>> {
    use sandcat_core::ports::Reports;
    let store = open_store(config).await?;
    store
        .latest_reports(limit)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Makes a user a server administrator (who may suspend and lock accounts), or no longer one
/// (`sandcat user admin`). `user` is a localpart or a user id of this server. Returns the id.
pub async fn set_admin(config: &Config, user: &str, admin: bool) -> Result<ruma::OwnedUserId> {
    use sandcat_core::ports::{AccountFlag, AccountStanding};
    let server_name = server_name(config)?;
    let user_id = if user.starts_with('@') {
        ruma::UserId::parse(user).with_context(|| format!("{user} is not a user id"))?
    } else {
        ruma::UserId::parse_with_server_name(user.to_lowercase(), &server_name)
            .with_context(|| format!("{user} is not a user name"))?
    };
    anyhow::ensure!(
        user_id.server_name() == server_name,
        "{user_id} is not a user of this server"
    );
    let store = open_store(config).await?;
    let found = store
        .set_account_flag(&user_id, AccountFlag::Admin, admin)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(found, "there is no account {user_id}");
    Ok(user_id)
}

/// The registration tokens of the server's store (`sandcat registration-token`).
pub async fn registration_tokens(config: &Config) -> Result<RegistrationGate> {
    let store = Arc::new(open_store(config).await?);
    Ok(RegistrationGate::new(
        store,
        config.registration_requires_token,
    ))
}

/// Creates a registration token (`sandcat registration-token create`).
pub async fn create_registration_token(
    config: &Config,
    new: NewToken,
) -> Result<sandcat_core::ports::RegistrationToken> {
    registration_tokens(config)
        .await?
        .create(new)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Replaces the signing key by a new one (`sandcat key rotate`): the old key is published as
/// an old key from then on, expired now. Running instances sign with the key they started
/// with until they restart. Returns the old and the new key id.
pub async fn rotate_signing_key(config: &Config) -> Result<(String, String)> {
    let store: Arc<SqlStore> = Arc::new(open_store(config).await?);
    let (old, new) = signing_key::rotate(&signing_key_path(config))?;
    let server_name = server_name(config)?;
    let old = SigningKey {
        server_name: server_name.clone(),
        key: old,
    };
    let keys = ServerKeys::new(
        Arc::new(SigningKey {
            server_name,
            key: new,
        }),
        store,
    );
    let now: u64 = ruma::MilliSecondsSinceUnixEpoch::now().get().into();
    keys.retire(&old.key_id(), &old.public_key(), now)
        .await
        .map_err(|e| anyhow::anyhow!("recording the old key: {e}"))?;
    keys.publish_own()
        .await
        .map_err(|e| anyhow::anyhow!("recording the new key: {e}"))?;
    Ok((old.key_id(), keys.own_key().key_id))
}

/// The page fetcher of URL previews; `None` when they are off.
fn web_pages(config: &Config) -> Result<Option<Arc<dyn sandcat_core::ports::WebPages>>> {
    if !config.media.url_preview {
        return Ok(None);
    }
    let fetcher = sandcat_backends::web::WebFetcher::new(sandcat_backends::web::PageOptions {
        allow_private: config.media.url_preview_allow_private,
        max_image_bytes: config.max_upload_bytes,
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!("the URL preview client: {e}"))?;
    Ok(Some(Arc::new(fetcher)))
}

/// Builds every part of the server from the configuration.
pub async fn build(config: &Config) -> Result<App> {
    let codes: Arc<dyn Mailer> = match email::mailer(config, &config.server_name)? {
        Some(mailer) => Arc::new(email::MailedCodes {
            mailer,
            server_name: config.server_name.clone(),
        }),
        None => Arc::new(LogMailer),
    };
    build_with(config, codes).await
}

/// Builds the server with a given mailer for Sandcat verification codes.
pub async fn build_with(config: &Config, mailer: Arc<dyn Mailer>) -> Result<App> {
    let store = Arc::new(open_store(config).await?);
    let key = signing_key::load_or_create(&signing_key_path(config))?;
    let server_name = server_name(config)?;
    let registry = Arc::new(
        Registry::load(Some(&config.appservice_dir()), server_name.clone())
            .context("loading application service registrations")?,
    );
    let default_room_version = RoomVersionId::try_from(config.default_room_version.as_str())
        .context("default_room_version")?;
    if !ServerConfig::supported_room_versions().contains(&default_room_version) {
        anyhow::bail!("default_room_version must be 10, 11 or 12");
    }
    let public_base_url = if config.public_base_url.is_empty() {
        format!("http://{}", config.listen)
    } else {
        config.public_base_url.clone()
    };
    let server = Arc::new(ServerConfig {
        server_name: server_name.clone(),
        registration_enabled: config.registration_enabled,
        default_room_version,
        max_timeline_limit: 500,
        max_sync_timeout_ms: 60_000,
        public_base_url,
        public_base_url_configured: !config.public_base_url.is_empty(),
        max_login_failures: config.max_login_failures,
        login_lockout_secs: config.login_lockout_secs,
        access_token_lifetime_ms: (config.access_token_lifetime_secs > 0)
            .then(|| config.access_token_lifetime_secs.saturating_mul(1000)),
        turn: TurnServers {
            uris: config.voip.turn_uris.clone(),
            shared_secret: config.voip.turn_shared_secret.clone(),
            ttl_secs: config.voip.turn_ttl_secs,
        },
        support: config.support.document()?,
        sign_in_providers: config.oauth.configured(),
    });
    let signing = Arc::new(SigningKey { server_name, key });
    let outbound = Arc::new(
        FederationClient::new(
            signing.clone(),
            ClientOptions {
                verify_certificates: config.federation.verify_certificates,
                allow_private_destinations: config.federation.allow_private_destinations,
                dns_server: dns_server(config)?,
                ..ClientOptions::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("the federation client: {e}"))?,
    );
    let server_keys =
        Arc::new(ServerKeys::new(signing.clone(), store.clone()).with_fetch(outbound.clone()));
    server_keys
        .publish_own()
        .await
        .map_err(|e| anyhow::anyhow!("publishing the signing key: {e}"))?;
    let remote_events = Arc::new(RemoteEvents::new(
        outbound.clone(),
        server_keys.clone(),
        store.clone(),
    ));
    let well_known = well_known_server(config)?;
    let federation_listener = federation_listener(config).await?;
    let notifier = Notifier::default();
    let shared = store.dialect() == Dialect::Postgres;
    if shared {
        // Other instances may write to the same database: catch up now and then, even if a
        // wake-up was missed.
        let (s, n) = (store.clone(), notifier.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if catch_up(&s).await {
                    n.notify_local();
                }
            }
        });
    }
    let ephemeral = Arc::new(Ephemeral::new(notifier.clone()));
    let wake = match config.cache.backend {
        CacheBackend::Embedded => None,
        CacheBackend::Redis => Some(
            pipeline::redis_wake(
                config,
                notifier.clone(),
                shared.then(|| store.clone()),
                ephemeral.clone(),
            )
            .await?,
        ),
    };
    // With a store no other instance writes, parsed push rules are kept until they change.
    let push_rules = Arc::new(PushRules::new(
        store.clone(),
        signing.server_name.clone(),
        !shared,
    ));
    let sequencer = Arc::new(
        Sequencer::new(store.clone(), signing.clone(), notifier.clone())
            .with_fetch(remote_events.clone())
            .with_push(push_rules.clone()),
    );
    let bus: Arc<dyn EventBus> = match config.bus.backend {
        BusBackend::Embedded => Arc::new(InProcessBus::new(sequencer, config.bus_shards)),
        BusBackend::Kafka => {
            if !shared || wake.is_none() {
                anyhow::bail!("[bus] backend = \"kafka\" needs [storage] backend = \"postgres\" and [cache] backend = \"redis\" (the instances share them)");
            }
            pipeline::kafka_bus(config, sequencer, store.clone(), notifier.clone()).await?
        }
    };
    let edu_sender = EduSender::new(
        store.clone(),
        store.clone(),
        notifier.clone(),
        signing.server_name.clone(),
    );
    let accounts = Arc::new(
        Accounts::new(store.clone(), server.clone(), shared)
            .with_federation_edus(Arc::new(edu_sender.clone()))
            .with_notifier(notifier.clone()),
    );
    let federation_sender = Arc::new(FederationSender::new(
        outbound.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        notifier.clone(),
        signing.server_name.clone(),
    ));
    let rooms = Arc::new(
        Rooms::new(
            store.clone(),
            store.clone(),
            bus.clone(),
            signing.clone(),
            server.clone(),
        )
        .with_remote(remote_events.clone()),
    );
    let stores = SyncStores {
        rooms: store.clone(),
        client: store.clone(),
        keys: store.clone(),
        stream: store.clone(),
        changes: store.changes(),
        connections: store.clone(),
    };
    let sync = Arc::new(
        Sync::new(
            stores,
            ephemeral.clone(),
            notifier.clone(),
            server.max_sync_timeout_ms,
        )
        .with_federation_edus(Arc::new(edu_sender.clone())),
    );
    let appservices = Arc::new(Appservices::new(registry, store.clone()));
    appservices
        .ensure_senders()
        .await
        .map_err(|e| anyhow::anyhow!("creating application service senders: {e}"))?;
    let pushers = Arc::new(Pushers::new(
        appservices.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        notifier.clone(),
        Backoff::default(),
    ));
    let hub = Arc::new(Hub::default());
    let data = Arc::new(
        ClientData::new(
            store.clone(),
            store.clone(),
            ephemeral.clone(),
            notifier.clone(),
        )
        .with_edu_sink(pushers.clone())
        .with_federation_edus(Arc::new(edu_sender.clone()))
        .with_push_rules(push_rules),
    );
    let keys = Arc::new(
        Keys::new(
            store.clone(),
            store.clone(),
            store.clone(),
            notifier.clone(),
        )
        .with_edu_sink(pushers.clone())
        .with_federation(KeysFederation {
            own: signing.server_name.clone(),
            remote: remote_events.clone(),
            edus: Arc::new(edu_sender.clone()),
        }),
    );
    let blobs: Arc<dyn sandcat_core::ports::MediaStore> = match config.media.backend {
        MediaBackend::Embedded => Arc::new(FsMediaStore::new(config.data_dir.join("media"))),
        MediaBackend::S3 => pipeline::s3_media(config).await?,
    };
    let media = Arc::new(
        sandcat_api::DEFAULT_AVATARS.iter().fold(
            Media::new(
                blobs,
                store.clone(),
                config.max_upload_bytes,
                signing.server_name.clone(),
            )
            .with_remote(outbound.clone()),
            |m, (id, png)| m.with_builtin(id, "image/png", png),
        ),
    );
    let openid = Arc::new(OpenId::new(
        store.clone(),
        store.clone(),
        signing.server_name.clone(),
    ));
    let identity: Arc<dyn IdentityServers> = Arc::new(IdentityClient::new(outbound.clone()));
    let third_party_invites = Arc::new(ThirdPartyInvites::new(
        rooms.clone(),
        identity.clone(),
        server.clone(),
    ));
    let federation = sandcat_federation::FederationState::new(
        signing.server_name.clone(),
        sandcat_federation::FederationServices {
            keys: server_keys.clone(),
            reads: Arc::new(ServerReads::new(store.clone(), store.clone())),
            inbound: Arc::new(Inbound::new(
                store.clone(),
                store.clone(),
                bus.clone(),
                server_keys,
                signing.clone(),
                store.clone(),
            )),
            data: data.clone(),
            e2ee: keys.clone(),
            media: media.clone(),
            rooms: rooms.clone(),
            openid: openid.clone(),
            third_party_invites: third_party_invites.clone(),
        },
        well_known,
        Limiter::new(
            config.federation.rate_limit_per_second,
            config.federation.rate_limit_burst,
        ),
    )
    .with_sender(federation_sender.clone());
    let inbox: Arc<dyn Inbox> = match config.inbox.backend {
        InboxBackend::Embedded => store.clone(),
        InboxBackend::Mongodb => pipeline::mongo_inbox(config).await?,
    };
    let inbox_watch = InboxWatch::default();
    let indexer = Arc::new(
        InboxIndexer::new(
            store.clone(),
            store.clone(),
            inbox.clone(),
            store.clone(),
            server.server_name.clone(),
        )
        .with_watch(inbox_watch.clone()),
    );
    let native = NativeState::new(
        server.clone(),
        accounts.clone(),
        rooms.clone(),
        data.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        notifier.clone(),
        Jwt::new(&jwt_secret(config)?),
        hub,
        mailer,
        media.clone(),
        inbox,
    )
    .with_inbox_watch(inbox_watch)
    .with_oauth(sandcat_api::oauth::OAuth::new(&config.oauth).map_err(anyhow::Error::msg)?)
    .with_rate_limit(config.rate_limit_per_second, config.rate_limit_burst);
    let metrics = Arc::new(Metrics::default());
    let previews = Arc::new(UrlPreviews::new(
        web_pages(config)?,
        media.clone(),
        server.server_name.clone(),
    ));
    let threepids = Arc::new(
        ThreePids::new(
            store.clone(),
            store.clone(),
            accounts.clone(),
            server.clone(),
            email::mailer(config, server.server_name.as_str())?,
            config.email.validation_lifetime_secs.saturating_mul(1000),
        )
        .with_identity_servers(identity),
    );
    let deactivation = Arc::new(Deactivation::new(
        accounts.clone(),
        rooms.clone(),
        store.clone(),
        threepids.clone(),
    ));
    let state = AppState::new(
        server.clone(),
        accounts.clone(),
        rooms,
        sync,
        data,
        keys,
        appservices,
        media,
        metrics.clone(),
        deactivation,
        openid,
        Arc::new(KeyBackup::new(store.clone())),
        Arc::new(ContentReports::new(
            store.clone(),
            store.clone(),
            store.clone(),
            server.clone(),
        )),
        Arc::new(Push::new(store.clone(), notifier.clone())),
        Arc::new(RegistrationGate::new(
            store.clone(),
            config.registration_requires_token,
        )),
        threepids,
        previews,
        third_party_invites,
    )
    .with_rate_limit(config.rate_limit_per_second, config.rate_limit_burst);
    let push_senders = Arc::new(
        PushSenders::new(
            Arc::new(
                Gateways::new(GatewayOptions {
                    allow_private: config.push.allow_private_gateways,
                    ..Default::default()
                })
                .map_err(|e| anyhow::anyhow!("the push gateway client: {e}"))?,
            ),
            store.clone(),
            store.clone(),
            store.clone(),
            store.clone(),
            notifier.clone(),
        )
        .with_give_up_after(Duration::from_secs(config.push.give_up_after_secs)),
    );

    let router = sandcat_client_api::router(state)
        .merge(sandcat_api::router(native.clone()))
        .merge(sandcat_federation::router(federation))
        .merge(Router::new().route("/health", get(|| async { "OK" })).route("/metrics", get(render_metrics)).with_state(metrics.clone()))
        .layer(axum::middleware::from_fn_with_state(metrics, observe))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(BODY_PIECE_TIMEOUT))
        .layer(axum::middleware::from_fn(time_limit))
        .layer(axum::middleware::from_fn(safe_content))
        .layer(axum::middleware::from_fn(head_limits))
        .layer(axum::middleware::from_fn_with_state(
            // The largest body an endpoint takes: an upload, with room for a form around it.
            (config.max_upload_bytes as u64).max(sandcat_client_api::ruma_wrapper::MAX_BODY as u64)
                + 64 * 1024,
            declared_size_limit,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            sandcat_client_api::ruma_wrapper::error_response(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                ruma::api::error::ErrorKind::Unknown,
                "internal server error".into(),
            )
        }))
        .layer(CorsLayer::permissive())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = sandcat_core::token::random_string(6);
            tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path(), user_id = tracing::field::Empty)
        }));

    let eph = ephemeral.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            eph.expire_typing();
        }
    });
    Ok(App {
        router,
        limits: listener::Limits {
            max_connections: config.max_connections,
            header_timeout: Duration::from_secs(config.header_timeout_secs.max(1)),
            ..Default::default()
        },
        accounts,
        bus,
        ephemeral,
        pushers,
        native,
        wake,
        store,
        indexer,
        notifier,
        federation_listener,
        federation_sender,
        push_senders,
    })
}

/// The TLS listener of `[federation] listen`, bound, if one is configured.
async fn federation_listener(
    config: &Config,
) -> Result<Option<(tokio::net::TcpListener, tokio_rustls::TlsAcceptor)>> {
    let f = &config.federation;
    if f.listen.is_empty() {
        return Ok(None);
    }
    let tls = tls::acceptor(&f.tls_certificate, &f.tls_private_key)?;
    let listener = tokio::net::TcpListener::bind(&f.listen)
        .await
        .with_context(|| format!("binding the federation listener to {}", f.listen))?;
    Ok(Some((listener, tls)))
}

/// Runs its closure when dropped.
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// Runs a background duty on one instance cluster-wide: whichever holds `role` runs it
/// (`start` returns what stops it); the others wait to take it over when that instance goes
/// away. With SQLite the one process always holds every role.
fn lead<S: FnOnce() + Send + 'static>(
    store: Arc<SqlStore>,
    role: &'static str,
    start: impl Fn() -> S + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match store.try_lead(role).await {
                Ok(Some(mut lead)) => {
                    tracing::info!(role, "this instance took the role");
                    // Stopped when the role is lost, and when this task is aborted.
                    let running = OnDrop(Some(start()));
                    while lead.alive().await {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    tracing::warn!(role, "lost the role");
                    drop(running);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(role, error = %e, "taking the role"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

async fn render_metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
}

async fn observe(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let res = next.run(req).await;
    m.observe(
        start.elapsed().as_micros() as u64,
        res.status().is_server_error(),
    );
    res
}

/// Serves until `shutdown` resolves, then drains requests in flight and the event bus.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let pushers = app.pushers.clone();
    let leading_pushers = lead(app.store.clone(), "appservice-pushers", move || {
        pushers.start(Duration::from_secs(2));
        let pushers = pushers.clone();
        move || pushers.stop()
    });
    let (indexer, notifier) = (app.indexer.clone(), app.notifier.clone());
    let leading_indexer = lead(app.store.clone(), "inbox-indexer", move || {
        let (indexer, notifier) = (indexer.clone(), notifier.clone());
        let task = tokio::spawn(async move { indexer.run(notifier).await });
        move || task.abort()
    });
    let sender = app.federation_sender.clone();
    let leading_sender = lead(app.store.clone(), "federation-sender", move || {
        sender.start();
        let sender = sender.clone();
        move || sender.stop()
    });
    let push_senders = app.push_senders.clone();
    let leading_push = lead(app.store.clone(), "push-senders", move || {
        push_senders.start();
        let push_senders = push_senders.clone();
        move || push_senders.stop()
    });
    let native = app.native.clone();
    let watching = tokio::spawn(async move {
        let n = &native;
        n.inbox_watch
            .follow(n.inbox.clone(), n.stream.clone(), n.notifier.clone())
            .await
    });
    // The federation listener stops with the main one.
    let (stopped, stop) = tokio::sync::watch::channel(false);
    let federation = app.federation_listener.map(|(l, tls)| {
        let (router, limits, mut stop) = (app.router.clone(), app.limits.clone(), stop.clone());
        tokio::spawn(async move {
            let stopping = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            listener::serve(l, router, &limits, Some(tls), stopping).await
        })
    });
    let shutdown = async move {
        shutdown.await;
        let _ = stopped.send(true);
    };
    listener::serve(listener, app.router, &app.limits, None, shutdown).await;
    if let Some(task) = federation {
        let _ = task.await;
    }
    watching.abort();
    leading_pushers.abort();
    leading_indexer.abort();
    leading_sender.abort();
    leading_push.abort();
    app.federation_sender.stop();
    app.push_senders.stop();
    app.pushers.stop();
    app.bus.shutdown().await;
    app.store.close().await;
    Ok(())
}

/// Longest a request may take, body included; longer than the longest `/sync` long-poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for the next piece of a request body.
const BODY_PIECE_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers a request that outlives [`REQUEST_TIMEOUT`] with a Matrix error.
async fn time_limit(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(res) => res,
        Err(_) => sandcat_client_api::ruma_wrapper::error_response(
            http::StatusCode::SERVICE_UNAVAILABLE,
            ruma::api::error::ErrorKind::Unknown,
            "the request took too long".into(),
        ),
    }
}

/// Longest request target (path and query) answered with more than a Matrix error.
const MAX_URI: usize = 8 * 1024;
/// Largest header block answered with more than a Matrix error. (Past hyper's own buffer,
/// about 400 KiB, the HTTP layer answers a bare 431 before any of this runs.)
const MAX_HEADERS: usize = 32 * 1024;

/// 414 and 431 with Matrix error bodies, as every other refusal.
async fn head_limits(req: Request, next: Next) -> Response {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI {
        return sandcat_client_api::ruma_wrapper::error_response(
            http::StatusCode::URI_TOO_LONG,
            ruma::api::error::ErrorKind::TooLarge,
            format!("request targets are at most {MAX_URI} bytes"),
        );
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers > MAX_HEADERS {
        return sandcat_client_api::ruma_wrapper::error_response(
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ruma::api::error::ErrorKind::TooLarge,
            format!("request headers are at most {MAX_HEADERS} bytes"),
        );
    }
    next.run(req).await
}

/// Served files never run as pages of this origin, and no response's type is guessed.
async fn safe_content(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let media = path.starts_with("/_matrix/media/")
        || path.starts_with("/_matrix/client/v1/media/")
        || path.contains("/file/get/")
        || path.contains("/file/avatar/get/");
    let mut res = next.run(req).await;
    let headers = res.headers_mut();
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    if media {
        headers.insert(
            http::header::CONTENT_SECURITY_POLICY,
            http::HeaderValue::from_static(
                "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';",
            ),
        );
    }
    res
}

/// Refuses, before reading it, a body declared larger than any endpoint takes.
async fn declared_size_limit(State(max): State<u64>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return sandcat_client_api::ruma_wrapper::error_response(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            ruma::api::error::ErrorKind::TooLarge,
            format!("request bodies are at most {max} bytes"),
        );
    }
    next.run(req).await
}
