//! The one error type of the domain. Each variant maps to a Matrix error code in the protocol
//! crates; internal causes are logged there and never shown to clients.

/// Matrix-level error codes that the domain can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorCode {
    Forbidden,
    NotFound,
    BadJson,
    NotJson,
    InvalidParam,
    MissingParam,
    UnknownToken,
    /// An access token that expired: the client refreshes it (`soft_logout`), its session
    /// lives on.
    ExpiredToken,
    MissingToken,
    UserInUse,
    InvalidUsername,
    Exclusive,
    LimitExceeded,
    TooLarge,
    Unrecognized,
    GuestAccessForbidden,
    RoomInUse,
    BadState,
    UnsupportedRoomVersion,
    UserDeactivated,
    /// An administrator suspended the account: it may read but not add (403).
    UserSuspended,
    /// An administrator locked the account: nothing but logging out (401, `soft_logout`).
    UserLocked,
    BadAlias,
    Unauthorized,
    /// An application service call: no url, no answer in time, not reachable, error status.
    UrlNotSet,
    ConnectionTimeout,
    ConnectionFailed,
    BadStatus,
    CannotOverwriteMedia,
    /// A resident server cannot tell whether the user meets a restricted room's allow list:
    /// it is in none of the rooms the list names.
    UnableToAuthorizeJoin,
    /// A resident server has no user who may vouch for a restricted join.
    UnableToGrantJoin,
    /// A sliding-sync `pos` this server no longer keeps (or never made): the client starts
    /// the connection again.
    UnknownPos,
    /// An address another account has (or this one, on registration).
    ThreepidInUse,
    /// An address no account has.
    ThreepidNotFound,
    /// An address whose validation session is unknown, not validated yet, or expired.
    ThreepidAuthFailed,
    /// A medium this server does not validate (phone numbers; email without a mail relay).
    ThreepidMediumNotSupported,
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error the client caused and may read.
    #[error("{code:?}: {message}")]
    Matrix { code: ErrorCode, message: String },
    /// A backend failed; the cause is logged, the client sees `M_UNKNOWN`.
    #[error("storage: {0}")]
    Storage(String),
    /// Another sequencer appended to the room first (a stale head after a rebalance, or two
    /// instances sequencing one room): the batch is rebuilt on the new head.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The room is of a version the asking server does not speak (`make_join`, `make_knock`):
    /// `M_INCOMPATIBLE_ROOM_VERSION`, naming the version.
    #[error("the room is of version {0}, which the asking server does not speak")]
    IncompatibleRoomVersion(ruma::RoomVersionId),
    /// Keys sent to a backup version that is not the current one:
    /// `M_WRONG_ROOM_KEYS_VERSION`, naming the current one.
    #[error("the backup version is not the current one, {0} is")]
    WrongRoomKeysVersion(String),
    /// A bug or an impossible state; the client sees `M_UNKNOWN`.
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error with its causes, `outer: inner: …` (HTTP clients hide why a connection failed).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

impl Error {
    pub fn matrix(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Matrix {
            code,
            message: message.into(),
        }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::matrix(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::matrix(ErrorCode::NotFound, message)
    }
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::matrix(ErrorCode::InvalidParam, message)
    }
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::matrix(ErrorCode::BadJson, message)
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Error::Internal(message.to_string())
    }
    pub fn storage(message: impl std::fmt::Display) -> Self {
        Error::Storage(message.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(format!("json: {e}"))
    }
}
