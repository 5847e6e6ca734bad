//! URL previews (`/media/preview_url`): what a page says about itself (Open Graph), its
//! image kept as this server's media so that clients load it from here; an image URL is
//! kept as media itself. Answers are kept an hour per URL (per instance), so a link posted
//! in a busy room is fetched once.

use std::{
    collections::{BTreeMap, HashMap},
    io::Cursor,
    sync::{Arc, Mutex},
};

use ruma::{OwnedServerName, UserId};
use serde_json::{json, Map, Value};

use crate::{
    ports::{WebContent, WebPages},
    services::media::Media,
    Error, Result,
};

/// How long an answer is kept.
pub const KEPT_MS: u64 = 60 * 60 * 1000;
/// The most answers kept.
const MAX_KEPT: usize = 1024;
/// The longest URL previewed.
pub const MAX_URL: usize = 2048;

/// A preview as answered: Open Graph-like properties.
pub type Preview = Map<String, Value>;

/// Answers kept, by URL, with when each was fetched.
type Kept = HashMap<String, (u64, Preview)>;

pub struct UrlPreviews {
    /// `None`: previews are off.
    web: Option<Arc<dyn WebPages>>,
    media: Arc<Media>,
    server_name: OwnedServerName,
    kept: Mutex<Kept>,
}

impl UrlPreviews {
    pub fn new(
        web: Option<Arc<dyn WebPages>>,
        media: Arc<Media>,
        server_name: OwnedServerName,
    ) -> Self {
        UrlPreviews {
            web,
            media,
            server_name,
            kept: Mutex::new(HashMap::new()),
        }
    }

    fn kept(&self, url: &str, now: u64) -> Option<Map<String, Value>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(url)
            .filter(|(at, _)| at + KEPT_MS > now)
            .map(|(_, m)| m.clone())
    }

    fn keep(&self, url: &str, now: u64, answer: &Map<String, Value>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MAX_KEPT {
            kept.retain(|_, (at, _)| *at + KEPT_MS > now);
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
        }
        kept.insert(url.to_owned(), (now, answer.clone()));
    }

    /// The preview of `url` for `user` (whose upload the kept image is).
    pub async fn preview(&self, user: &UserId, url: &str) -> Result<Map<String, Value>> {
        let web = self
            .web
            .as_ref()
            .ok_or_else(|| Error::forbidden("URL previews are turned off on this server"))?;
        let web_url = url.starts_with("https://") || url.starts_with("http://");
        if !web_url || url.len() > MAX_URL {
            return Err(Error::invalid_param(format!(
                "only http and https URLs of at most {MAX_URL} bytes are previewed"
            )));
        }
        let now = crate::now_ms();
        if let Some(answer) = self.kept(url, now) {
            return Ok(answer);
        }
        let answer = match web.fetch(url).await? {
            WebContent::Page(meta) => self.page(web.as_ref(), user, meta).await?,
            WebContent::Image {
                bytes,
                content_type,
            } => self.image(user, &bytes, content_type).await?,
            WebContent::Other => Map::new(),
        };
        self.keep(url, now, &answer);
        Ok(answer)
    }

    async fn page(
        &self,
        web: &dyn WebPages,
        user: &UserId,
        mut meta: BTreeMap<String, String>,
    ) -> Result<Map<String, Value>> {
        let image_url = meta.remove("og:image");
        // The page's own facts about its image give way to those of the copy kept here.
        meta.retain(|k, _| !k.starts_with("og:image"));
        let mut answer: Map<String, Value> = meta
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        if let Some(image_url) = image_url {
            match web.fetch(&image_url).await {
                Ok(WebContent::Image {
                    bytes,
                    content_type,
                }) => answer.extend(self.image(user, &bytes, content_type).await?),
                Ok(_) => {}
                Err(e) => tracing::debug!(url = %image_url, error = %e, "a preview's image"),
            }
        }
        Ok(answer)
    }

    async fn image(
        &self,
        user: &UserId,
        bytes: &[u8],
        content_type: String,
    ) -> Result<Map<String, Value>> {
        let media_id = self
            .media
            .upload(user.as_str(), bytes, Some(content_type.clone()), None)
            .await?;
        let mut answer = Map::new();
        answer.insert(
            "og:image".into(),
            json!(format!("mxc://{}/{media_id}", self.server_name)),
        );
        answer.insert("og:image:type".into(), json!(content_type));
        answer.insert("matrix:image:size".into(), json!(bytes.len()));
        if let Some((w, h)) = image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok())
        {
            answer.insert("og:image:width".into(), json!(w));
            answer.insert("og:image:height".into(), json!(h));
        }
        Ok(answer)
    }
}
