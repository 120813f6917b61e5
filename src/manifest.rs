//! Manifests: reading YAML files, folders and stdin into `Resource`s, with errors that
//! name the file, line, column and field path. This is the only module that touches
//! serde_yaml, so the YAML library can be swapped here alone.
//!
//! Guards: files over 16 MiB, text that is not UTF-8, alias bombs (`expansion`: a
//! file may expand through aliases to at most 10 times its size, at least 1 MiB, at
//! most 64 MiB; serde_yaml's repetition limit behind it), duplicate keys (serde's
//! duplicate-field check; `StringMap` for labels) all give a clean error. A leading
//! UTF-8 byte-order mark is skipped. Errors quote at most a short excerpt of the input
//! (`excerpt`).

mod excerpt;
mod expansion;
mod locate;
mod recover;

use crate::api::{self, validate, AnySpec, Kind, ObjectMeta, Resource, API_VERSION};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest manifest file accepted.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Where a document came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// File name as given (or "-" for stdin).
    pub file: String,
    /// Line of the document's start in the file (1-based).
    pub line: usize,
}

/// A decoded manifest document.
#[derive(Debug, Clone)]
pub struct Document {
    /// Where it came from.
    pub source: Source,
    /// The object.
    pub resource: Resource,
    /// Its text, to place errors found later at their field (`check_documents`).
    pub(crate) origin: Origin,
}

/// The text of one document: the whole file, shared by its documents, and the byte
/// range of this one.
#[derive(Clone, Default)]
pub(crate) struct Origin {
    text: Arc<str>,
    range: std::ops::Range<usize>,
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin(bytes {:?})", self.range)
    }
}

impl Origin {
    fn text(&self) -> &str {
        self.text.get(self.range.clone()).unwrap_or("")
    }
}

/// Byte offset of each line's start.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Lines(std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    /// Byte range from the start of 1-based line `from` to the start of line `to` (or
    /// the end of the text).
    fn range(&self, from: usize, to: Option<usize>, len: usize) -> std::ops::Range<usize> {
        let at = |l: usize| self.0.get(l.saturating_sub(1)).copied().unwrap_or(len);
        at(from)..to.map_or(len, at).max(at(from))
    }
}

/// A problem with a manifest, pointing at its place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ManifestError {
    /// File name.
    pub file: String,
    /// Line (1-based, from the top of the file), 0 when unknown.
    pub line: usize,
    /// Column (1-based), 0 when unknown.
    pub column: usize,
    /// Field path, e.g. `spec.memoryMiB`; empty for the whole document.
    pub path: String,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column.max(1))?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

impl ManifestError {
    fn whole(file: &str, line: usize, message: impl Into<String>) -> Self {
        ManifestError { file: file.to_string(), line, column: 1, path: String::new(), message: message.into() }
    }

    /// The same error, quoting at most a short excerpt of the input (see `excerpt`).
    fn shortened(mut self) -> Self {
        self.message = excerpt::shorten(&self.message);
        self.path = self
            .path
            .split('.')
            .map(|seg| excerpt::cap(seg.to_string(), excerpt::MAX_QUOTE))
            .collect::<Vec<_>>()
            .join(".");
        self
    }
}

/// Decodes every document of one file's bytes. Returns the documents, or every error.
pub fn decode(file: &str, bytes: &[u8]) -> Result<Vec<Document>, Vec<ManifestError>> {
    let text = guarded_text(file, bytes)?;
    let starts = doc_starts(text);
    if let Some(docs) = decode_fast_at(file, text, &starts) {
        return Ok(with_origins_at(docs, text, &starts));
    }
    let lines: Vec<usize> = starts.iter().map(|s| s.0).collect();
    let (docs, errors) = decode_docs(file, text, &lines);
    if errors.is_empty() {
        Ok(with_origins_at(docs, text, &starts))
    } else {
        Err(errors.into_iter().map(ManifestError::shortened).collect())
    }
}

/// Decodes one YAML (or JSON) document into a loosely typed value, behind the same
/// guards as `decode` (size, UTF-8, nesting, alias expansion): for a partial object
/// such as a server-side apply configuration, which the typed decoder would refuse
/// for its missing fields.
pub fn decode_value(file: &str, bytes: &[u8]) -> Result<serde_json::Value, ManifestError> {
    let text = guarded_text(file, bytes).map_err(|mut es| es.remove(0))?;
    let mut docs = yaml_to_json(text).map_err(|e| ManifestError::whole(file, 0, e).shortened())?;
    if docs.len() != 1 {
        return Err(ManifestError::whole(file, 0, format!("expected one document, found {}", docs.len())));
    }
    Ok(docs.remove(0))
}

/// The text of a file's bytes once the guards passed.
fn guarded_text<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, Vec<ManifestError>> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(vec![ManifestError::whole(
            file,
            0,
            format!("file is {} bytes; manifests may be at most {} bytes (16 MiB)", bytes.len(), MAX_FILE_BYTES),
        )]);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.valid_up_to();
            let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
            let col = at - bytes[..at].iter().rposition(|b| *b == b'\n').map(|p| p + 1).unwrap_or(0) + 1;
            return Err(vec![ManifestError {
                file: file.to_string(),
                line,
                column: col,
                path: String::new(),
                message: "not UTF-8 text (a binary file?); manifests must be YAML".into(),
            }]);
        }
    };
    // A byte-order mark (some Windows editors write one) is not content.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(at) = text.find('\0') {
        let line = text[..at].matches('\n').count() + 1;
        return Err(vec![ManifestError::whole(
            file,
            line,
            "contains a NUL byte (a binary file?); manifests must be YAML",
        )]);
    }
    if let Some((line, column, message)) = flow_nesting_problem(text) {
        return Err(vec![ManifestError { file: file.to_string(), line, column, path: String::new(), message }]);
    }
    if let Some(over) = expansion::check(text) {
        let starts = doc_start_lines(text);
        let line = starts.get(over.document).copied().unwrap_or(1);
        return Err(vec![ManifestError::whole(
            file,
            line,
            format!(
                "document {} (from line {line}) expands through YAML aliases (*name) to more than {} bytes, \
                 the limit for this file of {} bytes ({} times its size, at least {} MiB, at most {} MiB); \
                 write the repeated content out or use fewer aliases",
                over.document + 1,
                over.budget,
                text.len(),
                expansion::RATIO,
                expansion::FLOOR >> 20,
                expansion::CEILING >> 20,
            ),
        )]);
    }
    Ok(text)
}

/// Gives each document its text: from its start line to the next document's.
fn with_origins_at(mut docs: Vec<Document>, text: &str, marks: &[(usize, usize)]) -> Vec<Document> {
    let shared: Arc<str> = Arc::from(text);
    // The byte offsets of the start lines, from the document starts (`doc_starts`)
    // when every one is there (no index of all lines needed), else from all lines.
    let offset = |line: usize| marks.binary_search_by_key(&line, |m| m.0).ok().map(|i| marks[i].1);
    let offsets: Vec<usize> = match docs.iter().map(|d| offset(d.source.line)).collect::<Option<Vec<_>>>() {
        Some(o) => o,
        None => {
            let lines = Lines::new(text);
            docs.iter().map(|d| lines.range(d.source.line, None, text.len()).start).collect()
        }
    };
    for (i, d) in docs.iter_mut().enumerate() {
        let (from, to) = (offsets[i], offsets.get(i + 1).copied().unwrap_or(text.len()));
        d.origin = Origin { text: shared.clone(), range: from..to.max(from) };
    }
    docs
}

/// Deepest nesting of flow collections (`[`, `{`) accepted. serde_yaml rejects more
/// than 128 levels of nesting anyway, so deeper input can only fail: it fails at once.
const MAX_FLOW_DEPTH: usize = 1000;

/// Most work accepted for the YAML scanner's flow nesting, counted as the nesting
/// depth summed over the tokens inside flow collections. The scanner's time grows
/// with it (it revisits every open level at each token), so a file of many moderately
/// deep collections would take minutes. Real manifests stay far below: 16 MiB of JSON
/// nested 8 deep is about 30 million.
const MAX_FLOW_WORK: u64 = 50_000_000;

/// Checks the nesting of flow collections before the YAML parser sees it: where it
/// first goes over `MAX_FLOW_DEPTH` or `MAX_FLOW_WORK`, as 1-based line, column and
/// message. A light scan that follows where nodes start: brackets in quoted, plain
/// and block scalars and in comments do not count.
fn flow_nesting_problem(text: &str) -> Option<(usize, usize, String)> {
    // Cheap first (a form the compiler vectorises): with few brackets, neither limit
    // can be reached, as depth <= brackets and tokens <= bytes.
    let brackets = count_bytes(text.as_bytes(), |c| c | 0x20 == b'{');
    if brackets <= MAX_FLOW_DEPTH && (brackets as u64).saturating_mul(text.len() as u64) <= MAX_FLOW_WORK {
        return None;
    }
    let blank = |c: Option<&u8>| matches!(c, None | Some(b' ' | b'\t' | b'\r'));
    let (mut depth, mut work) = (0usize, 0u64);
    let mut quote: Option<u8> = None;
    // Whether the next significant byte starts a node.
    let mut at_node = true;
    let mut block_scalar_above: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let b = line.as_bytes();
        let indent = b.iter().take_while(|&&c| c == b' ').count();
        if let Some(i) = block_scalar_above {
            if indent > i || line.trim().is_empty() {
                continue;
            }
            block_scalar_above = None;
        }
        if depth == 0 && quote.is_none() {
            at_node = true;
        }
        let mut end = b.len();
        let mut k = 0;
        while k < b.len() {
            let c = b[k];
            k += 1;
            if let Some(q) = quote {
                if q == b'"' && c == b'\\' {
                    k += 1;
                } else if c == q {
                    quote = None;
                    at_node = false;
                }
                continue;
            }
            // Whether `c` is a token inside a flow collection.
            let token = match c {
                b' ' | b'\t' => false,
                b'#' if k == 1 || blank(b.get(k - 2)) => {
                    end = k - 1;
                    break;
                }
                b'[' | b'{' if depth > 0 || at_node => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        let msg = format!("flow collections ('[', '{{') are nested more than {MAX_FLOW_DEPTH} deep");
                        return Some((n + 1, k, msg));
                    }
                    at_node = true;
                    true
                }
                b']' | b'}' if depth > 0 => {
                    depth -= 1;
                    at_node = false;
                    true
                }
                b',' if depth > 0 => {
                    at_node = true;
                    true
                }
                b':' if depth > 0 || blank(b.get(k)) => {
                    at_node = true;
                    depth > 0
                }
                b'-' | b'?' if at_node && blank(b.get(k)) => false,
                b'&' | b'!' if at_node => {
                    while k < b.len() && !blank(b.get(k)) {
                        k += 1;
                    }
                    depth > 0
                }
                b'"' | b'\'' if at_node => {
                    quote = Some(c);
                    at_node = false;
                    depth > 0
                }
                _ => std::mem::replace(&mut at_node, false) && depth > 0,
            };
            if token {
                work += depth as u64;
                if work > MAX_FLOW_WORK {
                    let msg = format!(
                        "flow collections ('[', '{{') are nested too deeply for their size (depth {depth} here): \
                         the YAML parser's work grows with depth times length; flatten them"
                    );
                    return Some((n + 1, k, msg));
                }
            }
        }
        let last = line[..end].trim_end().rsplit([' ', '\t']).next().unwrap_or("");
        let header = matches!(last.as_bytes().first(), Some(b'|' | b'>'))
            && last[1..].bytes().all(|c| c == b'-' || c == b'+' || c.is_ascii_digit());
        if depth == 0 && quote.is_none() && header {
            block_scalar_above = Some(indent);
        }
    }
    None
}

/// Files at least this big are decoded on several threads (see `decode_fast`).
const FAST_MIN_BYTES: usize = 256 * 1024;

/// The fast path, for when every document is valid: the file is cut into its
/// documents at document markers ("---" at column 0), and each is decoded by
/// serde_yaml alone, without field-path tracking; big files on every core, in contiguous runs of documents. Returns None
/// when anything is not clean: a directive or document end marker ("%", "..." at
/// column 0), an error in any document, a document serde_yaml reads as more than one.
/// The caller then decodes the whole text the reference way (`decode_docs`), so errors
/// and line numbers are exactly the same.
#[cfg(test)]
fn decode_fast(file: &str, text: &str) -> Option<Vec<Document>> {
    decode_fast_at(file, text, &doc_starts(text))
}

/// `decode_fast` with the document starts (`doc_starts`) known.
fn decode_fast_at(file: &str, text: &str, starts: &[(usize, usize)]) -> Option<Vec<Document>> {
    if text.starts_with('%') || text.starts_with("...") || text.contains("\n%") || text.contains("\n...") {
        return None;
    }
    let docs: Vec<(usize, &str)> = starts
        .iter()
        .enumerate()
        .map(|(i, &(line, at))| (line, &text[at..starts.get(i + 1).map_or(text.len(), |s| s.1)]))
        .collect();
    let threads = if text.len() < FAST_MIN_BYTES {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
    };
    // Contiguous runs of documents of about equal size, one per thread.
    let mut runs: Vec<&[(usize, &str)]> = Vec::with_capacity(threads);
    let (step, mut from, mut size) = (text.len() / threads + 1, 0, 0);
    for (i, (_, d)) in docs.iter().enumerate() {
        size += d.len();
        if size >= step && runs.len() + 1 < threads {
            runs.push(&docs[from..=i]);
            (from, size) = (i + 1, 0);
        }
    }
    runs.push(&docs[from..]);
    let decode_run = |run: &[(usize, &str)]| -> Option<Vec<Document>> {
        let mut out = Vec::with_capacity(run.len());
        for &(line, doc) in run {
            if let Some(resource) = decode_clean(doc)? {
                out.push(Document {
                    source: Source { file: file.to_string(), line },
                    resource,
                    origin: Origin::default(),
                });
            }
        }
        Some(out)
    };
    // The last run on this thread, the others on new ones (if one cannot be started:
    // the slow path).
    let (last, others) = runs.split_last()?;
    let parts: Vec<Option<Vec<Document>>> = std::thread::scope(|s| {
        let handles: Vec<_> =
            others.iter().map(|&run| std::thread::Builder::new().spawn_scoped(s, move || decode_run(run))).collect();
        let last = decode_run(last);
        let mut parts: Vec<_> = handles.into_iter().map(|h| h.ok().and_then(|h| h.join().ok().flatten())).collect();
        parts.push(last);
        parts
    });
    let mut docs = Vec::with_capacity(parts.iter().flatten().map(Vec::len).sum());
    for part in parts {
        docs.extend(part?);
    }
    Some(docs)
}

/// Decodes the text of one document without path tracking (serde_yaml on this text
/// alone). `Some(None)` for an empty document;
/// None at the first problem of any kind (an object that fails a check included), or
/// when serde_yaml reads the text as more than one document.
fn decode_clean(doc: &str) -> Option<Option<Resource>> {
    let mut stream = serde_yaml::Deserializer::from_str(doc);
    let resource = match stream.next() {
        Some(de) => de.deserialize_any(DocVisitor).ok()?,
        None => None,
    };
    if stream.next().is_some() {
        return None;
    }
    match resource {
        Some(r) if !validate::check_object(&r).is_empty() => None,
        r => Some(r),
    }
}

/// Decodes the documents of `text` in order, the reference way; `starts` are their
/// start lines. Returns the documents and every error, with field paths: a document
/// that cannot be loaded (a YAML syntax error, an unknown anchor) alone, as nothing
/// after it can be trusted; otherwise every bad field of every document (`recover`),
/// and checks across fields at the field they concern.
fn decode_docs(file: &str, text: &str, starts: &[usize]) -> (Vec<Document>, Vec<ManifestError>) {
    let lines = Lines::new(text);
    let mut budget = LOCATE_BUDGET;
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let mut unloadable: Option<Option<(usize, serde_yaml::Error)>> = None;
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc_line = starts.get(i).copied().unwrap_or(1);
        let doc_text = &text[lines.range(doc_line, starts.get(i + 1).copied(), text.len())];
        let mut track = serde_path_to_error::Track::new();
        match TrackedDoc(&mut track).deserialize(de) {
            Ok(None) => {}
            Ok(Some(resource)) => {
                for p in validate::check_set(std::slice::from_ref(&resource), &[]) {
                    errors.push(located(file, doc_text, doc_line, (p.path, p.message), &mut budget));
                }
                let source = Source { file: file.to_string(), line: doc_line };
                docs.push(Document { source, resource, origin: Origin::default() });
            }
            Err(e) => {
                // A document serde_yaml cannot load whole fails here too (and its
                // iterator may then yield the same error for ever, or read on from the
                // middle of that document): look for one at the first error only, so a
                // clean file is parsed once.
                if let Some((j, e)) = unloadable.get_or_insert_with(|| first_unloadable(text)) {
                    return (Vec::new(), vec![yaml_error(file, starts.get(*j).copied().unwrap_or(1), "", e)]);
                }
                let path = track.path();
                errors.push(yaml_error(file, doc_line, &path.to_string(), &e));
                if e.location().is_none() && is_fatal(&e) {
                    break;
                }
                if let Some(first) = recover::segments(&path) {
                    errors.extend(more_field_errors(file, doc_text, doc_line, &first));
                }
            }
        }
    }
    (docs, errors)
}

/// The bad fields of a document after the first one (at `first`), each at its place.
fn more_field_errors(file: &str, doc_text: &str, doc_line: usize, first: &[locate::Seg]) -> Vec<ManifestError> {
    let Some(value) =
        serde_yaml::Deserializer::from_str(doc_text).next().and_then(|d| serde_yaml::Value::deserialize(d).ok())
    else {
        return Vec::new();
    };
    let decode = |v: serde_yaml::Value| -> recover::Attempt {
        let mut track = serde_path_to_error::Track::new();
        match TrackedDoc(&mut track).deserialize(v) {
            Ok(_) => Ok(()),
            Err(e) => Err((recover::segments(&track.path()), e)),
        }
    };
    // The text of this document must give the same first error (else the document
    // was cut wrongly from the file: report the first error only).
    if !matches!(decode(value.clone()), Err((Some(p), _)) if p == first) {
        return Vec::new();
    }
    let (found, truncated) = recover::more_errors(value, first, decode);
    let mut out: Vec<ManifestError> = found
        .into_iter()
        .map(|(segs, e)| {
            let segs = segs.unwrap_or_default();
            let mut err = yaml_error(file, doc_line, &locate::render(&segs), &e);
            let at = if err.message.starts_with("unknown field") || err.message.starts_with("duplicate field") {
                locate::At::Key
            } else {
                locate::At::Value
            };
            if let Some((l, c)) = locate::locate(doc_text, &segs, at).filter(|_| !segs.is_empty()) {
                (err.line, err.column) = (doc_line + l - 1, c);
            }
            err
        })
        .collect();
    if truncated {
        out.push(ManifestError::whole(
            file,
            doc_line,
            format!(
                "more bad fields in this document are not listed (at most {} per document)",
                recover::MAX_FIELD_ERRORS
            ),
        ));
    }
    out
}

/// Bytes of document text that placing the errors of one call may parse again: many
/// errors in a huge document are placed at the document's first line beyond it.
const LOCATE_BUDGET: usize = 64 << 20;

/// An error of a check across fields, placed at the key of the field it concerns (the
/// document's first line when that is not found or `budget` is spent).
fn located(
    file: &str,
    doc_text: &str,
    doc_line: usize,
    problem: (String, String),
    budget: &mut usize,
) -> ManifestError {
    let (path, message) = problem;
    let mut at = (doc_line, 1);
    if let Some(left) = budget.checked_sub(doc_text.len()) {
        *budget = left;
        if let Some((l, c)) = locate::locate(doc_text, &locate::parse(&path), locate::At::Key) {
            at = (doc_line + l - 1, c);
        }
    }
    ManifestError { file: file.to_string(), line: at.0, column: at.1, path, message }
}

/// Index of the first document of `text` that serde_yaml cannot load whole. A loading
/// error may hide behind a decoding error in the same document, so this loads the
/// documents again, as anything (only a loading error fails that).
fn first_unloadable(text: &str) -> Option<(usize, serde_yaml::Error)> {
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .find_map(|(i, de)| IgnoredAny::deserialize(de).err().map(|e| (i, e)))
}

fn is_fatal(e: &serde_yaml::Error) -> bool {
    let m = e.to_string();
    m.contains("repetition limit") || m.contains("recursion limit")
}

/// Turns a serde_yaml error into ours, cleaning the message of serde_yaml's own path
/// prefix and position suffix.
fn yaml_error(file: &str, doc_line: usize, path: &str, e: &serde_yaml::Error) -> ManifestError {
    let mut msg = e.to_string();
    if let Some(p) = msg.rfind(" at line ") {
        if msg[p..].contains(" column ") {
            msg.truncate(p);
        }
    }
    let path = if path == "." || path == "?" { String::new() } else { path.to_string() };
    if !path.is_empty() {
        if let Some(rest) = msg.strip_prefix(&format!("{path}: ")) {
            msg = rest.to_string();
        }
    }
    // serde_yaml prefixes nested errors with its own path; drop any remaining one that
    // is a prefix path of ours.
    if let Some((head, rest)) = msg.split_once(": ") {
        if !head.contains(' ') && !path.is_empty() && path.starts_with(head) {
            msg = rest.to_string();
        }
    }
    let (line, column) = match e.location() {
        Some(l) => (l.line(), l.column()),
        None => (doc_line, 1),
    };
    ManifestError { file: file.to_string(), line, column, path, message: msg }
}

/// How many bytes of `bytes` `hit` selects, counted in blocks with wrapping 8-bit
/// lanes: a form the compiler vectorises even with overflow checks on (a plain
/// `filter().count()` costs about ten instructions a byte in the release profile).
fn count_bytes(bytes: &[u8], hit: impl Fn(u8) -> bool) -> usize {
    bytes
        .chunks(255)
        .map(|block| usize::from(block.iter().fold(0u8, |n, &b| n.wrapping_add(u8::from(hit(b))))))
        .fold(0usize, usize::wrapping_add)
}

/// 1-based start line of each YAML document in `text`, in the order serde_yaml yields them.
fn doc_start_lines(text: &str) -> Vec<usize> {
    doc_starts(text).into_iter().map(|(line, _)| line).collect()
}

/// Start line (1-based) and byte offset of each YAML document in `text`: at each
/// document marker ("---" at column 0, then whitespace or the end), and at the top
/// when anything but blank lines, comments and directives comes before the first.
/// Markers are found by searching for "\n---" in the whole text, lines counted
/// between them (no pass line by line).
fn doc_starts(text: &str) -> Vec<(usize, usize)> {
    let is_marker_at =
        |at: usize| text[at..].starts_with("---") && text[at + 3..].chars().next().is_none_or(|c| c.is_whitespace());
    let mut markers = Vec::new();
    let (mut line, mut counted) = (1, 0);
    let candidates = std::iter::once(0).chain(text.match_indices("\n---").map(|(i, _)| i + 1));
    for at in candidates {
        if is_marker_at(at) {
            line += count_bytes(&text.as_bytes()[counted..at], |b| b == b'\n');
            counted = at;
            markers.push((line, at));
        }
    }
    let Some(&(_, first)) = markers.first() else { return vec![(1, 0)] };
    let before_first_is_empty = text[..first].lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t.starts_with('%')
    });
    if !before_first_is_empty {
        markers.insert(0, (1, 0));
    }
    markers
}

/// Wraps the document visitor with path tracking.
struct TrackedDoc<'a>(&'a mut serde_path_to_error::Track);

impl<'de> DeserializeSeed<'de> for TrackedDoc<'_> {
    type Value = Option<Resource>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let d = serde_path_to_error::Deserializer::new(d, self.0);
        d.deserialize_any(DocVisitor)
    }
}

const TOP_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// Visits one document: an empty one (None) or a mapping with the five top-level keys.
struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Option<Resource>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with apiVersion, kind, metadata and spec")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut api_version: Option<String> = None;
        let mut kind: Option<Kind> = None;
        let mut metadata: Option<ObjectMeta> = None;
        let mut spec: Option<AnySpec> = None;
        let mut deferred: Option<serde_yaml::Value> = None;
        let mut seen_status = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "apiVersion" => {
                    if api_version.is_some() {
                        return Err(de::Error::duplicate_field("apiVersion"));
                    }
                    let v: String = map.next_value_seed(ApiVersionSeed)?;
                    api_version = Some(v);
                }
                "kind" => {
                    if kind.is_some() {
                        return Err(de::Error::duplicate_field("kind"));
                    }
                    kind = Some(map.next_value_seed(KindSeed)?);
                }
                "metadata" => {
                    if metadata.is_some() {
                        return Err(de::Error::duplicate_field("metadata"));
                    }
                    metadata = Some(map.next_value()?);
                }
                "spec" => {
                    if spec.is_some() || deferred.is_some() {
                        return Err(de::Error::duplicate_field("spec"));
                    }
                    match kind {
                        Some(k) => spec = Some(map.next_value_seed(SpecSeed(k))?),
                        None => deferred = Some(map.next_value()?),
                    }
                }
                "status" => {
                    if seen_status {
                        return Err(de::Error::duplicate_field("status"));
                    }
                    seen_status = true;
                    // Status is written by the controller only; a manifest's is checked
                    // (unknown fields are errors, as in the schema) and then ignored.
                    match kind {
                        Some(k) => map.next_value_seed(StatusSeed(k))?,
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                other => return Err(de::Error::unknown_field(other, TOP_FIELDS)),
            }
        }
        if api_version.is_none() {
            return Err(de::Error::missing_field("apiVersion"));
        }
        let kind = kind.ok_or_else(|| de::Error::missing_field("kind"))?;
        let metadata = metadata.ok_or_else(|| de::Error::missing_field("metadata"))?;
        let spec = match (spec, deferred) {
            (Some(s), _) => s,
            (None, Some(v)) => api::decode_spec(kind, v).map_err(|e| de::Error::custom(format!("spec: {e}")))?,
            (None, None) => return Err(de::Error::missing_field("spec")),
        };
        Ok(Some(Resource::new(metadata, spec)))
    }
}

struct ApiVersionSeed;
impl<'de> DeserializeSeed<'de> for ApiVersionSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "\"{API_VERSION}\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                if v == API_VERSION {
                    Ok(v.to_string())
                } else {
                    Err(E::custom(format!("apiVersion must be \"{API_VERSION}\", got {v:?}")))
                }
            }
        }
        d.deserialize_str(V)
    }
}

struct KindSeed;
impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = Kind;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a kind")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
                Kind::from_manifest(v).ok_or_else(|| {
                    let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                    E::custom(format!("unknown kind {v:?}; expected one of {}", all.join(", ")))
                })
            }
        }
        d.deserialize_str(V)
    }
}

struct StatusSeed(Kind);
impl<'de> DeserializeSeed<'de> for StatusSeed {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        api::check_status(self.0, d)
    }
}

struct SpecSeed(Kind);
impl<'de> DeserializeSeed<'de> for SpecSeed {
    type Value = AnySpec;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AnySpec, D::Error> {
        api::decode_spec(self.0, d)
    }
}

/// Lists the manifest files under `path`: the file itself, or every `*.yaml`/`*.yml`
/// below a folder (recursively, sorted, skipping hidden entries, not following
/// symlinked folders; special files are listed so that reading them reports them).
pub fn collect_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let ft = entry.file_type()?;
            let p = entry.path();
            if ft.is_dir() {
                stack.push(p);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                // Links, FIFOs and devices too: reading them says what they are
                // (`read_found_file`) rather than skipping them silently.
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads one file (at most 16 MiB, read with a hard cap by `safe_read`, so an endless
/// file such as /dev/zero stops there) and decodes it.
pub fn read_file(path: &Path) -> Result<Vec<Document>, Vec<ManifestError>> {
    read_with(path, crate::safe_read::read_named)
}

/// Reads one file found by walking a folder: like `read_file`, but only a regular
/// file (after links) is read, and never with a blocking open (a FIFO or device in
/// the folder is an error, not a hang).
pub fn read_found_file(path: &Path) -> Result<Vec<Document>, Vec<ManifestError>> {
    read_with(path, crate::safe_read::read_found)
}

fn read_with(
    path: &Path,
    read: fn(&Path, u64) -> Result<Vec<u8>, crate::safe_read::ReadError>,
) -> Result<Vec<Document>, Vec<ManifestError>> {
    let name = path.display().to_string();
    let bytes = read(path, MAX_FILE_BYTES).map_err(|e| {
        let msg = match e {
            crate::safe_read::ReadError::TooLarge { size: Some(n), .. } => {
                format!("file is {n} bytes; manifests may be at most {MAX_FILE_BYTES} bytes (16 MiB)")
            }
            crate::safe_read::ReadError::TooLarge { size: None, .. } => {
                format!("file is more than {MAX_FILE_BYTES} bytes; manifests may be at most 16 MiB")
            }
            e => e.to_string(),
        };
        vec![ManifestError::whole(&name, 0, msg)]
    })?;
    decode(&name, &bytes)
}

/// Reads every input (`-` is stdin; folders recursively) and decodes all documents.
/// Returns all documents and all errors; callers write nothing when errors is not empty.
pub fn read_inputs(inputs: &[String]) -> (Vec<Document>, Vec<ManifestError>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for input in inputs {
        if input == "-" {
            let mut buf = Vec::new();
            let r = std::io::stdin().lock().take(MAX_FILE_BYTES + 1).read_to_end(&mut buf);
            match r {
                Err(e) => errors.push(ManifestError::whole("-", 0, format!("cannot read stdin: {e}"))),
                Ok(_) => match decode("-", &buf) {
                    Ok(d) => docs.extend(d),
                    Err(e) => errors.extend(e),
                },
            }
            continue;
        }
        let files = match collect_files(Path::new(input)) {
            Ok(f) => f,
            Err(e) => {
                errors.push(ManifestError::whole(input, 0, format!("cannot read: {e}")));
                continue;
            }
        };
        if files.is_empty() {
            errors.push(ManifestError::whole(input, 0, "no *.yaml or *.yml files in this folder"));
        }
        let walked = Path::new(input).is_dir();
        for f in files {
            match if walked { read_found_file(&f) } else { read_file(&f) } {
                Ok(d) => docs.extend(d),
                Err(e) => errors.extend(e),
            }
        }
    }
    (docs, errors)
}

/// Checks documents against each other and against the store's objects; returns the
/// errors pointing at each document. Each document's own checks ran when it was
/// decoded (`decode` refuses a document that fails them), so only the checks across
/// documents run here, on the decoded objects as they are (no copies).
pub fn check_documents(docs: &[Document], existing: &[Resource]) -> Vec<ManifestError> {
    let objs: Vec<&Resource> = docs.iter().map(|d| &d.resource).collect();
    let mut budget = LOCATE_BUDGET;
    validate::check_across(&objs, existing)
        .into_iter()
        .map(|p| {
            let d = &docs[p.index];
            located(&d.source.file, d.origin.text(), d.source.line, (p.path, p.message), &mut budget).shortened()
        })
        .collect()
}

/// Renders a value as YAML.
pub fn to_yaml<T: Serialize>(v: &T) -> String {
    serde_yaml::to_string(v).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

/// Parses YAML text into JSON (for tools that want a loosely typed view, e.g. the
/// schema tests).
pub fn yaml_to_json(text: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut out = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let v = serde_json::Value::deserialize(de).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "apiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {name: vm1}\nspec:\n  vmName: VM1\n  serverUnit: SU1\n  memoryMiB: 1024\n";

    #[test]
    fn decodes_multi_document() {
        let text = format!("# c\n---\n{VM}---\n{}", VM.replace("vm1", "vm2"));
        let docs = decode("f.yaml", text.as_bytes()).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].source.line, 2);
        assert_eq!(docs[1].source.line, 10);
    }

    #[test]
    fn error_has_line_column_path() {
        let text = format!("{VM}---\n{}", VM.replace("1024", "lots"));
        let errs = decode("site.yaml", text.as_bytes()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        let e = &errs[0];
        assert_eq!((e.line, e.column), (15, 14), "{e}");
        assert_eq!(e.path, "spec.memoryMiB");
        assert!(e.to_string().starts_with("site.yaml:15:14: spec.memoryMiB: invalid type: string \"lots\""), "{e}");
    }

    #[test]
    fn spec_before_kind_still_decodes() {
        let text = "spec: {vmName: VM1, serverUnit: SU1, memoryMiB: 5}\napiVersion: sectl.io/v1alpha1\nkind: VMDefinition\nmetadata: {name: a}\n";
        assert_eq!(decode("f", text.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn syntax_error_is_reported_once() {
        let text = format!("{VM}---\nmetadata: {{name: vm1\nspec:\n  a: 1\n");
        let errs = decode("f.yaml", text.as_bytes()).unwrap_err();
        let syntax = errs.iter().filter(|e| e.message.contains("did not find expected")).count();
        assert_eq!(syntax, 1, "{errs:?}");
    }

    /// A file big enough for the parallel path, with comments, blank and empty documents.
    fn big_text() -> String {
        let mut text = String::from("# prologue\n\n");
        let mut i = 0;
        while text.len() < 3 * FAST_MIN_BYTES {
            i += 1;
            text.push_str(&format!("---\n{}", VM.replace("vm1", &format!("vm{i}"))));
            if i % 97 == 0 {
                text.push_str("--- \n# empty\n");
            }
        }
        text
    }

    #[test]
    fn fast_decode_equals_reference() {
        let text = big_text();
        let par = decode_fast("big.yaml", &text).expect("fast path taken");
        let (seq, errors) = decode_docs("big.yaml", &text, &doc_start_lines(&text));
        assert!(errors.is_empty());
        assert_eq!(par.len(), seq.len());
        for (a, b) in par.iter().zip(&seq) {
            assert_eq!(a.source, b.source);
            assert_eq!(a.resource, b.resource);
        }
        assert_eq!(decode("big.yaml", text.as_bytes()).unwrap().len(), seq.len());
    }

    #[test]
    fn fast_decode_falls_back_on_errors() {
        let mut text = big_text();
        let at = text.len() * 2 / 3;
        let at = at + text[at..].find("memoryMiB: 1024").unwrap();
        text.replace_range(at..at + "memoryMiB: 1024".len(), "memoryMiB: lots");
        text.push_str("---\nmetadata: {name: x\n");
        assert!(decode_fast("big.yaml", &text).is_none());
        let (_, want) = decode_docs("big.yaml", &text, &doc_start_lines(&text));
        // The syntax error alone: the bad field before it is not reported.
        assert_eq!(want.len(), 1, "{want:?}");
        assert!(want[0].message.contains("flow mapping"), "{want:?}");
        assert_eq!(decode("big.yaml", text.as_bytes()).unwrap_err(), want);
    }

    #[test]
    fn unknown_anchor_stops_cleanly() {
        let text = format!("{}---\n{VM}", VM.replace("memoryMiB: 1024", "memoryMiB: 1024\n  cpuPool: *STDPOOL"));
        let errs = decode("f.yaml", text.as_bytes()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].line, errs[0].column), (8, 12), "{errs:?}");
        assert!(errs[0].message.starts_with("unknown anchor"), "{errs:?}");
    }

    #[test]
    fn unknown_anchor_after_an_error_is_reported_alone() {
        // A document that cannot be loaded is a syntax error: it comes first and alone.
        let bad = VM.replace("vmName", "vmNam").replace("memoryMiB: 1024", "memoryMiB: 1024\n  cpuPool: *STDPOOL");
        let errs = decode("f.yaml", format!("{bad}---\n{VM}").as_bytes()).unwrap_err();
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].starts_with("f.yaml:8:12: unknown anchor"), "{shown:?}");
    }

    /// Issue 11 item 7: three bad fields in two documents give three errors, each at
    /// its own line and column, with its field path.
    #[test]
    fn every_bad_field_of_every_document_is_reported() {
        let one = VM.replace("memoryMiB: 1024", "memoryMiB: -5\n  cpuPool: \"bad pool!\"");
        let two = VM.replace("vm1", "vm2").replace("memoryMiB: 1024", "memoryMiB: 1024\n  bogus: 1");
        let errs = decode("f.yaml", format!("{one}---\n{two}").as_bytes()).unwrap_err();
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown[0].starts_with("f.yaml:7:14: spec.memoryMiB: memory in MiB must be from 1"), "{shown:?}");
        assert!(shown[1].starts_with("f.yaml:8:12: spec.cpuPool: unit name \"bad pool!\""), "{shown:?}");
        assert!(shown[2].starts_with("f.yaml:17:3: spec.bogus: unknown field `bogus`"), "{shown:?}");
    }

    /// Errors in a list element and in a field after it: indexes stay those of the file,
    /// and the removal of a bad element reports nothing of its own (no "missing field").
    #[test]
    fn bad_list_elements_keep_their_index() {
        let text = "apiVersion: sectl.io/v1alpha1\nkind: SEServer\nmetadata: {name: se1}\nspec:\n  model: SE700\n  version: V6.3\n  managementUnits:\n  - name: \"a b\"\n  - {name: MU2, x: 1}\n  serverUnits: 5\n";
        let errs = decode("f.yaml", text.as_bytes()).unwrap_err();
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown[0].starts_with("f.yaml:8:11: spec.managementUnits[0].name: "), "{shown:?}");
        assert!(shown[1].starts_with("f.yaml:9:17: spec.managementUnits[1].x: unknown field"), "{shown:?}");
        assert!(shown[2].starts_with("f.yaml:10:16: spec.serverUnits: invalid type"), "{shown:?}");
    }

    /// A syntax error in document 2 is the only error, even with bad fields in document 1.
    #[test]
    fn a_syntax_error_comes_alone() {
        let one = VM.replace("memoryMiB: 1024", "memoryMiB: -5");
        let two = VM.replace("serverUnit: SU1", "serverUnit: SU1 vmIndex: 3");
        let errs = decode("f.yaml", format!("{one}---\n{two}").as_bytes()).unwrap_err();
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown, ["f.yaml:14:26: mapping values are not allowed in this context"]);
    }

    /// A check across fields points at the field it concerns, not the document's start.
    #[test]
    fn cross_field_errors_point_at_the_field() {
        let se = |name: &str, su: &str| {
            format!("apiVersion: sectl.io/v1alpha1\nkind: SEServer\nmetadata: {{name: {name}}}\nspec:\n  model: SE700\n  version: V6.3\n  managementUnits:\n  - name: {name}mu\n  serverUnits:\n  - {{name: {su}, type: x86, cpus: 4, memoryMiB: 8192}}\n")
        };
        // Within one document (decode).
        let twice = se("a", "SU1").replace("  - name: amu\n", "  - name: amu\n  - name: amu\n");
        let errs = decode("f.yaml", twice.as_bytes()).unwrap_err();
        assert_eq!(errs[0].to_string(), "f.yaml:9:5: spec.managementUnits[1].name: unit amu is named twice");
        // Across documents (check_documents).
        let text = format!("{}---\n{}", se("a", "SU1"), se("b", "SU1"));
        let docs = decode("f.yaml", text.as_bytes()).unwrap();
        let errs = check_documents(&docs, &[]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            (errs[0].line, errs[0].column, errs[0].path.as_str()),
            (21, 6, "spec.serverUnits[0].name"),
            "{errs:?}"
        );
    }

    #[test]
    fn deep_flow_nesting_fails_fast() {
        let deep = |d: usize| format!("a: {}{}\n", "[".repeat(d), "]".repeat(d));
        let at = |t: &str| flow_nesting_problem(t).map(|(l, c, _)| (l, c));
        assert_eq!(at(&deep(MAX_FLOW_DEPTH)), None);
        assert_eq!(at(&deep(100_000)), Some((1, 4 + MAX_FLOW_DEPTH)));
        let start = std::time::Instant::now();
        let errs = decode("deep.yaml", deep(100_000).as_bytes()).unwrap_err();
        assert!(errs[0].to_string().starts_with("deep.yaml:1:1004: flow collections"), "{errs:?}");
        // Many collections, each under the depth limit.
        let one = deep(900);
        let many = format!("a: [{}]\n", vec![&one[3..one.len() - 1]; 200].join(", "));
        let errs = decode("many.yaml", many.as_bytes()).unwrap_err();
        assert!(errs[0].to_string().starts_with("many.yaml:1:"), "{errs:?}");
        assert!(errs[0].message.contains("too deeply"), "{errs:?}");
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        // Brackets in quoted, plain, block scalars and comments do not count.
        let many = "[".repeat(3 * MAX_FLOW_DEPTH);
        for text in [
            format!("a: \"{many}\"\n"),
            format!("a: '{many}'\n"),
            format!("a: x{many}\n"),
            format!("a: |\n  - {many}\n  {many}\nb: 1\n"),
            format!("a: 1 # {many}\n"),
            format!("a: [\"{many}\", '{many}', b]\n"),
            format!("a: x - {many}, y {many}\n"),
        ] {
            assert_eq!(at(&text), None, "{text:.40}");
        }
        // Big flat JSON-style input stays well within the work limit.
        let flat = format!("a: [{}]\n", vec!["{b: [1, 2, {c: [3, 4]}]}"; 200_000].join(", "));
        assert_eq!(at(&flat), None);
    }

    #[test]
    fn doc_starts() {
        assert_eq!(doc_start_lines("a: 1\n"), vec![1]);
        assert_eq!(doc_start_lines("a: 1\n---\nb: 1\n"), vec![1, 2]);
        assert_eq!(doc_start_lines("# x\n---\nb: 1\n--- \nc: 1"), vec![2, 4]);
    }
}
