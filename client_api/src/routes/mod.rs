//! Route tables, one module per area of the API.

mod account;
mod admin;
pub(crate) mod appservice;
mod backup;
mod data;
mod keys;
mod media;
mod membership;
mod push;
mod reports;
pub(crate) mod rooms;
mod search;
mod server;
mod sync;
pub(crate) mod threepid;

use crate::AppState;

pub(crate) fn routes() -> axum::Router<AppState> {
    let r = axum::Router::new();
    let r = server::routes(r);
    let r = account::routes(r);
    let r = rooms::routes(r);
    let r = membership::routes(r);
    let r = sync::routes(r);
    let r = keys::routes(r);
    let r = backup::routes(r);
    let r = reports::routes(r);
    let r = admin::routes(r);
    let r = push::routes(r);
    let r = search::routes(r);
    let r = threepid::routes(r);
    let r = appservice::routes(r);
    let r = media::routes(r);
    data::routes(r)
}

/// An object without its `null` fields: the spec leaves absent what is not known.
pub(crate) fn present(mut v: serde_json::Value) -> serde_json::Value {
    if let serde_json::Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}
