//! Web pages as URL previews see them: what a page says about itself, or an image.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::Result;

/// What a URL leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebContent {
    /// An HTML page's description of itself: its `og:*` properties (`og:image` made
    /// absolute), with its `<title>` and `description` standing in for a missing `og:title`
    /// and `og:description`.
    Page(BTreeMap<String, String>),
    /// An image.
    Image {
        bytes: Vec<u8>,
        content_type: String,
    },
    /// Anything else (nothing to show).
    Other,
}

#[async_trait]
pub trait WebPages: Send + Sync {
    /// Fetches `url` (http or https); an error when it cannot be reached, answers an error
    /// status, or is refused (a private address).
    async fn fetch(&self, url: &str) -> Result<WebContent>;
}
