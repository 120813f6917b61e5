//! The `timeout` query parameter every client-go request carries (`?timeout=32s`, a
//! Go duration): the server must answer within it. It is taken off the query here
//! (so the routes' own parameter checks never see it) and honoured: the request gets
//! the shorter of it and `REQUEST_TIMEOUT`. A value that is not a duration is a 400.

use super::api::{ApiErr, REQUEST_TIMEOUT};
use axum::extract::Request;
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Parses a Go duration: numbers with units h, m, s, ms, us, ns, e.g. `1m30s`, `1.5s`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * scale;
    }
    (total.is_finite() && total < 1e9).then(|| Duration::from_secs_f64(total))
}

/// Takes `timeout` off the query; returns the rest of the query and the duration.
fn split(query: &str) -> Result<(String, Option<Duration>), String> {
    let mut keep = Vec::new();
    let mut found = None;
    for part in query.split('&').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("timeout", v)) => {
                let d = parse_go_duration(v).ok_or_else(|| format!("timeout {v:?} is not a duration such as 30s"))?;
                found = Some(d);
            }
            _ => keep.push(part),
        }
    }
    Ok((keep.join("&"), found))
}

/// The middleware.
pub async fn honour(mut req: Request, next: Next) -> Response {
    let Some(q) = req.uri().query().filter(|q| q.split('&').any(|p| p.starts_with("timeout="))) else {
        return next.run(req).await;
    };
    let (rest, limit) = match split(q) {
        Ok(x) => x,
        Err(e) => return ApiErr(StatusCode::BAD_REQUEST, "BadRequest", e).into_response(),
    };
    let path = req.uri().path();
    let pq = if rest.is_empty() { path.to_string() } else { format!("{path}?{rest}") };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    let limit = limit.unwrap_or(REQUEST_TIMEOUT).min(REQUEST_TIMEOUT);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiErr(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            format!("the request did not finish within its timeout of {}s", limit.as_secs_f64()),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_the_query_without_timeout() {
        assert_eq!(parse_go_duration("32s"), Some(Duration::from_secs(32)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration("5"), None);
        let (rest, d) = split("limit=5&timeout=32s&watch=1").expect("splits");
        assert_eq!((rest.as_str(), d), ("limit=5&watch=1", Some(Duration::from_secs(32))));
        assert!(split("timeout=forever").is_err());
    }
}
