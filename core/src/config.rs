//! Settings the domain needs; the binary reads them from the config file and environment.

use ruma::{OwnedServerName, RoomVersionId};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub server_name: OwnedServerName,
    /// Whether `/register` is open to anyone.
    pub registration_enabled: bool,
    /// Room version used by `createRoom` when the client names none.
    pub default_room_version: RoomVersionId,
    /// Largest `limit` honoured on timelines and pagination.
    pub max_timeline_limit: usize,
    /// Upper bound of a `/sync` long-poll.
    pub max_sync_timeout_ms: u64,
    /// The public base URL clients are told in `/.well-known/matrix/client`.
    pub public_base_url: String,
    /// Whether `public_base_url` was configured (else it is derived from the listen address,
    /// and a request's own host says better where clients reach the server).
    pub public_base_url_configured: bool,
    /// Wrong passwords an account may get within `login_lockout_secs` before every login
    /// of it is refused until that window ends; 0 turns the lockout off.
    pub max_login_failures: u32,
    pub login_lockout_secs: u64,
    /// How long an access token handed out with a refresh token lives (`None`: until logout).
    /// Clients that do not ask for a refresh token get tokens that never expire.
    pub access_token_lifetime_ms: Option<u64>,
    /// The TURN servers offered for calls.
    pub turn: TurnServers,
    /// `/.well-known/matrix/support`, when configured.
    pub support: Option<serde_json::Value>,
    /// The single sign-on providers configured (`github`, `google`), offered as
    /// `m.login.sso`.
    pub sign_in_providers: Vec<String>,
}

/// TURN servers and the secret their credentials are made with (TURN REST credentials).
#[derive(Debug, Clone, Default)]
pub struct TurnServers {
    pub uris: Vec<String>,
    pub shared_secret: String,
    pub ttl_secs: u64,
}

impl ServerConfig {
    #[allow(clippy::expect_used)] // tests name valid servers
    pub fn for_tests(server_name: &str) -> Self {
        ServerConfig {
            server_name: server_name.try_into().expect("valid server name"),
            registration_enabled: true,
            default_room_version: RoomVersionId::V12,
            max_timeline_limit: 500,
            max_sync_timeout_ms: 60_000,
            public_base_url: format!("http://{server_name}"),
            public_base_url_configured: true,
            max_login_failures: 0,
            login_lockout_secs: 60,
            access_token_lifetime_ms: None,
            turn: TurnServers::default(),
            support: None,
            sign_in_providers: Vec::new(),
        }
    }

    /// The room versions this server creates and joins.
    pub fn supported_room_versions() -> [RoomVersionId; 3] {
        [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12]
    }
}
