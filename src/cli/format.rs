//! `-o` as kubectl takes it: `table` (default), `wide`, `json`, `yaml`, `name`,
//! `jsonpath=TEMPLATE`, `custom-columns=HEADER:PATH,...`, plus `--sort-by` and
//! `--no-headers`. Parsed by clap through `FromStr`, so a wrong value is a usage error
//! (exit 2) that lists the accepted forms.

use super::jsonpath::{show, Expr, Template};
use super::output;
use crate::api::{Kind, Resource};
use serde_json::{json, Value};
use std::str::FromStr;

/// The accepted forms, for messages and help.
pub const FORMATS: &str = "table, wide, json, yaml, name, jsonpath=TEMPLATE, custom-columns=HEADER:PATH[,...]";

/// An output format.
#[derive(Debug, Clone)]
pub enum Output {
    /// Columns for people.
    Table,
    /// More columns.
    Wide,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// `kind/name`, one per line.
    Name,
    /// A JSONPath template.
    JsonPath(Template),
    /// Columns picked by JSONPath.
    CustomColumns(Vec<(String, Expr)>),
}

impl FromStr for Output {
    type Err = String;

    fn from_str(s: &str) -> Result<Output, String> {
        if let Some(t) = s.strip_prefix("jsonpath=") {
            return Template::parse(t).map(Output::JsonPath);
        }
        if let Some(spec) = s.strip_prefix("custom-columns=") {
            let mut cols = Vec::new();
            for c in spec.split(',') {
                let (h, p) = c.split_once(':').ok_or_else(|| {
                    format!("custom-columns: {c:?} must be HEADER:JSONPATH, e.g. NAME:.metadata.name")
                })?;
                if h.is_empty() {
                    return Err(format!("custom-columns: {c:?} has an empty header"));
                }
                cols.push((h.to_string(), Expr::parse(p)?));
            }
            return Ok(Output::CustomColumns(cols));
        }
        match s {
            "table" => Ok(Output::Table),
            "wide" => Ok(Output::Wide),
            "json" => Ok(Output::Json),
            "yaml" => Ok(Output::Yaml),
            "name" => Ok(Output::Name),
            _ => Err(format!("unknown output format {s:?}; expected one of: {FORMATS}")),
        }
    }
}

impl Output {
    /// JSON or YAML, for the verbs that print a document.
    pub fn is_document(&self) -> bool {
        matches!(self, Output::Json | Output::Yaml)
    }
}

/// How lists print.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Leave out the header line of tables.
    pub no_headers: bool,
}

/// Orders `objs` by the first value `by` selects (numbers numerically).
pub fn sort(objs: &mut [Resource], by: &Expr) {
    let key = |r: &Resource| -> (u8, f64, String) {
        let v = serde_json::to_value(r).unwrap_or(Value::Null);
        match by.query(&v).first() {
            None => (0, 0.0, String::new()),
            Some(Value::Number(n)) => (1, n.as_f64().unwrap_or(0.0), String::new()),
            Some(x) => (2, 0.0, show(x)),
        }
    };
    objs.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(ka.2.cmp(&kb.2))
    });
}

/// A JSON or YAML document: one object as itself, several as a List.
pub fn document(objs: &[Resource], single: bool) -> Value {
    if single && objs.len() == 1 {
        serde_json::to_value(&objs[0]).expect("serialises")
    } else {
        json!({"apiVersion": "v1", "kind": "List", "items": objs})
    }
}

/// `kind/name`, as `-o name` prints and `get`, `delete`, `wait` accept.
pub fn qualified(r: &Resource) -> String {
    format!("{}/{}", r.kind().lower(), r.name())
}

/// Renders `groups` (objects per kind, in order) in `format`. `single` is true when
/// one object was asked for by name (JSON/YAML then print it bare, as kubectl does).
pub fn render(groups: &[(Kind, Vec<Resource>)], format: &Output, opts: &ListOptions, single: bool) -> String {
    let all: Vec<Resource> = groups.iter().flat_map(|(_, v)| v.iter().cloned()).collect();
    match format {
        Output::Json => serde_json::to_string_pretty(&document(&all, single)).expect("serialises") + "\n",
        Output::Yaml => crate::manifest::to_yaml(&document(&all, single)),
        Output::Name => all.iter().map(|r| qualified(r) + "\n").collect(),
        Output::JsonPath(t) => t.render(&document(&all, single)),
        Output::CustomColumns(cols) => {
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|r| {
                    let v = serde_json::to_value(r).expect("serialises");
                    cols.iter()
                        .map(|(_, e)| {
                            let vals: Vec<String> = e.query(&v).into_iter().map(show).collect();
                            if vals.is_empty() {
                                "<none>".into()
                            } else {
                                vals.join(",")
                            }
                        })
                        .collect()
                })
                .collect();
            let header: Vec<&str> = cols.iter().map(|(h, _)| h.as_str()).collect();
            strip_header(output::simple_table(&header, rows), opts.no_headers)
        }
        Output::Table | Output::Wide => {
            let qualify = groups.len() > 1;
            let mut out = String::new();
            for (kind, objs) in groups.iter().filter(|(_, o)| !o.is_empty()) {
                if !out.is_empty() {
                    out.push('\n');
                }
                let t = output::table(*kind, objs, matches!(format, Output::Wide), qualify);
                out.push_str(&strip_header(t, opts.no_headers));
            }
            out
        }
    }
}

fn strip_header(table: String, no_headers: bool) -> String {
    if no_headers {
        table.split_inclusive('\n').skip(1).collect()
    } else {
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_refuses_the_rest() {
        for ok in ["table", "wide", "json", "yaml", "name", "jsonpath={.a}", "custom-columns=N:.metadata.name,P:.x"] {
            assert!(ok.parse::<Output>().is_ok(), "{ok}");
        }
        for bad in ["tabel", "custom-columns=N", "custom-columns=:.x", "jsonpath={.a", ""] {
            assert!(bad.parse::<Output>().is_err(), "{bad}");
        }
    }
}
