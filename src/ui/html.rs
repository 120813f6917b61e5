//! HTML building blocks: escaping, the page frame (header, navigation, logout form)
//! and state badges. Pages are plain strings built with `format!`: no template engine
//! for a handful of pages, and every interpolated text goes through `esc`.

use super::session::Session;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes text for a query string (unreserved characters stay).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The CSS class of a state word (NORMAL, WARNING, ERROR, INACTIVE; unit and VM
/// states too). The word itself is always shown next to the colour.
pub fn state_class(state: &str) -> &'static str {
    match state {
        "NORMAL" | "RUNNING" | "ON" | "Completed" | "Possible" => "ok",
        "WARNING" | "WAIT" | "Setup" | "Copying" | "Suspended" | "PostTreatment" | "Checking" | "Pending" => "warn",
        "ERROR" | "Rejected" | "Aborted" | "CRITICAL" | "FAILED" => "err",
        "INIT_ONLY" => "info",
        _ => "off",
    }
}

/// A state as a badge: the word and a symbol, coloured (never colour alone).
pub fn badge(state: &str) -> String {
    let shown = if state.is_empty() { "UNKNOWN" } else { state };
    let symbol = match state_class(state) {
        "ok" => "\u{2714}",
        "warn" => "\u{26a0}",
        "err" => "\u{2716}",
        "info" => "\u{2139}",
        _ => "\u{25cb}",
    };
    format!(
        "<span class=\"badge {}\"><span aria-hidden=\"true\">{symbol}</span> {}</span>",
        state_class(state),
        esc(shown)
    )
}

/// The views in the navigation: (path, label).
const NAV: [(&str, &str); 6] = [
    ("/ui/", "Dashboard"),
    ("/ui/topology", "Topology"),
    ("/ui/vms", "VMs"),
    ("/ui/migrations", "Migrations"),
    ("/ui/events", "Events"),
    ("/ui/sources", "Sources"),
];

/// A whole page: header with navigation and logout, the body, the script.
pub fn page(title: &str, current: &str, session: Option<&Session>, body: &str) -> String {
    let nav = match session {
        Some(s) => {
            let links: String = NAV
                .iter()
                .map(|(href, label)| {
                    let cur = if *href == current { " aria-current=\"page\"" } else { "" };
                    format!("<li><a href=\"{href}\"{cur}>{label}</a></li>")
                })
                .collect();
            format!(
                "<nav aria-label=\"Views\"><ul>{links}</ul></nav>\
                 <form class=\"logout\" method=\"post\" action=\"/ui/logout\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <span class=\"who\">{}</span> <button type=\"submit\">Log out</button></form>",
                esc(&s.csrf),
                esc(&s.who.name)
            )
        }
        None => String::new(),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} \u{2013} sectl</title><link rel=\"stylesheet\" href=\"/ui/assets/app.css\">\
         <script src=\"/ui/assets/app.js\" defer></script></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><span class=\"brand\">sectl</span>{nav}</header>\
         <main id=\"main\" tabindex=\"-1\"><h1>{}</h1>\
         <p id=\"status\" role=\"status\" aria-live=\"polite\"></p>{body}</main></body></html>",
        esc(title),
        esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
    }

    #[test]
    fn badge_names_the_state() {
        assert!(badge("WARNING").contains("WARNING"));
        assert!(badge("WARNING").contains("warn"));
        assert!(badge("").contains("UNKNOWN"));
    }
}
