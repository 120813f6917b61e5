//! Paged and streamed lists. A `continue` token is opaque to clients: base64url of
//! `{"k": kind, "rv": list resourceVersion, "a": last name}`. It carries what the
//! next page needs (the snapshot's resourceVersion and where to go on), so the server
//! keeps no state per list; the store refuses it (410) when the rest of the list can
//! no longer be the snapshot it started from.
//!
//! A list without `limit` is streamed: the store is read `chunk` objects at a time (as
//! their stored JSON, sent as it is) and each chunk is handed to the connection before
//! the next is read, so
//! the memory a list takes does not grow with the number of objects. Trade-off: such a
//! list is one snapshot per chunk, not as a whole; an object that changes while it
//! streams appears in its newer state (never older than the list's resourceVersion),
//! so a watch from that resourceVersion still converges.

use super::api::ApiErr;
use super::selector::Selector;
use crate::api::Kind;
use crate::store::{RawPage, Store};
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What a `continue` token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The resourceVersion of the list's first page.
    pub rv: u64,
    /// The last name already returned.
    pub after: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    k: String,
    rv: u64,
    a: String,
}

impl Token {
    /// The opaque form, bound to `kind`.
    pub fn encode(&self, kind: Kind) -> String {
        let w = Wire { k: kind.as_str().to_string(), rv: self.rv, a: self.after.clone() };
        let json = serde_json::to_vec(&w).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads a token given for a list of `kind`; the error says what is wrong.
    pub fn decode(text: &str, kind: Kind) -> Result<Token, String> {
        let invalid = || format!("continue token {:?} is not one this server issued", excerpt(text));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let w: Wire = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if w.k != kind.as_str() {
            return Err(format!("the continue token belongs to a list of {}, not of {}", w.k, kind.as_str()));
        }
        Ok(Token { rv: w.rv, after: w.a })
    }
}

/// At most 40 characters of what a client sent, for error messages.
fn excerpt(s: &str) -> String {
    let mut e: String = s.chars().take(40).collect();
    if e.len() < s.len() {
        e.push('…');
    }
    e
}

async fn read_page(store: Arc<dyn Store>, kind: Kind, after: Option<String>, chunk: usize) -> Result<RawPage, ApiErr> {
    tokio::task::spawn_blocking(move || store.list_page_json(kind, after.as_deref(), chunk, None))
        .await
        .map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()))?
        .map_err(ApiErr::from)
}

/// A page's items as stored, each preceded by a comma unless it is the list's first;
/// with a selector, only the objects it matches (decoded to be matched).
fn items_json(page: &RawPage, first: bool, selector: &Selector) -> (Bytes, bool) {
    let mut buf = Vec::with_capacity(page.items.iter().map(|(_, j)| j.len() + 1).sum());
    let mut first = first;
    for (_, json) in &page.items {
        if !selector.is_empty() && !crate::api::Resource::from_json(json).is_ok_and(|o| selector.matches(&o)) {
            continue;
        }
        if !first {
            buf.push(b',');
        }
        first = false;
        buf.extend_from_slice(json);
    }
    (Bytes::from(buf), first)
}

/// The whole list of `kind`, streamed `chunk` objects at a time. The first chunk is
/// read before the response starts, so a store error is still a JSON error.
pub async fn stream_list(
    store: Arc<dyn Store>,
    kind: Kind,
    chunk: usize,
    selector: Selector,
) -> Result<Response, ApiErr> {
    let first = read_page(store.clone(), kind, None, chunk).await?;
    let head = format!(
        r#"{{"apiVersion":"{}","kind":"{}List","metadata":{{"resourceVersion":"{}"}},"items":["#,
        crate::api::API_VERSION,
        kind.as_str(),
        first.rv
    );
    // State: the page to send next (None: the list is done), whether nothing was sent yet.
    struct St {
        store: Arc<dyn Store>,
        page: Option<RawPage>,
        first: bool,
        closed: bool,
        selector: Selector,
    }
    let st = St { store, page: Some(first), first: true, closed: false, selector };
    let body = futures_util::stream::unfold(st, move |mut st| async move {
        if st.closed {
            return None;
        }
        let Some(page) = st.page.take() else {
            st.closed = true;
            return Some((Ok::<Bytes, std::io::Error>(Bytes::from_static(b"]}")), st));
        };
        let (bytes, still_first) = items_json(&page, st.first, &st.selector);
        st.first = still_first;
        if page.more {
            let after = page.items.last().map(|(name, _)| name.clone());
            match read_page(st.store.clone(), kind, after, chunk).await {
                Ok(next) => st.page = Some(next),
                Err(e) => {
                    // The status line is sent: end the body short, so the client's
                    // JSON decoder fails instead of seeing a list that looks whole.
                    tracing::warn!(kind = kind.as_str(), error = %e.2, "list stream aborted");
                    st.closed = true;
                    return Some((Err(std::io::Error::other(e.2)), st));
                }
            }
        }
        Some((Ok(bytes), st))
    });
    let head = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(Bytes::from(head)) });
    use futures_util::StreamExt as _;
    Ok(Response::builder()
        .header("Content-Type", "application/json")
        .body(Body::from_stream(head.chain(body)))
        .expect("response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_kind() {
        let t = Token { rv: 42, after: "vm0001".into() };
        let s = t.encode(Kind::VMDefinition);
        assert_eq!(Token::decode(&s, Kind::VMDefinition), Ok(t));
        assert!(Token::decode(&s, Kind::SEServer).unwrap_err().contains("belongs to a list of VMDefinition"));
        assert!(Token::decode("not-a-token!", Kind::VMDefinition).unwrap_err().contains("not one this server issued"));
    }
}
