//! `sectl diff`: what an apply would change, as a unified-style diff of the parts a
//! manifest owns (spec, labels, annotations). Status is never a difference.

use crate::api::Resource;
use crate::manifest;
use serde_json::json;

fn owned_view(r: &Resource) -> String {
    let m = r.meta();
    let mut v = json!({"metadata": {"name": m.name.as_str()}, "spec": r.spec_json()});
    if !m.labels.is_empty() {
        v["metadata"]["labels"] = serde_json::to_value(&m.labels).unwrap_or_default();
    }
    if !m.annotations.is_empty() {
        v["metadata"]["annotations"] = serde_json::to_value(&m.annotations).unwrap_or_default();
    }
    manifest::to_yaml(&v)
}

/// The diff between the stored object (if any) and the desired one, or None when an
/// apply would change nothing.
pub fn object_diff(current: Option<&Resource>, desired: &Resource) -> Option<String> {
    let title = format!("{}/{}", desired.kind().as_str().to_lowercase(), desired.name());
    let new = owned_view(desired);
    let Some(cur) = current else {
        let mut out = format!("--- /dev/null\n+++ {title} (new)\n");
        for l in new.lines() {
            out.push_str(&format!("+{l}\n"));
        }
        return Some(out);
    };
    if cur.spec_eq(desired)
        && cur.meta().labels == desired.meta().labels
        && cur.meta().annotations == desired.meta().annotations
    {
        return None;
    }
    let old = owned_view(cur);
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut out = format!("--- {title} (live)\n+++ {title} (desired)\n");
    for line in line_diff(&a, &b) {
        out.push_str(&line);
        out.push('\n');
    }
    Some(out)
}

/// A plain LCS line diff: " " kept, "-" removed, "+" added.
fn line_diff(a: &[&str], b: &[&str]) -> Vec<String> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(format!(" {}", a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("-{}", a[i]));
            i += 1;
        } else {
            out.push(format!("+{}", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::line_diff;

    #[test]
    fn diff_marks_changes() {
        let d = line_diff(&["a", "b", "c"], &["a", "x", "c"]);
        assert_eq!(d, vec![" a", "-b", "+x", " c"]);
    }
}
