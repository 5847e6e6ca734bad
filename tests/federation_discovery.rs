//! Server discovery over real DNS: a server named without a port (`chat.test`) has no
//! `.well-known` document and an SRV record (`_matrix-fed._tcp.chat.test`) on a DNS server
//! on loopback naming `localhost` and its port. A server that asks that DNS server finds it
//! there: its user joins a room by the other server's alias, and they talk both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{
    dns, enc,
    federation::{federating_as, federating_with, free_port, heard},
};
use serde_json::json;

#[tokio::test]
async fn a_server_is_found_through_its_srv_record() {
    let certs = tempfile::tempdir().unwrap();
    let port = free_port();
    let dns = dns::start(&[("_matrix-fed._tcp.chat.test", "localhost", port)]).await;
    let (a, _) = federating_with(certs.path(), move |c| {
        c.federation.dns_server = dns.to_string();
    })
    .await;
    let b = federating_as(
        certs.path(),
        tempfile::tempdir().unwrap(),
        "chat.test".into(),
        port,
        |_| {},
    )
    .await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    assert_eq!(bob.user_id, "@bob:chat.test");
    let room = bob
        .create_room(json!({ "preset": "public_chat", "room_alias_name": "hall" }))
        .await;

    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/join/{}", enc("#hall:chat.test")),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room.as_str());
    alice.send_text(&room, "t1", "found you").await;
    assert!(
        heard(&bob, &room, "found you").await,
        "chat.test never got the message"
    );
    bob.send_text(&room, "t1", "and I you").await;
    assert!(
        heard(&alice, &room, "and I you").await,
        "the answer never came back"
    );
}
