//! Pages for URL previews: fetched through the guarded client, an HTML page's head read for
//! its Open Graph properties (scraper, on html5ever), an image returned whole.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use sandcat_core::{
    error::with_causes,
    ports::{WebContent, WebPages},
    Error, Result,
};

use super::{guarded_client, is_private_literal, read_body};

/// How pages are fetched.
#[derive(Debug, Clone)]
pub struct PageOptions {
    /// Let requests go to private, loopback and link-local addresses.
    pub allow_private: bool,
    /// The most one fetch may take.
    pub timeout: Duration,
    /// The most of a page read (its head is near the start).
    pub max_page_bytes: usize,
    /// The largest image kept.
    pub max_image_bytes: usize,
}

impl Default for PageOptions {
    fn default() -> Self {
        PageOptions {
            allow_private: false,
            timeout: Duration::from_secs(10),
            max_page_bytes: 1024 * 1024,
            max_image_bytes: 10 * 1024 * 1024,
        }
    }
}

/// The most properties kept of a page, and the longest value.
const MAX_PROPERTIES: usize = 32;
const MAX_VALUE_CHARS: usize = 1000;

pub struct WebFetcher {
    http: reqwest::Client,
    options: PageOptions,
}

/// A page that cannot be previewed: not allowed (a private address) or not there (no such
/// host, no answer, an error status) — the client's URL, so a 4xx either way.
fn refused(url: &str, why: impl std::fmt::Display) -> Error {
    let why = why.to_string();
    if why.contains("private address") {
        Error::forbidden(format!("{url} may not be previewed: {why}"))
    } else {
        Error::not_found(format!("{url} cannot be previewed: {why}"))
    }
}

impl WebFetcher {
    pub fn new(options: PageOptions) -> Result<Self> {
        let http =
            guarded_client(options.allow_private, options.timeout, 5).map_err(Error::internal)?;
        Ok(WebFetcher { http, options })
    }
}

#[async_trait]
impl WebPages for WebFetcher {
    async fn fetch(&self, url: &str) -> Result<WebContent> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| Error::invalid_param(format!("{url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid_param(format!(
                "{url}: neither http nor https"
            )));
        }
        if is_private_literal(&parsed) && !self.options.allow_private {
            return Err(refused(url, "a private address"));
        }
        let mut answer = self
            .http
            .get(parsed)
            .header(http_header::USER_AGENT, "Sandcat (URL preview)")
            .header(http_header::ACCEPT, "text/html, image/*;q=0.9, */*;q=0.1")
            .send()
            .await
            .map_err(|e| refused(url, with_causes(&e)))?;
        if !answer.status().is_success() {
            return Err(refused(url, format!("answered {}", answer.status())));
        }
        let final_url = answer.url().clone();
        let content_type = answer
            .headers()
            .get(http_header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        if essence.starts_with("image/") {
            let bytes = read_body(&mut answer, self.options.max_image_bytes, false)
                .await
                .map_err(|e| refused(url, e))?;
            return Ok(WebContent::Image {
                bytes,
                content_type: essence,
            });
        }
        if essence == "text/html" || essence == "application/xhtml+xml" {
            let bytes = read_body(&mut answer, self.options.max_page_bytes, true)
                .await
                .map_err(|e| refused(url, e))?;
            return Ok(WebContent::Page(page_properties(
                &String::from_utf8_lossy(&bytes),
                &final_url,
            )));
        }
        Ok(WebContent::Other)
    }
}

mod http_header {
    pub(super) use reqwest::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
}

fn clip(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.chars().take(MAX_VALUE_CHARS).collect()
}

/// A page's `og:*` properties, its title and description standing in for missing ones,
/// `og:image` made absolute against the page's address (and dropped unless http or https).
fn page_properties(html: &str, page_url: &reqwest::Url) -> BTreeMap<String, String> {
    let doc = scraper::Html::parse_document(html);
    let mut props = BTreeMap::new();
    let mut description = None;
    if let Ok(meta) = scraper::Selector::parse("meta") {
        for el in doc.select(&meta) {
            let v = el.value();
            let (Some(key), Some(content)) = (
                v.attr("property").or_else(|| v.attr("name")),
                v.attr("content"),
            ) else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            if key.starts_with("og:") && props.len() < MAX_PROPERTIES {
                props.entry(key).or_insert_with(|| clip(content));
            } else if key == "description" && description.is_none() {
                description = Some(clip(content));
            }
        }
    }
    if !props.contains_key("og:title") {
        let title = scraper::Selector::parse("title")
            .ok()
            .and_then(|sel| doc.select(&sel).next())
            .map(|t| clip(&t.text().collect::<String>()))
            .filter(|t| !t.is_empty());
        if let Some(title) = title {
            props.insert("og:title".into(), title);
        }
    }
    if let Some(d) = description.filter(|d| !d.is_empty()) {
        props.entry("og:description".into()).or_insert(d);
    }
    let image = props
        .remove("og:image")
        .or_else(|| props.remove("og:image:url"))
        .or_else(|| props.remove("og:image:secure_url"))
        .and_then(|i| page_url.join(&i).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    if let Some(image) = image {
        props.insert("og:image".into(), image.to_string());
    }
    props
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly
    use super::*;

    #[test]
    fn open_graph_first_then_title_and_description() {
        let base = reqwest::Url::parse("https://example.org/blog/post").unwrap();
        let props = page_properties(
            r#"<html><head><title> The  title </title>
               <meta name="description" content="A description">
               <meta property="og:site_name" content="Example">
               <meta property="og:image" content="../img/a.png">
               </head><body>hi</body></html>"#,
            &base,
        );
        assert_eq!(props["og:title"], "The title");
        assert_eq!(props["og:description"], "A description");
        assert_eq!(props["og:site_name"], "Example");
        assert_eq!(props["og:image"], "https://example.org/img/a.png");

        let props = page_properties(
            r#"<meta property="og:title" content="OG"><title>T</title>
               <meta property="og:image" content="javascript:alert(1)">"#,
            &base,
        );
        assert_eq!(props["og:title"], "OG");
        assert!(!props.contains_key("og:image"));
    }

    #[tokio::test]
    async fn private_pages_are_refused_unless_allowed() {
        let fetcher = WebFetcher::new(PageOptions::default()).unwrap();
        for url in [
            "http://127.0.0.1:9/",
            "http://[::1]:9/",
            "http://localhost:9/",
        ] {
            let e = fetcher.fetch(url).await.unwrap_err();
            assert!(e.to_string().contains("private"), "{url}: {e}");
        }
        let e = fetcher.fetch("ftp://example.org/").await.unwrap_err();
        assert!(e.to_string().contains("neither http nor https"), "{e}");
    }
}
