//! URL previews (`/media/preview_url`) of pages served by a real web server in the test's
//! process: Open Graph properties, the title and description standing in, the page's image
//! kept as this server's media, an image URL itself, redirects, answers kept, and what is
//! refused (private addresses by default: 403; pages not there: 404; other schemes; previews
//! turned off). Runs
//! on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use axum::{
    http::header,
    response::{Html, IntoResponse, Redirect},
    routing::get,
    Router,
};
use common::{enc, png, Client, Server};
use serde_json::{json, Value};

/// A small web site; counts the visits of `/page`.
async fn site() -> (String, Arc<AtomicUsize>) {
    let visits = Arc::new(AtomicUsize::new(0));
    let counted = visits.clone();
    let app = Router::new()
        .route(
            "/page",
            get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async {
                    Html(
                        r#"<!DOCTYPE html><html><head><title>Not this one</title>
                        <meta property="og:title" content="Sandcat news">
                        <meta property="og:description" content="What happened this week">
                        <meta property="og:site_name" content="Example">
                        <meta property="og:image" content="/img.png">
                        </head><body><p>Hello</p></body></html>"#,
                    )
                }
            }),
        )
        .route(
            "/plain",
            get(|| async {
                Html(
                    r#"<html><head><title>A plain page</title>
                    <meta name="description" content="Only the basics"></head></html>"#,
                )
            }),
        )
        .route(
            "/img.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], png(40, 30)).into_response() }),
        )
        .route("/moved", get(|| async { Redirect::temporary("/plain") }))
        .route(
            "/data.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], "{}").into_response() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, visits)
}

async fn preview(c: &Client, url: &str) -> (u16, Value) {
    c.get(&format!(
        "/_matrix/client/v1/media/preview_url?url={}",
        enc(url)
    ))
    .await
}

#[tokio::test]
async fn pages_and_images_are_previewed_with_the_image_kept_here() {
    let (web, visits) = site().await;
    let srv = Server::start_with(|c| c.media.url_preview_allow_private = true).await;
    let alice = srv.register("alice").await;

    let (s, b) = preview(&srv.anon(), &format!("{web}/page")).await;
    assert_eq!(s, 401, "{b}");

    let (s, b) = preview(&alice, &format!("{web}/page")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["og:title"], "Sandcat news");
    assert_eq!(b["og:description"], "What happened this week");
    assert_eq!(b["og:site_name"], "Example");
    assert_eq!(b["og:image:type"], "image/png");
    assert_eq!(b["og:image:width"], 40);
    assert_eq!(b["og:image:height"], 30);
    let image = png(40, 30);
    assert_eq!(b["matrix:image:size"], image.len());
    let mxc = b["og:image"].as_str().unwrap();
    let path = mxc.strip_prefix("mxc://").expect("an mxc URI");
    let res = reqwest::Client::new()
        .get(format!(
            "{}/_matrix/client/v1/media/download/{path}",
            srv.base
        ))
        .bearer_auth(alice.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.bytes().await.unwrap().to_vec(), image);

    // Asked again (through the deprecated path too): the kept answer, the page not fetched.
    let (s, again) = alice
        .get(&format!(
            "/_matrix/media/v3/preview_url?url={}",
            enc(&format!("{web}/page"))
        ))
        .await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again, b);
    assert_eq!(visits.load(Ordering::SeqCst), 1);

    // Without Open Graph: the title and description; through a redirect, the same.
    for url in [format!("{web}/plain"), format!("{web}/moved")] {
        let (s, b) = preview(&alice, &url).await;
        assert_eq!(s, 200, "{url}: {b}");
        assert_eq!(b["og:title"], "A plain page", "{url}");
        assert_eq!(b["og:description"], "Only the basics", "{url}");
        assert!(b.get("og:image").is_none(), "{b}");
    }

    // An image URL: the image itself.
    let (s, b) = preview(&alice, &format!("{web}/img.png")).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["og:image"].as_str().unwrap().starts_with("mxc://"), "{b}");
    assert_eq!(b["og:image:width"], 40);

    // Something else: nothing to show.
    let (s, b) = preview(&alice, &format!("{web}/data.json")).await;
    assert_eq!((s, b), (200, json!({})));

    // A page that is not there, and a URL of another scheme.
    let (s, b) = preview(&alice, &format!("{web}/missing")).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{b}"
    );
    let (s, b) = preview(&alice, "https://no-such-host.invalid/").await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{b}"
    );
    let (s, b) = preview(&alice, "ftp://example.org/file").await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{b}"
    );
}

#[tokio::test]
async fn private_addresses_and_turned_off_previews_are_refused() {
    let (web, visits) = site().await;
    // By default, no page on this machine or network is fetched.
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    for url in [format!("{web}/page"), "http://localhost:9/".to_owned()] {
        let (s, b) = preview(&alice, &url).await;
        assert_eq!(
            (s, b["errcode"].as_str()),
            (403, Some("M_FORBIDDEN")),
            "{url}: {b}"
        );
        assert!(b["error"].as_str().unwrap().contains("private"), "{b}");
    }
    assert_eq!(visits.load(Ordering::SeqCst), 0);

    let off = Server::start_with(|c| {
        c.media.url_preview = false;
        c.media.url_preview_allow_private = true;
    })
    .await;
    let bob = off.register("bob").await;
    let (s, b) = preview(&bob, &format!("{web}/page")).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{b}"
    );
    assert_eq!(visits.load(Ordering::SeqCst), 0);
}
