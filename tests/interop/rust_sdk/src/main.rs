//! matrix-rust-sdk, the SDK under Element X, against a running Sandcat: two users sign in as
//! Element X does (simplified sliding sync discovered from `/versions`, the SDK's
//! `SyncService` driving the room list and the encryption sync), and check what its users
//! see: the room list fills with named rooms, an invite appears and is accepted, a room's
//! timeline paginates back to its first message, unread counts rise with messages and fall
//! with a read receipt, an encrypted direct chat decrypts both ways, cross-signing is set up
//! (and replaced with user-interactive auth), and recovery backs the room keys up so that a
//! new device reads the encrypted history.
//!
//! Usage: `sandcat-rust-sdk-interop http://127.0.0.1:PORT`. Exits non-zero on the first
//! failed check, naming it.
#![recursion_limit = "256"]

use std::{future::Future, time::Duration};

use anyhow::{anyhow, bail, Context, Result};
use matrix_sdk::{
    encryption::{BackupDownloadStrategy, CrossSigningResetAuthType, EncryptionSettings},
    ruma::{
        api::client::receipt::create_receipt::v3::ReceiptType,
        api::client::{
            room::create_room::v3::Request as CreateRoom,
            uiaa::{AuthData, MatrixUserIdentifier, Password, UserIdentifier},
        },
        events::room::message::RoomMessageEventContent,
        OwnedRoomId, RoomId,
    },
    sliding_sync::{Version, VersionBuilder},
    Client, RoomState,
};
use matrix_sdk_ui::{
    room_list_service::RoomListLoadingState,
    sync_service::SyncService,
    timeline::{EncryptedMessage, RoomExt},
};
use serde_json::json;

/// How long a check waits for what it expects.
const PATIENCE: Duration = Duration::from_secs(30);

struct User {
    name: String,
    client: Client,
    sync: SyncService,
    _store: tempfile::TempDir,
}

async fn register(base: &str, name: &str) -> Result<()> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/_matrix/client/v3/register"))
        .json(&json!({ "username": name, "password": format!("pw-{name}"), "auth": { "type": "m.login.dummy" } }))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("register {name}: {} {}", resp.status(), resp.text().await?);
    }
    Ok(())
}

/// A new device of `name`'s, signed in as Element X signs in, its sync running.
async fn sign_in(base: &str, name: &str) -> Result<User> {
    let store = tempfile::tempdir()?;
    let client = Client::builder()
        .homeserver_url(base)
        .sliding_sync_version_builder(VersionBuilder::DiscoverNative)
        .with_encryption_settings(EncryptionSettings {
            // Room keys come from the backup as soon as its key does (from secret storage).
            backup_download_strategy: BackupDownloadStrategy::OneShot,
            ..Default::default()
        })
        .sqlite_store(store.path(), None)
        .build()
        .await
        .context("the server must offer simplified sliding sync in /versions")?;
    client
        .matrix_auth()
        .login_username(name, &format!("pw-{name}"))
        .initial_device_display_name("rust-sdk interop")
        .send()
        .await?;
    if !matches!(client.sliding_sync_version(), Version::Native) {
        bail!("{name}: the SDK did not pick simplified sliding sync");
    }
    client.event_cache().subscribe()?;
    let sync = SyncService::builder(client.clone()).build().await?;
    sync.start().await;
    Ok(User {
        name: name.to_owned(),
        client,
        sync,
        _store: store,
    })
}

/// Polls `check` until it answers, or fails naming `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            println!("ok: {what}");
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("not seen within {PATIENCE:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The message bodies a user's timeline of a room shows, oldest first.
async fn bodies(user: &User, room_id: &RoomId) -> Vec<String> {
    let Some(room) = user.client.get_room(room_id) else {
        return Vec::new();
    };
    let Ok(timeline) = room.timeline().await else {
        return Vec::new();
    };
    timeline
        .items()
        .await
        .iter()
        .filter_map(|item| {
            let event = item.as_event()?;
            Some(event.content().as_message()?.body().to_owned())
        })
        .collect()
}

/// The message bodies of a room's timeline once what could not be decrypted was tried again,
/// as Element X's timeline does when room keys arrive (here: from the key backup).
async fn decrypted_bodies(user: &User, room_id: &RoomId) -> Vec<String> {
    let Some(room) = user.client.get_room(room_id) else {
        return Vec::new();
    };
    let Ok(timeline) = room.timeline().await else {
        return Vec::new();
    };
    // As a user opening the room and scrolling up: a new device's sync brings a room's
    // latest event only, and the message may be before it.
    let _ = timeline.paginate_backwards(20).await;
    let sessions: Vec<String> = timeline
        .items()
        .await
        .iter()
        .filter_map(
            |item| match item.as_event()?.content().as_unable_to_decrypt()? {
                EncryptedMessage::MegolmV1AesSha2 { session_id, .. } => Some(session_id.clone()),
                _ => None,
            },
        )
        .collect();
    if !sessions.is_empty() {
        timeline.retry_decryption(sessions).await;
    }
    timeline
        .items()
        .await
        .iter()
        .filter_map(|item| Some(item.as_event()?.content().as_message()?.body().to_owned()))
        .collect()
}

async fn named_room(user: &User, name: &str) -> Result<OwnedRoomId> {
    let mut request = CreateRoom::new();
    request.name = Some(name.to_owned());
    Ok(user.client.create_room(request).await?.room_id().to_owned())
}

async fn send(user: &User, room_id: &RoomId, body: &str) -> Result<()> {
    let room = user
        .client
        .get_room(room_id)
        .ok_or_else(|| anyhow!("{} has no room {room_id}", user.name))?;
    room.send(RoomMessageEventContent::text_plain(body)).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let base = std::env::args()
        .nth(1)
        .context("usage: sandcat-rust-sdk-interop BASE_URL")?;
    let suffix = std::process::id();
    let (alice_name, bob_name) = (format!("rsalice{suffix}"), format!("rsbob{suffix}"));
    register(&base, &alice_name).await?;
    register(&base, &bob_name).await?;
    let alice = sign_in(&base, &alice_name).await?;
    let bob = sign_in(&base, &bob_name).await?;

    // The room list fills with the user's rooms, named.
    let mut mine = Vec::new();
    for i in 0..3 {
        mine.push((
            named_room(&alice, &format!("room {i}")).await?,
            format!("room {i}"),
        ));
    }
    for (id, name) in &mine {
        eventually(&format!("the room list shows {name}"), || async {
            let room = alice.client.get_room(id)?;
            (room.name().as_deref() == Some(name.as_str())).then_some(())
        })
        .await?;
    }
    let list = alice.sync.room_list_service().all_rooms().await?;
    eventually("the room list counts alice's three rooms", || async {
        match list.loading_state().get() {
            RoomListLoadingState::Loaded {
                maximum_number_of_rooms: Some(n),
            } if n >= 3 => Some(()),
            _ => None,
        }
    })
    .await?;

    // An invite appears in the list; accepting it joins.
    let shared = named_room(&bob, "bob's room").await?;
    for i in 0..30 {
        send(&bob, &shared, &format!("history {i}")).await?;
    }
    bob.client
        .get_room(&shared)
        .context("bob's room")?
        .invite_user_by_id(alice.client.user_id().context("alice")?)
        .await?;
    let invited = eventually("alice sees bob's invite", || async {
        let room = alice.client.get_room(&shared)?;
        (room.state() == RoomState::Invited).then_some(room)
    })
    .await?;
    invited.join().await?;
    eventually("alice is joined", || async {
        let room = alice.client.get_room(&shared)?;
        (room.state() == RoomState::Joined).then_some(())
    })
    .await?;

    // The timeline paginates back to the first message.
    let room = alice.client.get_room(&shared).context("shared room")?;
    let timeline = room.timeline().await?;
    eventually(
        "alice's timeline paginates back to bob's first message",
        || async {
            let start = timeline.paginate_backwards(20).await.ok()?;
            let seen = bodies(&alice, &shared).await;
            (start || seen.iter().any(|b| b == "history 0"))
                .then_some(())
                .filter(|_| seen.iter().any(|b| b == "history 0"))
        },
    )
    .await?;

    // Unread counts rise with bob's messages and fall with alice's read receipt.
    send(&bob, &shared, "unread one").await?;
    send(&bob, &shared, "unread two").await?;
    // The receipt goes to the last event of *this* timeline: wait until it holds bob's
    // second message (another timeline of the room may see it first).
    eventually("alice's room shows unread messages", || async {
        let room = alice.client.get_room(&shared)?;
        let latest = timeline.items().await.iter().rev().find_map(|item| {
            let message = item.as_event()?.content().as_message()?.body().to_owned();
            Some(message)
        });
        (room.unread_notification_counts().notification_count > 0
            && latest.as_deref() == Some("unread two"))
        .then_some(())
    })
    .await?;
    if !timeline.mark_as_read(ReceiptType::Read).await? {
        bail!("alice's timeline had nothing to mark as read");
    }
    eventually("the read receipt clears alice's unread count", || async {
        let room = alice.client.get_room(&shared)?;
        (room.unread_notification_counts().notification_count == 0).then_some(())
    })
    .await?;

    // An encrypted direct chat, started as Element X starts one, decrypts both ways.
    let dm = alice
        .client
        .create_dm(bob.client.user_id().context("bob")?)
        .await?;
    let dm_id = dm.room_id().to_owned();
    let bobs = eventually("bob sees the DM invite", || async {
        let room = bob.client.get_room(&dm_id)?;
        (room.state() == RoomState::Invited).then_some(room)
    })
    .await?;
    bobs.join().await?;
    eventually("alice sees bob join", || async {
        let room = alice.client.get_room(&dm_id)?;
        (room.joined_members_count() == 2).then_some(())
    })
    .await?;
    if !dm.latest_encryption_state().await?.is_encrypted() {
        bail!("the DM is not encrypted");
    }
    send(&alice, &dm_id, "secret from alice").await?;
    eventually("bob decrypts alice's message", || async {
        bodies(&bob, &dm_id)
            .await
            .iter()
            .any(|b| b == "secret from alice")
            .then_some(())
    })
    .await?;
    send(&bob, &dm_id, "secret from bob").await?;
    eventually("alice decrypts bob's answer", || async {
        bodies(&alice, &dm_id)
            .await
            .iter()
            .any(|b| b == "secret from bob")
            .then_some(())
    })
    .await?;

    // Cross-signing: the first keys need no password; replacing them asks for it (UIA).
    let encryption = alice.client.encryption();
    encryption.bootstrap_cross_signing(None).await?;
    let handle = encryption.reset_cross_signing().await?.ok_or_else(|| {
        anyhow!("new cross-signing keys replaced the old ones without a password")
    })?;
    let CrossSigningResetAuthType::Uiaa(uiaa) = handle.auth_type() else {
        bail!("replacing cross-signing keys asked for something else than UIA");
    };
    let mut password = Password::new(
        UserIdentifier::Matrix(MatrixUserIdentifier::new(alice.name.clone())),
        format!("pw-{}", alice.name),
    );
    password.session = uiaa.session.clone();
    handle.auth(Some(AuthData::Password(password))).await?;
    println!("ok: cross-signing bootstrapped, replaced with user-interactive auth");

    // Recovery as Element X sets it up: a key backup holding the room keys, its key in
    // secret storage; a new device restores both and reads the encrypted history.
    let recovery_key = encryption
        .recovery()
        .enable()
        .wait_for_backups_to_upload()
        .await?;
    println!("ok: key backup created and the room keys uploaded");
    let again = sign_in(&base, &alice.name).await?;
    again
        .client
        .encryption()
        .recovery()
        .recover(&recovery_key)
        .await?;
    eventually(
        "alice's new device decrypts the DM from the key backup",
        || async {
            // As Element X does on a message it cannot decrypt: fetch the room's keys from
            // the backup (the download that recovery starts may not have reached it yet).
            let _ = again
                .client
                .encryption()
                .backups()
                .download_room_keys_for_room(&dm_id)
                .await;
            decrypted_bodies(&again, &dm_id)
                .await
                .iter()
                .any(|b| b == "secret from bob")
                .then_some(())
        },
    )
    .await?;

    again.sync.stop().await;
    alice.sync.stop().await;
    bob.sync.stop().await;
    println!("matrix-rust-sdk interop: all checks passed");
    Ok(())
}
