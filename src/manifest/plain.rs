//! The fast decoder for the plain subset of YAML that manifests are nearly always
//! written in: block mappings and sequences, plain scalars, quoted scalars without
//! escapes, comments. It reads one document into a small tree and hands it to the same
//! visitors serde_yaml feeds (`DocVisitor`), with serde_yaml's rules for turning
//! scalars into values, so a document it accepts decodes to exactly what serde_yaml
//! gives. Anything else (flow collections, anchors, aliases, tags, block scalars,
//! escapes, multi-line scalars, tabs, odd indentation) and any decoding error is
//! `None`: the caller then decodes the document with serde_yaml, and when that fails
//! too, the whole file the reference way, so errors stay exactly as they were.
//!
//! The scalar rules (`parse_*`, `digits_but_not_number`, `untagged_scalar`) follow
//! serde_yaml 0.9's `de.rs` (MIT or Apache-2.0) for untagged scalars.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Deepest nesting the parser accepts (serde_yaml allows 128; manifests stay far below).
const MAX_DEPTH: usize = 64;

/// Longest key the parser accepts (libyaml refuses simple keys over 1024 characters).
const MAX_KEY_BYTES: usize = 1000;

/// A node of one document.
#[derive(Debug, PartialEq)]
pub(super) enum Node<'a> {
    /// A scalar's text, and whether it was plain (unquoted).
    Scalar(Cow<'a, str>, bool),
    /// A block sequence.
    Seq(Vec<Node<'a>>),
    /// A block mapping (keys are scalars).
    Map(Vec<(Node<'a>, Node<'a>)>),
}

/// Decodes the text of one document (from its `---` line, if any, to the next one)
/// with `seed`; an empty document is an empty plain scalar, as libyaml reads it. None:
/// not in the subset, or the seed refused it.
pub(super) fn decode<'a, T, S>(doc: &'a str, seed: S) -> Option<T>
where
    S: DeserializeSeed<'a, Value = T>,
{
    let root = parse(doc)?.unwrap_or(Node::Scalar(Cow::Borrowed(""), true));
    seed.deserialize(De { node: &root, depth: 128 }).ok()
}

/// Whether `c` may appear in a document of the subset: printable, no tabs, no
/// carriage returns, no line breaks other than `\n` (libyaml refuses control
/// characters and reads NEL, LS and PS as breaks).
fn allowed_char(c: char) -> bool {
    matches!(c, '\n' | ' '..='~')
        || (c >= '\u{a0}' && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'))
}

/// Parses one document into its root node; `Some(None)` when it holds no node.
pub(super) fn parse(doc: &str) -> Option<Option<Node<'_>>> {
    // Without an early exit the compiler vectorises the common (ASCII) case.
    let ascii = doc.bytes().fold(true, |ok, b| ok & (b == b'\n' || (b' '..=b'~').contains(&b)));
    let clean = ascii || doc.chars().all(allowed_char);
    if !clean {
        return None;
    }
    let mut lines = Vec::with_capacity(64);
    for (i, line) in split_lines(doc).enumerate() {
        let body = if i == 0 && line.starts_with("---") {
            // The marker line may carry nothing but a comment.
            let rest = line[3..].trim_start_matches(' ');
            if !(rest.is_empty() || (rest.starts_with('#') && line.as_bytes().get(3) == Some(&b' '))) {
                return None;
            }
            continue;
        } else {
            line
        };
        if body.starts_with("---") || body.starts_with("...") || body.starts_with('%') {
            return None;
        }
        let content = body.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        lines.push(Line::new(body.len() - content.len(), content));
    }
    if lines.is_empty() {
        return Some(None);
    }
    let mut p = Parser { lines, pos: 0 };
    let indent = p.lines[0].indent;
    let root = p.node(indent, 0)?;
    (p.pos == p.lines.len()).then_some(Some(root))
}

/// The lines of `text` (as `split('\n')`), cut by a plain byte loop: lines are short,
/// and a search call per line costs more than it saves.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest?;
        match t.bytes().position(|b| b == b'\n') {
            Some(at) => {
                rest = Some(&t[at + 1..]);
                Some(&t[..at])
            }
            None => {
                rest = None;
                Some(t)
            }
        }
    })
}

/// A line with content: its indentation, its text after it (a comment and trailing
/// spaces cut), where its first `: ` (or a final `:`) is, and whether a second `: `
/// follows (which no line of the subset has).
#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    content: &'a str,
    colon: Option<usize>,
    two_colons: bool,
}

impl<'a> Line<'a> {
    /// Reads a line's text after its indentation (not empty, no leading `#`) in one pass.
    fn new(indent: usize, text: &'a str) -> Self {
        let b = text.as_bytes();
        let (mut end, mut colon, mut two_colons) = (b.len(), None, false);
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'#' if i > 0 && b[i - 1] == b' ' => {
                    end = i;
                    break;
                }
                b':' if matches!(b.get(i + 1), None | Some(b' ')) => {
                    if colon.is_some() {
                        two_colons = true;
                    } else {
                        colon = Some(i);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let content = text[..end].trim_end_matches(' ');
        // A final ':' cut off by the comment's spaces still ends the line.
        let colon = colon.filter(|&c| c < content.len());
        Line { indent, content, colon, two_colons: two_colons && colon.is_some() }
    }

    /// The same line without its first `skip` bytes (after a sequence's `- `).
    fn advance(self, skip: usize, indent: usize) -> Self {
        Line {
            indent,
            content: &self.content[skip..],
            colon: self.colon.and_then(|c| c.checked_sub(skip)),
            two_colons: self.two_colons,
        }
    }
}

struct Parser<'a> {
    lines: Vec<Line<'a>>,
    pos: usize,
}

fn is_seq_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

impl<'a> Parser<'a> {
    fn current(&self) -> Option<Line<'a>> {
        self.lines.get(self.pos).copied()
    }

    /// The node starting at the current line, whose content starts at column `indent`.
    fn node(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let line = self.current()?;
        if is_seq_item(line.content) {
            self.seq(indent, depth)
        } else if line.colon.is_some() && !starts_quoted(line.content) {
            self.map(indent, depth)
        } else {
            self.pos += 1;
            inline_scalar(line.content)
        }
    }

    /// The value after `key:` with nothing else on its line: the node on the lines
    /// below (more indented, or a sequence at the key's own indentation), else empty.
    fn value_below(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        match self.current() {
            Some(l) if l.indent > indent => self.node(l.indent, depth + 1),
            Some(l) if l.indent == indent && is_seq_item(l.content) => self.seq(indent, depth + 1),
            _ => Some(Node::Scalar(Cow::Borrowed(""), true)),
        }
    }

    fn map(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        let mut entries = Vec::new();
        while let Some(line) = self.current() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent || is_seq_item(line.content) {
                return None;
            }
            let (key, rest) = split_key(line)?;
            // libyaml reads a key of more than 1024 characters as an error.
            if key.len() > MAX_KEY_BYTES {
                return None;
            }
            let key = plain_scalar(key)?;
            self.pos += 1;
            let value = if rest.is_empty() || rest.starts_with('#') {
                self.value_below(indent, depth)?
            } else {
                let v = inline_scalar(rest)?;
                // A more indented line would continue the scalar.
                if self.current().is_some_and(|l| l.indent > indent) {
                    return None;
                }
                v
            };
            entries.push((key, value));
        }
        Some(Node::Map(entries))
    }

    fn seq(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        let mut items = Vec::new();
        while let Some(line) = self.current() {
            if line.indent < indent || (line.indent == indent && !is_seq_item(line.content)) {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let after = &line.content[1..];
            let rest = after.trim_start_matches(' ');
            if rest.is_empty() {
                self.pos += 1;
                items.push(match self.current() {
                    Some(l) if l.indent > indent => self.node(l.indent, depth + 1)?,
                    _ => Node::Scalar(Cow::Borrowed(""), true),
                });
                continue;
            }
            if rest.starts_with('#') {
                return None;
            }
            // The item's content as a line of its own, at its column.
            let column = indent + 1 + (after.len() - rest.len());
            self.lines[self.pos] = line.advance(line.content.len() - rest.len(), column);
            let item = self.node(column, depth + 1)?;
            if self.current().is_some_and(|l| l.indent > indent && l.indent != column) {
                return None;
            }
            items.push(item);
        }
        Some(Node::Seq(items))
    }
}

/// Whether a line starts with a quote or a flow collection (no plain key then).
fn starts_quoted(content: &str) -> bool {
    matches!(content.as_bytes()[0], b'"' | b'\'' | b'?' | b'{' | b'[')
}

/// Splits `key: rest` (or `key:` at the end) at the first `: `; None when the line is
/// no plain mapping entry of the subset (a quoted key, a second `: `).
fn split_key<'a>(line: Line<'a>) -> Option<(&'a str, &'a str)> {
    let at = line.colon?;
    if starts_quoted(line.content) || line.two_colons {
        return None;
    }
    let rest = line.content[at + 1..].trim_start_matches(' ');
    Some((&line.content[..at], rest))
}

/// A plain scalar of the subset: one line, no indicator first, no `: ` inside (the
/// caller knows), no comment (cut by `Line::new`).
fn plain_scalar(s: &str) -> Option<Node<'_>> {
    let b = s.as_bytes();
    let first = *b.first()?;
    let bad_first = matches!(
        first,
        b'?' | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
    ) || (first == b'-' && matches!(b.get(1), None | Some(b' ')));
    if bad_first || s.ends_with(' ') || s.ends_with(':') {
        return None;
    }
    Some(Node::Scalar(Cow::Borrowed(s), true))
}

/// A scalar written after `key: ` or `- `: plain, or quoted on one line.
fn inline_scalar(s: &str) -> Option<Node<'_>> {
    match s.as_bytes()[0] {
        b'"' => {
            let end = s[1..].find('"')? + 1;
            let inner = &s[1..end];
            if inner.contains('\\') || !only_comment(&s[end + 1..]) {
                return None;
            }
            Some(Node::Scalar(Cow::Borrowed(inner), false))
        }
        b'\'' => {
            let mut out = String::new();
            let mut rest = &s[1..];
            loop {
                let q = rest.find('\'')?;
                out.push_str(&rest[..q]);
                if rest.as_bytes().get(q + 1) == Some(&b'\'') {
                    out.push('\'');
                    rest = &rest[q + 2..];
                } else {
                    rest = &rest[q + 1..];
                    break;
                }
            }
            if !only_comment(rest) {
                return None;
            }
            Some(Node::Scalar(Cow::Owned(out), false))
        }
        _ => plain_scalar(s),
    }
}

/// Whether what follows a quoted scalar on its line is nothing or a comment.
fn only_comment(rest: &str) -> bool {
    let t = rest.trim_start_matches(' ');
    t.is_empty() || (t.starts_with('#') && t.len() < rest.len())
}

/// Any refusal: the caller decodes the document with serde_yaml instead.
#[derive(Debug)]
pub(super) struct Bail;

impl fmt::Display for Bail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not decoded by the fast path")
    }
}

impl std::error::Error for Bail {}

impl de::Error for Bail {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Bail
    }
}

type Result<T> = std::result::Result<T, Bail>;

/// A deserializer of one node; `depth` is serde_yaml's remaining recursion budget.
struct De<'n, 'a> {
    node: &'n Node<'a>,
    depth: u8,
}

impl<'n, 'a> De<'n, 'a> {
    fn deeper(&self) -> Result<u8> {
        self.depth.checked_sub(1).ok_or(Bail)
    }

    /// The plain scalar's text (None for a quoted scalar or a collection).
    fn plain(&self) -> Option<&'n str> {
        match self.node {
            Node::Scalar(s, true) => Some(s),
            _ => None,
        }
    }

    fn visit_text<V: Visitor<'a>>(&self, s: &'n Cow<'a, str>, visitor: V) -> Result<V::Value> {
        match s {
            Cow::Borrowed(b) => visitor.visit_borrowed_str(b),
            Cow::Owned(o) => visitor.visit_str(o),
        }
    }

    fn visit_seq<V: Visitor<'a>>(&self, items: &'n [Node<'a>], visitor: V) -> Result<V::Value> {
        let mut access = Seq { items, at: 0, depth: self.deeper()? };
        let v = visitor.visit_seq(&mut access)?;
        // serde_yaml refuses a sequence its visitor did not read to the end.
        (access.at == items.len()).then_some(v).ok_or(Bail)
    }

    fn visit_map<V: Visitor<'a>>(&self, entries: &'n [(Node<'a>, Node<'a>)], visitor: V) -> Result<V::Value> {
        let mut access = Map { entries, at: 0, value_taken: true, depth: self.deeper()? };
        let v = visitor.visit_map(&mut access)?;
        (access.at == entries.len() && access.value_taken).then_some(v).ok_or(Bail)
    }
}

struct Seq<'n, 'a> {
    items: &'n [Node<'a>],
    at: usize,
    depth: u8,
}

impl<'a> de::SeqAccess<'a> for Seq<'_, 'a> {
    type Error = Bail;
    fn next_element_seed<T: DeserializeSeed<'a>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        let Some(node) = self.items.get(self.at) else { return Ok(None) };
        self.at += 1;
        seed.deserialize(De { node, depth: self.depth }).map(Some)
    }
}

struct Map<'n, 'a> {
    entries: &'n [(Node<'a>, Node<'a>)],
    at: usize,
    value_taken: bool,
    depth: u8,
}

impl<'a> de::MapAccess<'a> for Map<'_, 'a> {
    type Error = Bail;
    fn next_key_seed<K: DeserializeSeed<'a>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if !self.value_taken {
            return Err(Bail);
        }
        let Some((key, _)) = self.entries.get(self.at) else { return Ok(None) };
        self.value_taken = false;
        seed.deserialize(De { node: key, depth: self.depth }).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value> {
        let Some((_, value)) = self.entries.get(self.at).filter(|_| !self.value_taken) else { return Err(Bail) };
        self.at += 1;
        self.value_taken = true;
        seed.deserialize(De { node: value, depth: self.depth })
    }
}

/// A scalar read as a unit variant's name (serde_yaml's `UnitVariantAccess`).
struct UnitVariant<'n, 'a>(De<'n, 'a>);

impl<'n, 'a> de::EnumAccess<'a> for UnitVariant<'n, 'a> {
    type Error = Bail;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'a>>(self, seed: V) -> Result<(V::Value, Self)> {
        let v = seed.deserialize(De { node: self.0.node, depth: self.0.depth })?;
        Ok((v, self))
    }
}

impl<'a> de::VariantAccess<'a> for UnitVariant<'_, 'a> {
    type Error = Bail;
    fn unit_variant(self) -> Result<()> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, _: T) -> Result<T::Value> {
        Err(Bail)
    }
    fn tuple_variant<V: Visitor<'a>>(self, _: usize, _: V) -> Result<V::Value> {
        Err(Bail)
    }
    fn struct_variant<V: Visitor<'a>>(self, _: &'static [&'static str], _: V) -> Result<V::Value> {
        Err(Bail)
    }
}

macro_rules! via {
    ($($method:ident => $target:ident),* $(,)?) => {
        $(fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
            self.$target(visitor)
        })*
    };
}

impl<'n, 'a> de::Deserializer<'a> for De<'n, 'a> {
    type Error = Bail;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        match self.node {
            Node::Scalar(s, true) => untagged_scalar(visitor, s),
            Node::Scalar(s, false) => self.visit_text(s, visitor),
            Node::Seq(items) => self.visit_seq(items, visitor),
            Node::Map(entries) => self.visit_map(entries, visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        match self.plain().and_then(parse_bool) {
            Some(b) => visitor.visit_bool(b),
            None => Err(Bail),
        }
    }

    fn deserialize_i64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        match self.plain().and_then(|s| parse_signed_int(s, i64::from_str_radix)) {
            Some(i) => visitor.visit_i64(i),
            None => Err(Bail),
        }
    }

    fn deserialize_i128<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        match self.plain().and_then(|s| parse_signed_int(s, i128::from_str_radix)) {
            Some(i) => visitor.visit_i128(i),
            None => Err(Bail),
        }
    }

    fn deserialize_u64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        match self.plain().and_then(|s| parse_unsigned_int(s, u64::from_str_radix)) {
            Some(i) => visitor.visit_u64(i),
            None => Err(Bail),
        }
    }

    fn deserialize_u128<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        match self.plain().and_then(|s| parse_unsigned_int(s, u128::from_str_radix)) {
            Some(i) => visitor.visit_u128(i),
            None => Err(Bail),
        }
    }

    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        match self.plain().and_then(parse_f64) {
            Some(f) => visitor.visit_f64(f),
            None => Err(Bail),
        }
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        match self.node {
            Node::Scalar(s, _) => self.visit_text(s, visitor),
            _ => Err(Bail),
        }
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, _: V) -> Result<V::Value> {
        Err(Bail)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, _: V) -> Result<V::Value> {
        Err(Bail)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        match self.plain() {
            Some(s) if s.is_empty() || parse_null(s) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        match self.plain() {
            Some(s) if s.is_empty() || parse_null(s) => visitor.visit_unit(),
            _ => Err(Bail),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(self, _: &'static str, visitor: V) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(self, _: &'static str, visitor: V) -> Result<V::Value> {
        let depth = self.deeper()?;
        visitor.visit_newtype_struct(De { node: self.node, depth })
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        match self.node {
            Node::Seq(items) => self.visit_seq(items, visitor),
            Node::Scalar(s, true) if s.is_empty() => visitor.visit_seq(Seq { items: &[], at: 0, depth: self.depth }),
            _ => Err(Bail),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(self, _: &'static str, _: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        match self.node {
            Node::Map(entries) => self.visit_map(entries, visitor),
            Node::Scalar(s, true) if s.is_empty() => {
                visitor.visit_map(Map { entries: &[], at: 0, value_taken: true, depth: self.depth })
            }
            _ => Err(Bail),
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.node {
            Node::Scalar(..) => visitor.visit_enum(UnitVariant(self)),
            _ => Err(Bail),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    via! {
        deserialize_i8 => deserialize_i64,
        deserialize_i16 => deserialize_i64,
        deserialize_i32 => deserialize_i64,
        deserialize_u8 => deserialize_u64,
        deserialize_u16 => deserialize_u64,
        deserialize_u32 => deserialize_u64,
        deserialize_f32 => deserialize_f64,
        deserialize_char => deserialize_str,
        deserialize_string => deserialize_str,
        deserialize_identifier => deserialize_str,
    }
}

impl<'n, 'a> IntoDeserializer<'a, Bail> for De<'n, 'a> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

// serde_yaml 0.9's rules for untagged scalars (de.rs), kept as they are there.

fn parse_null(scalar: &str) -> bool {
    matches!(scalar, "null" | "Null" | "NULL" | "~")
}

fn parse_bool(scalar: &str) -> Option<bool> {
    match scalar {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

type Radix<T> = fn(&str, u32) -> std::result::Result<T, std::num::ParseIntError>;

fn parse_unsigned_int<T>(scalar: &str, from_str_radix: Radix<T>) -> Option<T> {
    let unpositive = scalar.strip_prefix('+').unwrap_or(scalar);
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = unpositive.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(int) = from_str_radix(rest, radix) {
                return Some(int);
            }
        }
    }
    if unpositive.starts_with(['+', '-']) || digits_but_not_number(scalar) {
        return None;
    }
    from_str_radix(unpositive, 10).ok()
}

fn parse_signed_int<T>(scalar: &str, from_str_radix: Radix<T>) -> Option<T> {
    let unpositive = if let Some(unpositive) = scalar.strip_prefix('+') {
        if unpositive.starts_with(['+', '-']) {
            return None;
        }
        unpositive
    } else {
        scalar
    };
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = unpositive.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(int) = from_str_radix(rest, radix) {
                return Some(int);
            }
        }
        if let Some(rest) = scalar.strip_prefix('-').and_then(|r| r.strip_prefix(prefix)) {
            if let Ok(int) = from_str_radix(&format!("-{rest}"), radix) {
                return Some(int);
            }
        }
    }
    if digits_but_not_number(scalar) {
        return None;
    }
    from_str_radix(unpositive, 10).ok()
}

fn parse_negative_int<T>(scalar: &str, from_str_radix: Radix<T>) -> Option<T> {
    for (prefix, radix) in [("-0x", 16), ("-0o", 8), ("-0b", 2)] {
        if let Some(rest) = scalar.strip_prefix(prefix) {
            if let Ok(int) = from_str_radix(&format!("-{rest}"), radix) {
                return Some(int);
            }
        }
    }
    if digits_but_not_number(scalar) {
        return None;
    }
    from_str_radix(scalar, 10).ok()
}

fn parse_f64(scalar: &str) -> Option<f64> {
    let unpositive = if let Some(unpositive) = scalar.strip_prefix('+') {
        if unpositive.starts_with(['+', '-']) {
            return None;
        }
        unpositive
    } else {
        scalar
    };
    if let ".inf" | ".Inf" | ".INF" = unpositive {
        return Some(f64::INFINITY);
    }
    if let "-.inf" | "-.Inf" | "-.INF" = scalar {
        return Some(f64::NEG_INFINITY);
    }
    if let ".nan" | ".NaN" | ".NAN" = scalar {
        return Some(f64::NAN.copysign(1.0));
    }
    unpositive.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn digits_but_not_number(scalar: &str) -> bool {
    let scalar = scalar.strip_prefix(['-', '+']).unwrap_or(scalar);
    scalar.len() > 1 && scalar.starts_with('0') && scalar[1..].bytes().all(|b| b.is_ascii_digit())
}

fn untagged_scalar<'a, V: Visitor<'a>>(visitor: V, s: &Cow<'a, str>) -> Result<V::Value> {
    let v: &str = s;
    if v.is_empty() || parse_null(v) {
        return visitor.visit_unit();
    }
    if let Some(b) = parse_bool(v) {
        return visitor.visit_bool(b);
    }
    if let Some(int) = parse_unsigned_int(v, u64::from_str_radix) {
        return visitor.visit_u64(int);
    }
    if let Some(int) = parse_negative_int(v, i64::from_str_radix) {
        return visitor.visit_i64(int);
    }
    if let Some(int) = parse_unsigned_int(v, u128::from_str_radix) {
        return visitor.visit_u128(int);
    }
    if let Some(int) = parse_negative_int(v, i128::from_str_radix) {
        return visitor.visit_i128(int);
    }
    if !digits_but_not_number(v) {
        if let Some(f) = parse_f64(v) {
            return visitor.visit_f64(f);
        }
    }
    match s {
        Cow::Borrowed(b) => visitor.visit_borrowed_str(b),
        Cow::Owned(o) => visitor.visit_str(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::marker::PhantomData;

    /// What the fast path makes of `doc` as a loosely typed value (None: refused).
    fn fast(doc: &str) -> Option<serde_yaml::Value> {
        decode(doc, PhantomData::<serde_yaml::Value>)
    }

    /// What serde_yaml makes of it (None: an error).
    fn reference(doc: &str) -> Option<serde_yaml::Value> {
        serde_yaml::from_str::<serde_yaml::Value>(doc).ok()
    }

    /// The fast path may refuse anything, but what it accepts, serde_yaml reads alike.
    fn agrees(doc: &str) -> std::result::Result<bool, String> {
        match fast(doc) {
            None => Ok(false),
            Some(v) => match reference(doc) {
                Some(r) if r == v => Ok(true),
                r => Err(format!("{doc:?}: fast {v:?}, serde_yaml {r:?}")),
            },
        }
    }

    #[test]
    fn accepts_block_documents_as_serde_yaml_reads_them() {
        let docs = [
            "a: 1\nb: -2\nc: 0x1F\nd: 012\ne: 1.5\nf: .inf\ng: ~\nh: null\ni: True\nj: yes\nk:\nl: ''\n",
            "---\nmetadata:\n  name: vm-1\n  labels:\n    app: x   # a comment\n    sectl.io/site: site-a\n",
            "--- # first\nspec:\n  devices:\n  - mn: \"1A2B\"\n    usage: shared\n  - mn: '12''34'\n    usage: exclusive\n",
            "l:\n    - a\n    - - b\n      - c\n    -\n      x: 1\n    - # nothing here\n      y: 2\n    -\n",
            "# only a comment\n\nk: v#not-a-comment\nurl: http://x:80/a\nm: a b  c\n",
            "a: \"x # y\"\n",
            "list:\n- 1\n- two\nafter: 3\n",
            "- a\n- b: 1\n  c: 2\n",
            "",
            "---\n# empty\n",
            "key with spaces: value, with [brackets] and {braces}\n",
            "a: +5\nb: -0x10\nc: 1e3\nd: 0o17\ne: 0b101\nf: 1_000\ng: '5'\nh: \"true\"\n",
            "ünicode: wert ✓\n",
        ];
        for d in docs {
            let ok = agrees(d).unwrap();
            assert!(ok || d.contains("# nothing") || d.contains("x # y"), "refused {d:?}");
        }
        // Integers past 64 bits: refused or read alike.
        agrees("a: 99999999999999999999999\nb: -99999999999999999999999\nc: 340282366920938463463374607431768211456\n")
            .unwrap();
    }

    #[test]
    fn refuses_what_is_outside_the_subset() {
        let docs = [
            "a: {b: 1}\n",
            "a: [1, 2]\n",
            "a: &x 1\nb: *x\n",
            "a: !tag 1\n",
            "a: |\n  text\n",
            "a: >\n  text\n",
            "a:\tb\n",
            "a: b\r\n",
            "a: plain\n  continued\n",
            "a: \"esc\\n\"\n",
            "a: \"open\n  close\"\n",
            "\"quoted key\": 1\n",
            "? complex\n: key\n",
            "%YAML 1.1\n---\na: 1\n",
            "a: 1\n...\n",
            "a: b: c\n",
            "a: 1\n  b: 2\n",
            "  a: 1\nb: 2\n",
            "- a\nb: 1\n",
            "a:\n  - x\n y: 1\n",
            "a: @x\n",
            "n: -\n",
            "a: \u{85}\n",
        ];
        for d in docs {
            assert_eq!(fast(d), None, "accepted {d:?}");
        }
        let long_key = format!("{}: 1\n", "k".repeat(1100));
        assert_eq!(fast(&long_key), None);
    }

    /// `doc_starts` (markers found by searching the whole text) gives the lines the
    /// line-by-line rule gives, and their byte offsets.
    #[test]
    fn document_starts_follow_the_line_rule() {
        let line_by_line = |text: &str| {
            let mut marks = Vec::new();
            let mut prologue_empty = true;
            let mut at = 0;
            for (i, line) in text.split_inclusive('\n').enumerate() {
                let l = line.trim_end_matches('\n').trim_end_matches('\r');
                if l.starts_with("---") && l[3..].chars().next().is_none_or(|c| c.is_whitespace()) {
                    marks.push((i + 1, at));
                } else if marks.is_empty() {
                    let t = l.trim();
                    prologue_empty &= t.is_empty() || t.starts_with('#') || t.starts_with('%');
                }
                at += line.len();
            }
            if marks.is_empty() || !prologue_empty {
                marks.insert(0, (1, 0));
            }
            marks
        };
        for text in [
            "",
            "a: 1\n",
            "---\n",
            "# c\n\n---\na: 1\n--- \nb: 2\n---\t\n---x\n ---\n---\r\nc: 3\n---",
            "a: 1\n---\nb: 1\n",
            "%YAML 1.1\n---\na: 1\n",
            "x\n---\u{a0}\n---\u{2028}y\n",
        ] {
            assert_eq!(super::super::doc_starts(text), line_by_line(text), "{text:?}");
        }
    }

    /// Pieces documents are built from: scalars that resolve to every type, indicators,
    /// comments, quotes.
    fn atom() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("1".to_string()),
            Just("-7".to_string()),
            Just("012".to_string()),
            Just("0x1f".to_string()),
            Just("+0o7".to_string()),
            Just("1.25".to_string()),
            Just("-.inf".to_string()),
            Just("~".to_string()),
            Just("Null".to_string()),
            Just("FALSE".to_string()),
            Just("yes".to_string()),
            Just("a b".to_string()),
            Just("a:b".to_string()),
            Just("a#b".to_string()),
            Just("a #b".to_string()),
            Just("'q''s'".to_string()),
            Just("\"d q\"".to_string()),
            Just("\"a: b\"".to_string()),
            Just("-x".to_string()),
            Just("".to_string()),
            "[a-z]{1,6}".prop_map(|s| s),
        ]
    }

    #[derive(Debug, Clone)]
    enum Tree {
        Leaf(String),
        Map(Vec<(String, Tree)>),
        Seq(Vec<Tree>),
    }

    fn tree() -> impl Strategy<Value = Tree> {
        atom().prop_map(Tree::Leaf).prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(("[a-z]{1,4}", inner.clone()), 1..4).prop_map(Tree::Map),
                proptest::collection::vec(inner, 1..4).prop_map(Tree::Seq),
            ]
        })
    }

    /// Writes `t` in block style; `step` is the indentation step, `indentless` puts a
    /// sequence under a key at the key's own indentation.
    fn render(t: &Tree, indent: usize, step: usize, indentless: bool, out: &mut String) {
        let pad = " ".repeat(indent);
        match t {
            Tree::Leaf(s) => {
                out.push_str(&pad);
                out.push_str(s);
                out.push('\n');
            }
            Tree::Map(entries) => {
                for (k, v) in entries {
                    match v {
                        Tree::Leaf(s) => out.push_str(&format!("{pad}{k}: {s}\n")),
                        Tree::Seq(_) if indentless => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            render(v, indent, step, indentless, out);
                        }
                        _ => {
                            out.push_str(&format!("{pad}{k}:  # c\n"));
                            render(v, indent + step, step, indentless, out);
                        }
                    }
                }
            }
            Tree::Seq(items) => {
                for v in items {
                    match v {
                        Tree::Leaf(s) => out.push_str(&format!("{pad}- {s}\n")),
                        _ => {
                            let mut inner = String::new();
                            render(v, indent + 2, step, indentless, &mut inner);
                            // The first line of the item goes after "- ".
                            let first_pad = indent + 2;
                            out.push_str(&pad);
                            out.push_str("- ");
                            out.push_str(&inner[first_pad..]);
                        }
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

        /// Block documents: accepted ones read as serde_yaml reads them.
        #[test]
        fn block_documents_agree(t in tree(), step in 1usize..4, indentless: bool) {
            let mut doc = String::new();
            render(&t, 0, step, indentless, &mut doc);
            agrees(&doc).map_err(TestCaseError::fail)?;
        }

        /// The same with random edits (characters YAML cares about, inserted or
        /// replacing): whatever the fast path still accepts, serde_yaml reads alike.
        #[test]
        fn edited_documents_agree(
            t in tree(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(vec![" ", ":", ": ", "-", "- ", "#", " #", "\n", "'", "\"", "  ", "\n  ", "\n- ", "~", "0", "."]), any::<bool>()), 1..4),
        ) {
            let mut doc = String::new();
            render(&t, 0, 2, false, &mut doc);
            for (at, piece, replace) in edits {
                let i = at.index(doc.len() + 1);
                let end = if replace { (i + 1).min(doc.len()) } else { i };
                doc.replace_range(i..end, piece);
            }
            agrees(&doc).map_err(TestCaseError::fail)?;
        }
    }
}
