//! Dashboard sessions: who may look, and the per-session CSRF token.
//!
//! Logging in trades the user's API token (form input `token`) for a random session
//! id in a cookie that is `HttpOnly` (scripts cannot read it), `SameSite=Strict` (other
//! sites' pages cannot make the browser send it) and `Secure` when `serve` speaks
//! HTTPS. Every POST form also carries the session's CSRF token, compared in constant
//! time, and a POST whose `Origin` names another host is refused: three independent
//! guards against cross-site requests.
//!
//! The session keeps the token it was opened with and asks `principal` on every
//! request, so a token that is rotated or revoked ends its sessions at once. Sessions
//! live in memory only (a restart logs everyone out), at most `MAX_SESSIONS` (the
//! least recently used is dropped) and each ends after `IDLE` without a request.

use crate::server::api::AppState;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "sectl_session";
/// Sessions held at once; the least recently used goes first.
pub const MAX_SESSIONS: usize = 1024;
/// A session without a request for this long has ended.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);

/// Who is logged in, and what they may do. The one answer the UI's checks use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's name.
    pub name: String,
    /// May change things (actions); otherwise read only.
    pub can_write: bool,
}

/// Who a token belongs to, if anyone: the UI's single authentication check, the same
/// user table as the API's (`auth::users`, tokens kept as hashes). Decision: the
/// dashboard's actions (power a unit, acknowledge, start a migration) are offered to
/// administrators only; other roles get a read-only dashboard whose buttons are
/// disabled and say so. A per-action decision through `auth::policy` (an operator
/// migrating a VM they hold rights on) is left for later.
pub fn principal(s: &AppState, token: &str) -> Option<Principal> {
    let user = crate::auth::users::by_token(s.store.as_ref(), token).ok().flatten()?;
    let can_write = user.role == crate::auth::users::Role::Administrator;
    Some(Principal { name: user.name, can_write })
}

/// The attribute a button gets that this user may not use: disabled, with the reason
/// as its tooltip (state is never shown by the disabled look alone).
pub fn disabled_attr(who: &Principal) -> String {
    if who.can_write {
        String::new()
    } else {
        format!(
            " disabled title=\"only administrators act from the dashboard; {} may look\"",
            super::html::esc(&who.name)
        )
    }
}

/// Constant-time comparison (length aside).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Entry {
    token: String,
    csrf: String,
    last_seen: Instant,
}

/// A session found for a request.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub who: Principal,
    /// The CSRF token its forms carry.
    pub csrf: String,
}

/// The open sessions (and the UI's other per-server state: the VM list's rows).
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
    /// The VM list's rows, current from the store's watch.
    pub vms: super::vm_table::VmTable,
    /// Set `Secure` on the cookie (serve speaks HTTPS).
    pub secure: bool,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(true)
    }
}

fn random_hex() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

impl Sessions {
    /// No sessions yet.
    pub fn new(secure: bool) -> Self {
        Sessions { map: Mutex::new(HashMap::new()), vms: Default::default(), secure }
    }

    /// Opens a session for a token already accepted by `principal`; returns its id.
    pub fn open(&self, token: &str) -> String {
        let id = random_hex();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| e.last_seen.elapsed() < IDLE);
        while map.len() >= MAX_SESSIONS {
            let oldest = map.iter().min_by_key(|(_, e)| e.last_seen).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(id.clone(), Entry { token: token.to_string(), csrf: random_hex(), last_seen: Instant::now() });
        id
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// The session of a request's cookie, if it is open and its token still valid.
    pub fn find(&self, s: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, COOKIE)?;
        let sess = self.by_id(s, &id)?;
        Some((id, sess))
    }

    /// The session with this id, if it is open and its token still valid.
    pub fn by_id(&self, s: &AppState, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.get_mut(id)?;
        if e.last_seen.elapsed() >= IDLE {
            map.remove(id);
            return None;
        }
        let Some(who) = principal(s, &e.token) else {
            map.remove(id);
            return None;
        };
        e.last_seen = Instant::now();
        Some(Session { who, csrf: e.csrf.clone() })
    }

    /// The `Set-Cookie` value that opens a session.
    pub fn set_cookie(&self, id: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict{secure}")
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn clear_cookie(&self) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
    }
}

/// The value of a cookie in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// False when the request says it comes from a page of another host (`Origin`
/// header present and not this server). Browsers send `Origin` on every POST.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(axum::http::header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(axum::http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_button_a_reader_may_not_use_is_disabled_and_says_why() {
        let reader = Principal { name: "op<1>".into(), can_write: false };
        let a = disabled_attr(&reader);
        assert!(a.contains(" disabled") && a.contains("only administrators") && a.contains("op&lt;1&gt;"), "{a}");
        assert_eq!(disabled_attr(&Principal { name: "admin".into(), can_write: true }), "");
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("a=1; sectl_session=abc; b=2"));
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn foreign_origin_is_refused() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:7443"));
        assert!(same_origin(&h));
        h.insert("origin", HeaderValue::from_static("https://127.0.0.1:7443"));
        assert!(same_origin(&h));
        h.insert("origin", HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h));
        h.insert("origin", HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::new(true);
        for _ in 0..MAX_SESSIONS + 10 {
            s.open("t");
        }
        assert_eq!(s.map.lock().unwrap().len(), MAX_SESSIONS);
        assert!(s.set_cookie("x").contains("HttpOnly; SameSite=Strict; Secure"));
    }
}
