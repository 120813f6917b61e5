//! kubectl's JSONPath templates (`-o jsonpath='{.items[*].metadata.name}'`,
//! `--for=jsonpath=...`, `--sort-by`, custom columns) on top of `serde_json_path`
//! (RFC 9535). A template is text with `{...}` actions: an expression (`.a.b`,
//! `$.a`, `@.a`), a quoted literal (`{"\n"}`), or `{range EXPR}...{end}`. kubectl's
//! dialect differs from RFC 9535 only in that a leading `.` means the root and `@` the
//! current item in a range; both are rewritten before parsing. Several results print
//! separated by a space; strings print bare, everything else as compact JSON.

use serde_json::Value;
use serde_json_path::JsonPath;

/// One path expression, written the kubectl way.
#[derive(Debug, Clone)]
pub struct Expr {
    text: String,
    path: JsonPath,
}

impl Expr {
    /// Parses `.a.b`, `$.a.b`, `{.a.b}` or `@.a` (relative to the value queried).
    pub fn parse(s: &str) -> Result<Expr, String> {
        let t = s.trim();
        let t = t.strip_prefix('{').and_then(|x| x.strip_suffix('}')).unwrap_or(t).trim();
        let rfc = if let Some(rest) = t.strip_prefix('@') {
            format!("${rest}")
        } else if t.starts_with('$') {
            t.to_string()
        } else if t.starts_with('.') || t.starts_with('[') {
            format!("${t}")
        } else {
            format!("$.{t}")
        };
        let path = JsonPath::parse(&rfc).map_err(|e| format!("JSONPath {s:?}: {e}"))?;
        Ok(Expr { text: t.to_string(), path })
    }

    /// Every value the expression selects in `v`.
    pub fn query<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        self.path.query(v).all()
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// How a selected value prints: strings bare, the rest as JSON.
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Expr(Expr),
    Range(Expr, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template(Vec<Node>);

impl Template {
    /// Parses a kubectl JSONPath template; text without `{` is taken as one expression.
    pub fn parse(s: &str) -> Result<Template, String> {
        if !s.contains('{') {
            return Ok(Template(vec![Node::Expr(Expr::parse(s)?)]));
        }
        let mut actions = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                actions.push(Action::Text(rest[..open].to_string()));
            }
            let close =
                closing_brace(&rest[open..]).ok_or_else(|| format!("JSONPath template {s:?}: unclosed '{{'"))?;
            actions.push(Action::parse(&rest[open + 1..open + close])?);
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            actions.push(Action::Text(rest.to_string()));
        }
        let mut it = actions.into_iter();
        let nodes = build(&mut it, false).map_err(|e| format!("JSONPath template {s:?}: {e}"))?;
        Ok(Template(nodes))
    }

    /// Renders the template against `v`.
    pub fn render(&self, v: &Value) -> String {
        let mut out = String::new();
        render(&self.0, v, &mut out);
        out
    }
}

/// The offset of the `}` that closes the `{` at 0, skipping quoted strings.
fn closing_brace(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '}' => return Some(i),
            None => {}
        }
    }
    None
}

enum Action {
    Text(String),
    Expr(Expr),
    Range(Expr),
    End,
}

impl Action {
    fn parse(inner: &str) -> Result<Action, String> {
        let t = inner.trim();
        if t == "end" {
            return Ok(Action::End);
        }
        if let Some(e) = t.strip_prefix("range ") {
            return Ok(Action::Range(Expr::parse(e)?));
        }
        if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
            let s: String = serde_json::from_str(t).map_err(|e| format!("literal {t}: {e}"))?;
            return Ok(Action::Text(s));
        }
        Ok(Action::Expr(Expr::parse(t)?))
    }
}

fn build(it: &mut impl Iterator<Item = Action>, in_range: bool) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while let Some(a) = it.next() {
        match a {
            Action::Text(t) => nodes.push(Node::Text(t)),
            Action::Expr(e) => nodes.push(Node::Expr(e)),
            Action::Range(e) => nodes.push(Node::Range(e, build(it, true)?)),
            Action::End if in_range => return Ok(nodes),
            Action::End => return Err("{end} without {range}".into()),
        }
    }
    if in_range {
        return Err("{range} without {end}".into());
    }
    Ok(nodes)
}

fn render(nodes: &[Node], v: &Value, out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Expr(e) => {
                let vals: Vec<String> = e.query(v).into_iter().map(show).collect();
                out.push_str(&vals.join(" "));
            }
            Node::Range(e, body) => {
                let vals = e.query(v);
                // `{range .items}` over one array walks its elements, as `.items[*]` does.
                let items: Vec<&Value> = match vals.as_slice() {
                    [Value::Array(a)] if !e.text().ends_with("[*]") => a.iter().collect(),
                    _ => vals,
                };
                for x in items {
                    render(body, x, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubectl_templates() {
        let v = json!({"items": [
            {"metadata": {"name": "a"}, "status": {"phase": "Completed", "n": 3}},
            {"metadata": {"name": "b"}, "status": {"phase": "Rejected"}},
        ]});
        let r = |t: &str| Template::parse(t).unwrap().render(&v);
        assert_eq!(r("{.items[*].metadata.name}"), "a b");
        assert_eq!(r("{range .items[*]}{.metadata.name}={.status.phase}{\"\\n\"}{end}"), "a=Completed\nb=Rejected\n");
        assert_eq!(r("{.items[0].status.n}"), "3");
        assert_eq!(r("{.items[?(@.status.phase==\"Rejected\")].metadata.name}"), "b");
        assert_eq!(r(".items[1].metadata.name"), "b");
        assert_eq!(r("x{.nothing}y"), "xy");
        assert!(Template::parse("{range .items[*]}{.a}").is_err());
        assert!(Template::parse("{end}").is_err());
        assert!(Template::parse("{.items[}").is_err());
        assert!(Template::parse("{.a").is_err());
    }
}
