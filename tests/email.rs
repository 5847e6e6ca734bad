//! Email addresses (3PIDs) through a real SMTP server in the test's process: validation by
//! the mailed link or by posting the mailed token, adding, listing and removing addresses,
//! registering with one, resetting a forgotten password, signing in by address (Matrix and
//! Sandcat), deactivation freeing an address, and what is refused (phone numbers, servers
//! without a mail relay, bad addresses and links). Runs on the embedded profile and, with
//! `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{smtp::Mailbox, Client, Server};
use serde_json::{json, Value};

async fn start(mailbox: &Mailbox) -> Server {
    let port = mailbox.port;
    Server::start_with(move |c| {
        c.email.smtp_host = "127.0.0.1".into();
        c.email.smtp_port = port;
        c.email.smtp_security = sandcat::config::SmtpSecurity::None;
    })
    .await
}

async fn request_token(
    c: &Client,
    path: &str,
    secret: &str,
    email: &str,
    attempt: u64,
) -> (u16, Value) {
    c.post(
        &format!("/_matrix/client/v3/{path}/email/requestToken"),
        json!({ "client_secret": secret, "email": email, "send_attempt": attempt }),
    )
    .await
}

fn password_auth(c: &Client, password: &str) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": c.user_id },
        "password": password,
    })
}

async fn add(c: &Client, sid: &str, secret: &str, password: &str) -> (u16, Value) {
    c.post(
        "/_matrix/client/v3/account/3pid/add",
        json!({ "sid": sid, "client_secret": secret, "auth": password_auth(c, password) }),
    )
    .await
}

async fn addresses(c: &Client) -> Vec<String> {
    let (s, b) = c.get("/_matrix/client/v3/account/3pid").await;
    assert_eq!(s, 200, "{b}");
    b["threepids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["medium"], "email");
            assert!(t["validated_at"].as_u64().unwrap() > 0);
            assert!(t["added_at"].as_u64().unwrap() > 0);
            t["address"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn login_by_email(srv: &Server, email: &str, password: &str) -> (u16, Value) {
    srv.anon()
        .post(
            "/_matrix/client/v3/login",
            json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.thirdparty", "medium": "email", "address": email },
                "password": password,
            }),
        )
        .await
}

/// Follows a link without following redirects: the status and the `Location`.
async fn follow(link: &str) -> (u16, Option<String>, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http.get(link).send().await.unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (status, location, res.text().await.unwrap())
}

#[tokio::test]
async fn an_address_joins_the_account_once_the_mailed_link_is_followed() {
    let mailbox = Mailbox::start();
    let srv = start(&mailbox).await;
    let alice = srv.register("alice").await;
    let (s, caps) = alice.get("/_matrix/client/v3/capabilities").await;
    assert_eq!(s, 200);
    assert_eq!(caps["capabilities"]["m.3pid_changes"]["enabled"], true);

    // Asked in mixed case: the address is kept in lower case.
    let (s, b) = request_token(&alice, "account/3pid", "secret-a1", "Alice@Example.ORG", 1).await;
    assert_eq!(s, 200, "{b}");
    let sid = b["sid"].as_str().unwrap().to_owned();
    assert!(b["submit_url"].as_str().unwrap().starts_with(&srv.base));
    let mail = mailbox.nth("alice@example.org", 1).await;
    assert!(
        mail.text.contains("Subject: Confirm your email address"),
        "{}",
        mail.text
    );
    let link = mail.link();
    assert!(
        link.starts_with(&format!("{}/_sandcat/email/validate?", srv.base)),
        "{link}"
    );

    // The same attempt again mails nothing and answers the same session.
    let (s, again) =
        request_token(&alice, "account/3pid", "secret-a1", "alice@example.org", 1).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["sid"], sid.as_str());

    // Before the link is followed the address cannot be added; a wrong password neither.
    let (s, b) = add(&alice, &sid, "secret-a1", "pw-alice").await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (403, Some("M_THREEPID_AUTH_FAILED")),
        "{b}"
    );
    let (s, b) = add(&alice, &sid, "secret-a1", "wrong").await;
    assert_eq!(s, 401, "{b}");
    assert_eq!(mailbox.count("alice@example.org"), 1);

    // A link with a wrong token does not validate.
    let (s, _, page) = follow(&link.replace("token=", "token=x")).await;
    assert_eq!(s, 400, "{page}");
    let (s, _, page) = follow(&link).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("confirmed"), "{page}");

    let (s, b) = add(&alice, &sid, "secret-a1", "pw-alice").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(addresses(&alice).await, vec!["alice@example.org"]);
    // The session is used up.
    let (s, b) = add(&alice, &sid, "secret-a1", "pw-alice").await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (403, Some("M_THREEPID_AUTH_FAILED")),
        "{b}"
    );

    // The address is alice's: nobody else may ask for it; she signs in with it.
    let bob = srv.register("bob").await;
    let (s, b) = request_token(&bob, "account/3pid", "secret-b1", "alice@example.org", 1).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_THREEPID_IN_USE")),
        "{b}"
    );
    let (s, b) = login_by_email(&srv, "ALICE@example.org", "pw-alice").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user_id"], alice.user_id.as_str());
    let (s, _) = login_by_email(&srv, "alice@example.org", "wrong").await;
    assert_eq!(s, 403);
    // Sandcat clients sign in with it too (one set of users).
    let native = common::native::login(&srv, "alice@example.org", "pw-alice").await;
    assert_eq!(native.id, "alice");

    // Removed: gone from the list, no longer a way in, free for another account.
    let (s, b) = alice
        .post(
            "/_matrix/client/v3/account/3pid/delete",
            json!({ "medium": "email", "address": "alice@example.org" }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["id_server_unbind_result"], "success");
    assert!(addresses(&alice).await.is_empty());
    let (s, _) = login_by_email(&srv, "alice@example.org", "pw-alice").await;
    assert_eq!(s, 403);
    let (s, b) = request_token(&bob, "account/3pid", "secret-b1", "alice@example.org", 1).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn registering_with_an_address_validated_by_the_posted_token() {
    let mailbox = Mailbox::start();
    let srv = start(&mailbox).await;
    let anon = srv.anon();
    let register = |auth: Value| {
        let anon = anon.clone();
        async move {
            anon.post(
                "/_matrix/client/v3/register",
                json!({ "username": "carol", "password": "pw-carol", "auth": auth }),
            )
            .await
        }
    };
    // The server offers the email stage beside the dummy one.
    let (s, b) = register(Value::Null).await;
    assert_eq!(s, 401, "{b}");
    let stages: Vec<Value> = b["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["stages"][0].clone())
        .collect();
    assert!(stages.contains(&json!("m.login.email.identity")), "{b}");
    assert!(stages.contains(&json!("m.login.dummy")), "{b}");

    let (s, b) = request_token(&anon, "register", "secret-c1", "carol@example.org", 1).await;
    assert_eq!(s, 200, "{b}");
    let sid = b["sid"].as_str().unwrap().to_owned();
    let submit_url = b["submit_url"].as_str().unwrap().to_owned();
    let mail = mailbox.nth("carol@example.org", 1).await;
    let auth = json!({
        "type": "m.login.email.identity",
        "threepid_creds": { "sid": sid, "client_secret": "secret-c1" },
    });

    // Not validated yet: the challenge again, with the reason (clients poll).
    let (s, b) = register(auth.clone()).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (401, Some("M_UNAUTHORIZED")),
        "{b}"
    );

    // A wrong token posted is refused; the right one validates.
    let http = reqwest::Client::new();
    let post = |token: String| {
        let http = http.clone();
        let submit_url = submit_url.clone();
        let sid = sid.clone();
        async move {
            let res = http
                .post(&submit_url)
                .json(&json!({ "sid": sid, "client_secret": "secret-c1", "token": token }))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = post("not-the-token".into()).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (403, Some("M_THREEPID_AUTH_FAILED")),
        "{b}"
    );
    let (s, b) = post(mail.code()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["success"], true);

    // Validated for registration, the session is no proof for adding it elsewhere.
    let dave = srv.register("dave").await;
    let (s, b) = add(&dave, &sid, "secret-c1", "pw-dave").await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (403, Some("M_THREEPID_AUTH_FAILED")),
        "{b}"
    );

    let (s, b) = register(auth).await;
    assert_eq!(s, 200, "{b}");
    let carol = Client {
        token: Some(b["access_token"].as_str().unwrap().to_owned()),
        user_id: b["user_id"].as_str().unwrap().to_owned(),
        ..srv.anon()
    };
    assert_eq!(addresses(&carol).await, vec!["carol@example.org"]);
    // Registering again with the address: in use.
    let (s, b) = request_token(&anon, "register", "secret-c2", "carol@example.org", 1).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_THREEPID_IN_USE")),
        "{b}"
    );

    // Deactivation frees it.
    let (s, b) = carol
        .post(
            "/_matrix/client/v3/account/deactivate",
            json!({ "auth": password_auth(&carol, "pw-carol") }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["id_server_unbind_result"], "success");
    let (s, b) = request_token(&anon, "register", "secret-c3", "carol@example.org", 1).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn a_forgotten_password_is_reset_through_the_mailed_link() {
    let mailbox = Mailbox::start();
    let srv = start(&mailbox).await;
    // Erin registered with Sandcat: her Sandcat email is an address of her account.
    let native = common::native::sandcat_user(&srv, "erin").await;
    let erin = srv.anon();
    let (s, b) = erin
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": native.id }, "password": "pw-erin" }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let erin = Client {
        token: Some(b["access_token"].as_str().unwrap().to_owned()),
        user_id: b["user_id"].as_str().unwrap().to_owned(),
        ..erin
    };
    assert_eq!(addresses(&erin).await, vec!["erin@example.org"]);

    let anon = srv.anon();
    let (s, b) = request_token(
        &anon,
        "account/password",
        "secret-e1",
        "nobody@example.org",
        1,
    )
    .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_THREEPID_NOT_FOUND")),
        "{b}"
    );

    let (s, b) = anon
        .post(
            "/_matrix/client/v3/account/password/email/requestToken",
            json!({
                "client_secret": "secret-e1", "email": "erin@example.org", "send_attempt": 1,
                "next_link": "https://app.example.org/reset-done",
            }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let sid = b["sid"].as_str().unwrap().to_owned();
    let mail = mailbox.nth("erin@example.org", 1).await;
    assert!(
        mail.text.contains("Subject: Reset your password"),
        "{}",
        mail.text
    );

    // Without an access token, the password endpoint asks for the email stage.
    let change = |auth: Value| {
        let anon = anon.clone();
        async move {
            anon.post(
                "/_matrix/client/v3/account/password",
                json!({ "new_password": "new-pw-erin", "auth": auth }),
            )
            .await
        }
    };
    let (s, b) = change(Value::Null).await;
    assert_eq!(s, 401, "{b}");
    assert_eq!(b["flows"][0]["stages"][0], "m.login.email.identity");
    let auth = json!({
        "type": "m.login.email.identity",
        "threepid_creds": { "sid": sid, "client_secret": "secret-e1" },
    });
    let (s, b) = change(auth.clone()).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (401, Some("M_UNAUTHORIZED")),
        "{b}"
    );

    // The link leads on to the client's next_link.
    let (s, location, _) = follow(&mail.link()).await;
    assert_eq!(s, 303);
    assert_eq!(
        location.as_deref(),
        Some("https://app.example.org/reset-done")
    );

    let (s, b) = change(auth.clone()).await;
    assert_eq!(s, 200, "{b}");
    // Every session ended; the new password works, the old one does not, on both APIs.
    let (s, b) = erin.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(s, 401, "{b}");
    let (s, _) = login_by_email(&srv, "erin@example.org", "pw-erin").await;
    assert_eq!(s, 403);
    let (s, b) = login_by_email(&srv, "erin@example.org", "new-pw-erin").await;
    assert_eq!(s, 200, "{b}");
    common::native::login(&srv, "erin@example.org", "new-pw-erin").await;
    // The proof is used up.
    let (s, _) = change(auth).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn phone_numbers_bad_input_and_servers_without_mail_are_refused() {
    let mailbox = Mailbox::start();
    let srv = start(&mailbox).await;
    let alice = srv.register("alice").await;
    for path in ["account/3pid", "register", "account/password"] {
        let (s, b) = alice
            .post(
                &format!("/_matrix/client/v3/{path}/msisdn/requestToken"),
                json!({ "client_secret": "s1", "country": "GB", "phone_number": "07700900001", "send_attempt": 1 }),
            )
            .await;
        assert_eq!(
            (s, b["errcode"].as_str()),
            (400, Some("M_THREEPID_MEDIUM_NOT_SUPPORTED")),
            "{path}: {b}"
        );
    }
    for email in [
        "no-at-sign",
        "two@@example.org",
        "a@nodot",
        "a b@example.org",
        "@example.org",
    ] {
        let (s, b) = request_token(&alice, "account/3pid", "s1", email, 1).await;
        assert_eq!(
            (s, b["errcode"].as_str()),
            (400, Some("M_INVALID_PARAM")),
            "{email}: {b}"
        );
    }
    let (s, b) = alice
        .post(
            "/_matrix/client/v3/account/3pid/email/requestToken",
            json!({ "client_secret": "s1", "email": "a@example.org", "send_attempt": 1, "next_link": "javascript:alert(1)" }),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{b}"
    );
    // A client secret outside the spec's characters.
    let (s, b) = request_token(&alice, "account/3pid", "not secret!", "a@example.org", 1).await;
    assert_eq!(s, 400, "{b}");
    // A broken submission.
    let res = reqwest::Client::new()
        .post(format!("{}/_sandcat/email/submit_token", srv.base))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let (s, _, _) = follow(&format!("{}/_sandcat/email/validate?sid=x", srv.base)).await;
    assert_eq!(s, 400);
    assert_eq!(mailbox.count("a@example.org"), 0);

    // Without a mail relay: no email validation, and registration offers the dummy stage only.
    let plain = Server::start().await;
    let bob = plain.register("bob").await;
    let (s, caps) = bob.get("/_matrix/client/v3/capabilities").await;
    assert_eq!(s, 200);
    assert_eq!(caps["capabilities"]["m.3pid_changes"]["enabled"], false);
    let (s, b) = request_token(&bob, "account/3pid", "s1", "bob@example.org", 1).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_THREEPID_MEDIUM_NOT_SUPPORTED")),
        "{b}"
    );
    let (s, b) = plain
        .anon()
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "x", "password": "y" }),
        )
        .await;
    assert_eq!(s, 401, "{b}");
    assert_eq!(b["flows"], json!([{ "stages": ["m.login.dummy"] }]));
    assert!(addresses(&bob).await.is_empty());
}

#[tokio::test]
async fn sandcat_verification_codes_go_through_the_relay() {
    // Built as the binary builds it (no test outbox): codes are mailed.
    let mailbox = Mailbox::start();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = sandcat::Config {
        data_dir: dir.path().to_path_buf(),
        registration_enabled: true,
        rate_limit_per_second: 0.0,
        public_base_url: base.clone(),
        ..Default::default()
    };
    if common::pipeline_profile() {
        common::use_pipeline(&mut config, dir.path()).await;
    }
    config.email.smtp_host = "127.0.0.1".into();
    config.email.smtp_port = mailbox.port;
    config.email.smtp_security = sandcat::config::SmtpSecurity::None;
    let app = sandcat::build(&config).await.unwrap();
    tokio::spawn(sandcat::serve(app, listener, std::future::pending()));

    let http = reqwest::Client::new();
    let res = http
        .post(format!("{base}/api/user/mail/send"))
        .json(&json!({ "email": "frank@example.org" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mail = mailbox.nth("frank@example.org", 1).await;
    assert!(
        mail.text.contains("Subject: Your verification code"),
        "{}",
        mail.text
    );
    let at = mail.text.find("code is ").expect("a code") + "code is ".len();
    let code: String = mail.text[at..].chars().take(6).collect();
    let res = http
        .post(format!("{base}/api/user"))
        .json(&json!({ "avatar": "", "name": "frank", "password": "pw-frank", "email": "frank@example.org", "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // The address is the account's on the Matrix side too.
    let (s, b) = common::anon_at(&base)
        .post(
            "/_matrix/client/v3/login",
            json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.thirdparty", "medium": "email", "address": "frank@example.org" },
                "password": "pw-frank",
            }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}
