//! Push: what the sequencer's push rule evaluation appends with each event, the unread counts
//! read from it (main timeline and threads, reset by unthreaded and threaded receipts), the
//! notification list, and pushers.

use ruma::{push::Ruleset, OwnedEventId, UserId};
use sandcat_core::ports::{
    Counts, PushFormat, PushStore, PusherRecord, Receipt, UnreadCounts, UserStore,
};

use super::*;

on_both_backends!(
    push_rules_decide_notifications_and_receipts_clear_them,
    pushers_are_kept_per_user_and_device
);

fn bob() -> ruma::OwnedUserId {
    user_id!("@bob:localhost").to_owned()
}

fn intent(
    sender: &UserId,
    kind: &str,
    key: Option<&str>,
    content: serde_json::Value,
) -> EventIntent {
    EventIntent::new(
        sender.to_owned(),
        kind.into(),
        key.map(str::to_owned),
        content,
    )
}

async fn send(bus: &InProcessBus, ev: EventIntent) -> (OwnedEventId, i64) {
    let stored = bus.submit(in_room(vec![ev])).await.unwrap();
    (stored[0].pdu.event_id.clone(), stored[0].pos)
}

async fn receipt(store: &SqlStore, thread: Option<&str>, event: &OwnedEventId) {
    store
        .set_receipt(&Receipt {
            room_id: room_id!("!room:localhost").to_owned(),
            user_id: bob(),
            receipt_type: "m.read".into(),
            thread_id: thread.map(str::to_owned),
            event_id: event.clone(),
            ts: 1,
            pos: 0,
        })
        .await
        .unwrap();
}

async fn unread(store: &SqlStore) -> UnreadCounts {
    store
        .count_unread(room_id!("!room:localhost"), &bob())
        .await
        .unwrap()
}

fn counts(notifications: u64, highlights: u64) -> Counts {
    Counts {
        notifications,
        highlights,
    }
}

async fn push_rules_decide_notifications_and_receipts_clear_them(db: Db) {
    let store = db.open().await;
    let bus = InProcessBus::new(sequencer(store.clone()), 2);
    bus.submit(create_batch()).await.unwrap();
    let alice = user_id!("@alice:localhost");
    let bob = bob();
    let invite = intent(
        alice,
        "m.room.member",
        Some(bob.as_str()),
        json!({ "membership": "invite" }),
    );
    send(&bus, invite).await;
    // The invite notified bob (`.m.rule.invite_for_me`); his join notifies no one.
    let invited = store.notifications(&bob, None, 10, false).await.unwrap();
    assert_eq!(invited.len(), 1);
    assert_eq!(invited[0].event.pdu.kind.to_string(), "m.room.member");
    let join = json!({ "membership": "join", "displayname": "Bobby" });
    send(
        &bus,
        intent(&bob, "m.room.member", Some(bob.as_str()), join),
    )
    .await;

    let (hello, _) = send(
        &bus,
        intent(alice, "m.room.message", None, json!({ "body": "hello" })),
    )
    .await;
    let mention = json!({ "body": "Bobby, look", "m.mentions": { "user_ids": [bob] } });
    let (look, _) = send(&bus, intent(alice, "m.room.message", None, mention)).await;
    let in_thread = json!({
        "body": "in a thread",
        "m.relates_to": { "rel_type": "m.thread", "event_id": hello },
    });
    let (reply, _) = send(&bus, intent(alice, "m.room.message", None, in_thread)).await;
    // Bob's own message notifies alice, not him.
    send(
        &bus,
        intent(&bob, "m.room.message", None, json!({ "body": "mine" })),
    )
    .await;

    let counted = unread(&store).await;
    assert_eq!(
        counted.main,
        counts(2, 1),
        "hello and the mention, not the invite before the join"
    );
    assert_eq!(counted.threads.get(&hello), Some(&counts(1, 0)));
    assert_eq!(counted.total(), counts(3, 1));
    let for_alice = store
        .count_unread(room_id!("!room:localhost"), alice)
        .await
        .unwrap();
    assert_eq!(for_alice.total(), counts(1, 0), "bob's message, for alice");

    // A receipt on the main timeline leaves the thread unread; one of the thread clears it.
    receipt(&store, Some("main"), &look).await;
    let counted = unread(&store).await;
    assert_eq!(counted.main, Counts::default());
    assert_eq!(counted.threads.get(&hello), Some(&counts(1, 0)));
    receipt(&store, Some(hello.as_str()), &reply).await;
    assert_eq!(unread(&store).await.total(), Counts::default());

    // The list: newest first, each read or not, highlights alone when asked.
    let listed = store.notifications(&bob, None, 10, false).await.unwrap();
    let ids: Vec<_> = listed
        .iter()
        .map(|n| n.event.pdu.event_id.clone())
        .collect();
    assert_eq!(ids.len(), 4, "with the invite");
    assert_eq!(&ids[..3], &[reply.clone(), look.clone(), hello.clone()]);
    assert!(listed.iter().all(|n| n.read));
    let highlights = store.notifications(&bob, None, 10, true).await.unwrap();
    assert_eq!(highlights.len(), 1);
    assert!(highlights[0].highlight && highlights[0].event.pdu.event_id == look);
    let older = store
        .notifications(&bob, Some(listed[1].event.pos), 10, false)
        .await
        .unwrap();
    assert_eq!(older[0].event.pdu.event_id, hello, "paged below a position");

    // A new message after an unthreaded receipt is unread, and gone from the counts once
    // redacted; a notification after a position is found for a pusher.
    let after = store.current_pos();
    let (late, _) = send(
        &bus,
        intent(alice, "m.room.message", None, json!({ "body": "late" })),
    )
    .await;
    assert_eq!(unread(&store).await.total(), counts(1, 0));
    let found = store
        .notifications_after(&bob, after, store.current_pos(), 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(!found[0].read && found[0].event.pdu.event_id == late);
    assert_eq!(store.unread_total(&bob).await.unwrap(), 1);
    let redaction = intent(alice, "m.room.redaction", None, json!({ "redacts": late }));
    send(&bus, redaction).await;
    assert_eq!(unread(&store).await.total(), Counts::default());

    // Rules the user turned off notify no more.
    let mut rules = Ruleset::server_default(&bob);
    rules
        .set_enabled(ruma::push::RuleKind::Override, ".m.rule.master", true)
        .unwrap();
    store
        .set_account_data(&bob, None, "m.push_rules", &json!({ "global": rules }))
        .await
        .unwrap();
    send(
        &bus,
        intent(alice, "m.room.message", None, json!({ "body": "muted" })),
    )
    .await;
    assert_eq!(unread(&store).await.total(), Counts::default());

    // Old notifications are forgotten.
    assert!(
        store
            .forget_notifications(sandcat_core::now_ms() + 1)
            .await
            .unwrap()
            > 0
    );
    assert!(store
        .notifications(&bob, None, 10, false)
        .await
        .unwrap()
        .is_empty());
}

fn pusher(user: &UserId, device: &str, pushkey: &str) -> PusherRecord {
    PusherRecord {
        user_id: user.to_owned(),
        device_id: Some(device.into()),
        app_id: "org.example.app".into(),
        pushkey: pushkey.into(),
        url: "https://push.example.org/_matrix/push/v1/notify".into(),
        format: PushFormat::EventIdOnly,
        body: json!({ "pushkey": pushkey }),
        created_ts: 7,
    }
}

async fn pushers_are_kept_per_user_and_device(db: Db) {
    let store = db.open().await;
    let (alice, bob) = (user_id!("@alice:localhost"), bob());
    store
        .set_pusher(&pusher(alice, "A1", "k1"), false)
        .await
        .unwrap();
    store
        .set_pusher(&pusher(alice, "A2", "k2"), false)
        .await
        .unwrap();
    assert_eq!(store.pushers(alice).await.unwrap().len(), 2);
    // Replaced by its app id and push key.
    let mut again = pusher(alice, "A1", "k1");
    again.format = PushFormat::Full;
    store.set_pusher(&again, false).await.unwrap();
    let kept = store.pushers(alice).await.unwrap();
    assert_eq!(kept.len(), 2);
    assert!(kept.contains(&again));
    // Another user's pusher with the same key takes it over, unless appended.
    store
        .set_pusher(&pusher(&bob, "B1", "k2"), true)
        .await
        .unwrap();
    assert_eq!(store.all_pushers().await.unwrap().len(), 3);
    store
        .set_pusher(&pusher(&bob, "B1", "k2"), false)
        .await
        .unwrap();
    assert_eq!(store.pushers(alice).await.unwrap().len(), 1);
    // A pusher goes with its device, and when a gateway rejects its key.
    store.add_device(alice, "A1", None).await.unwrap();
    store
        .delete_devices(alice, &["A1".to_owned()])
        .await
        .unwrap();
    assert!(store.pushers(alice).await.unwrap().is_empty());
    store
        .delete_pusher(None, "org.example.app", "k2")
        .await
        .unwrap();
    assert!(store.all_pushers().await.unwrap().is_empty());
}
