//! Short excerpts of input in error messages. serde_yaml and our own checks quote the
//! offending value (`invalid type: string "root:x:0:0:..."`), which for a file that was
//! never a manifest (a link to /etc/passwd) would copy its content into the error, and
//! from there into the event log and `GET /sources`. Every quoted span ("..." or
//! `...`) longer than `MAX_QUOTE` characters is cut to that many plus `…`, and a whole
//! message to `MAX_MESSAGE`.

/// Longest quoted excerpt kept, in characters.
pub const MAX_QUOTE: usize = 40;
/// Longest message kept, in characters.
pub const MAX_MESSAGE: usize = 400;

/// `msg` with every long quoted span shortened and the whole capped.
pub fn shorten(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(MAX_MESSAGE + 8));
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' && c != '`' {
            continue;
        }
        // Inside a quote: copy up to MAX_QUOTE characters, skip the rest.
        let mut kept = 0;
        let mut cut = false;
        while let Some(q) = chars.next() {
            let escaped = c == '"' && q == '\\';
            let end = q == c;
            if end {
                if cut {
                    out.push('…');
                }
                out.push(q);
                break;
            }
            if kept < MAX_QUOTE {
                out.push(q);
                if escaped {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
            } else {
                cut = true;
                if escaped {
                    chars.next();
                }
            }
            kept += 1;
        }
    }
    cap(out, MAX_MESSAGE)
}

/// `s` cut to `max` characters (plus `…` when cut).
pub fn cap(mut s: String, max: usize) -> String {
    if let Some((at, _)) = s.char_indices().nth(max) {
        s.truncate(at);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_quotes_are_cut() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin";
        let msg = format!("invalid type: string \"{passwd}\", expected an object");
        let short = shorten(&msg);
        assert_eq!(short, "invalid type: string \"root:x:0:0:root:/root:/bin/bash\\ndaemon:x…\", expected an object");
        assert!(!short.contains("nologin"));
        assert_eq!(shorten("unknown field `vmNam`, expected one of `a`"), "unknown field `vmNam`, expected one of `a`");
        let long_key = format!("unknown field `{}`", "k".repeat(100));
        assert_eq!(shorten(&long_key), format!("unknown field `{}…`", "k".repeat(40)));
        // An unterminated quote is cut too.
        assert_eq!(shorten(&format!("x \"{}", "y".repeat(100))).chars().count(), 3 + 40);
        assert_eq!(shorten(&"z".repeat(1000)).chars().count(), MAX_MESSAGE + 1);
    }
}
