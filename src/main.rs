//! `sandcat`: a Matrix homeserver that also serves Sandcat clients.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sandcat::Config;
use sandcat_core::{ports::Reported, services::registration_tokens::NewToken};

/// mimalloc returns freed memory to the system; glibc's malloc keeps the 19 MiB blocks of each
/// argon2 hash in its heap (its mmap threshold grows after the first), so RSS climbed by
/// hundreds of megabytes under registration load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `arena_eager_commit` and `purge_delay` (indices 4 and 15 of `mi_option_e` in
/// mimalloc 2 and 3).
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
const PURGE_DELAY_MS: std::ffi::c_long = 3;

/// On Linux mimalloc commits its arenas eagerly by default; measured on the idle server, that
/// is 17 MB of anonymous memory where 5 MB are used with it off (idle RSS of the default build
/// 36–37 → 25.5 MB, of the embedded-only build 32 → 21 MB). It is
/// set before `main`, because the runtime allocates before `main`'s first line and the first
/// arena is made at the first allocation.
///
/// Freed pages go back to the system after 3 ms instead of 10 (arenas: 30 ms instead of 100).
/// Measured back to back on the release build: RSS after the send benchmark 66–69 → 57–60 MB,
/// send rate the same within noise (1,044–1,396 events/s before, 1,127–1,450 after), the
/// repeated initial sync of 200 rooms too (72–98 ms before, 81–99 ms after). Purging at once
/// (0 ms) saved no more and made that sync 10–20 % slower (92–107 ms): its buffers are freed
/// and allocated again within milliseconds, and each purge costs a fault to reuse the page.
///
/// `MIMALLOC_ARENA_EAGER_COMMIT` and `MIMALLOC_PURGE_DELAY` in the environment still win.
#[ctor::ctor(unsafe)]
fn allocator_options() {
    // Nothing here may allocate: that would make the first arena with the default.
    extern "C" {
        fn getenv(name: *const std::ffi::c_char) -> *mut std::ffi::c_char;
    }
    // SAFETY: a NUL-terminated name; getenv only reads the environment, which nothing else
    // changes this early.
    unsafe {
        if getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        }
        if getenv(c"MIMALLOC_PURGE_DELAY".as_ptr()).is_null() {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

#[derive(Parser)]
#[command(name = "sandcat", version, about, after_help = ENV_HELP)]
struct Cli {
    /// Config file (TOML). Every key can also be set with SANDCAT_<KEY>; see sandcat.example.toml.
    #[arg(long, short, env = "SANDCAT_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

const ENV_HELP: &str = "Environment overrides: SANDCAT_SERVER_NAME, SANDCAT_LISTEN, SANDCAT_DATA_DIR, SANDCAT_PUBLIC_BASE_URL, SANDCAT_REGISTRATION_ENABLED, SANDCAT_REGISTRATION_REQUIRES_TOKEN, SANDCAT_DEFAULT_ROOM_VERSION, SANDCAT_LOG, SANDCAT_BUS_SHARDS, SANDCAT_RATE_LIMIT_PER_SECOND, SANDCAT_RATE_LIMIT_BURST, SANDCAT_APPSERVICE_DIR, SANDCAT_JWT_SECRET, SANDCAT_MAX_UPLOAD_BYTES, SANDCAT_MEDIA_BACKEND, SANDCAT_MEDIA_S3_ENDPOINT, SANDCAT_MEDIA_S3_REGION, SANDCAT_MEDIA_S3_BUCKET, SANDCAT_MEDIA_S3_ACCESS_KEY, SANDCAT_MEDIA_S3_SECRET_KEY, SANDCAT_STORAGE_BACKEND, SANDCAT_STORAGE_URL, SANDCAT_STORAGE_MAX_CONNECTIONS, SANDCAT_BUS_BACKEND, SANDCAT_BUS_BROKERS, SANDCAT_BUS_TOPIC, SANDCAT_BUS_PARTITIONS, SANDCAT_BUS_GROUP, SANDCAT_CACHE_BACKEND, SANDCAT_CACHE_URL, SANDCAT_CACHE_PREFIX, SANDCAT_INBOX_BACKEND, SANDCAT_INBOX_URL, SANDCAT_INBOX_DATABASE, SANDCAT_FEDERATION_WELL_KNOWN_SERVER, SANDCAT_PUSH_ALLOW_PRIVATE_GATEWAYS";

#[derive(Subcommand)]
enum Command {
    /// Run the homeserver (the default).
    Serve,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage application services (bridges and bots).
    Appservice {
        #[command(subcommand)]
        command: AppserviceCommand,
    },
    /// Create the database and apply migrations, then exit.
    Migrate,
    /// Manage the server's signing key (`<data_dir>/signing.key`).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Manage registration tokens (for `registration_requires_token`).
    RegistrationToken {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the latest reports users made of events, rooms and users, newest first, one
    /// JSON object a line.
    Reports {
        /// How many at most.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it.
    Create {
        /// The token (1 to 64 of A-Z a-z 0-9 . _ ~ -); a random one when omitted.
        #[arg(long)]
        token: Option<String>,
        /// How many registrations it allows; any number when omitted.
        #[arg(long)]
        uses: Option<u64>,
        /// How long it works, in seconds; for ever when omitted.
        #[arg(long)]
        expires_in_secs: Option<u64>,
    },
    /// List the tokens, one JSON object a line.
    List,
    /// Delete a token.
    Delete { token: String },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Replace the signing key by a new one with a new version. The old key stays published
    /// as an old key (expired now), so other servers still check what it signed. Restart every
    /// instance afterwards: each signs with the key it started with.
    Rotate,
}

#[derive(Subcommand)]
enum AppserviceCommand {
    /// Validate a registration file and add it to the registration directory; a running
    /// server picks it up within seconds.
    Register {
        /// The registration file (YAML).
        file: PathBuf,
    },
    /// List the registered application services.
    List,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user with a password.
    Create {
        /// The localpart (`alice` for `@alice:server`).
        username: String,
        /// The password; read from SANDCAT_PASSWORD when omitted.
        #[arg(long, env = "SANDCAT_PASSWORD")]
        password: String,
    },
    /// Make a user a server administrator (who may suspend and lock accounts).
    Admin {
        /// The localpart or user id.
        username: String,
        /// Make the user no longer an administrator.
        #[arg(long)]
        revoke: bool,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let path = cli.config.clone().or_else(|| {
        let default = PathBuf::from("sandcat.toml");
        default.exists().then_some(default)
    });
    let config = Config::load(path.as_deref())?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = sandcat::build(&config).await?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            tracing::info!(listen = %config.listen, server_name = %config.server_name, "sandcat is listening");
            sandcat::serve(app, listener, shutdown_signal()).await?;
            tracing::info!("stopped");
        }
        Command::User {
            command: UserCommand::Create { username, password },
        } => {
            let app = sandcat::build(&offline(&config)).await?;
            let user_id = app
                .accounts
                .create_user(&username, Some(&password))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created {user_id}");
        }
        Command::User {
            command: UserCommand::Admin { username, revoke },
        } => {
            let user_id = sandcat::set_admin(&offline(&config), &username, !revoke).await?;
            match revoke {
                false => println!("{user_id} is a server administrator"),
                true => println!("{user_id} is no longer a server administrator"),
            }
        }
        Command::Appservice {
            command: AppserviceCommand::Register { file },
        } => {
            let dir = config.appservice_dir();
            let server_name = sandcat::server_name(&config)?;
            let path = sandcat_appservice::registry::register_file(&dir, &file, &server_name)?;
            println!("registered: {}", path.display());
        }
        Command::Appservice {
            command: AppserviceCommand::List,
        } => {
            let server_name = sandcat::server_name(&config)?;
            for a in sandcat_appservice::registry::scan_dir(&config.appservice_dir(), &server_name)?
            {
                println!(
                    "{}\t{}\t{}",
                    a.id(),
                    a.sender,
                    a.registration.url.as_deref().unwrap_or("-")
                );
            }
        }
        Command::Key {
            command: KeyCommand::Rotate,
        } => {
            let (old, new) = sandcat::rotate_signing_key(&config).await?;
            println!(
                "signing key rotated: {old} -> {new}; restart every instance to sign with {new}"
            );
        }
        Command::RegistrationToken { command } => {
            let tokens = sandcat::registration_tokens(&config).await?;
            let fail = |e: sandcat_core::Error| anyhow::anyhow!("{e}");
            match command {
                TokenCommand::Create {
                    token,
                    uses,
                    expires_in_secs,
                } => {
                    let new = NewToken {
                        token,
                        uses_allowed: uses,
                        lifetime_ms: expires_in_secs.map(|s| s.saturating_mul(1000)),
                    };
                    println!("{}", tokens.create(new).await.map_err(fail)?.token);
                }
                TokenCommand::List => {
                    for t in tokens.list().await.map_err(fail)? {
                        println!(
                            "{}",
                            serde_json::json!({
                                "token": t.token,
                                "uses_allowed": t.uses_allowed,
                                "completed": t.completed,
                                "expiry_time": t.expiry_time,
                                "valid": t.is_valid(sandcat_core::now_ms()),
                            })
                        );
                    }
                }
                TokenCommand::Delete { token } => {
                    if !tokens.delete(&token).await.map_err(fail)? {
                        anyhow::bail!("no token {token}");
                    }
                    println!("deleted {token}");
                }
            }
        }
        Command::Reports { limit } => {
            for r in sandcat::latest_reports(&offline(&config), limit).await? {
                let (room, event, user) = match &r.subject {
                    Reported::Event(room, event) => {
                        (Some(room.as_str()), Some(event.as_str()), None)
                    }
                    Reported::Room(room) => (Some(room.as_str()), None, None),
                    Reported::User(user) => (None, None, Some(user.as_str())),
                };
                let line = serde_json::json!({
                    "reporter": r.reporter, "room_id": room, "event_id": event,
                    "user_id": user, "reason": r.reason, "received_ts": r.received_ms,
                });
                println!("{line}");
            }
        }
        Command::Migrate => {
            sandcat::build(&offline(&config)).await?;
            match config.storage.backend {
                sandcat::StorageBackend::Postgres => {
                    println!("database ready ([storage] postgres)")
                }
                sandcat::StorageBackend::Embedded => {
                    println!("database ready in {}", config.data_dir.display())
                }
            }
        }
    }
    Ok(())
}

/// The configuration for a command that does not serve: it must not join the sequencers'
/// consumer group of a running cluster (that would move rooms to a process about to exit).
fn offline(config: &Config) -> Config {
    let mut c = config.clone();
    c.bus.backend = sandcat::BusBackend::Embedded;
    c
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining requests and the event bus");
}
