//! The README and the pages in `docs/` link to each other and into the source. Every
//! relative link must name a file that exists (relative to the page that holds it) and,
//! with a `#anchor`, a heading of that page under GitHub's rules for heading ids.
//! Links in fenced code blocks and in code spans are not links; `http://`, `https://`
//! and `mailto:` links are not checked.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The repository's root: two levels above this crate.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_link_in_the_readme_and_docs_resolves() {
    let root = repo_root();
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("docs/ is readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);

    let mut checked = 0;
    let mut broken = Vec::new();
    for page in &pages {
        let text = fs::read_to_string(page)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", page.display()));
        for link in links(&text) {
            checked += 1;
            if let Err(why) = resolve(&root, page, &link.target) {
                broken.push(format!(
                    "{}:{}: [{}]({}): {why}",
                    shown(&root, page),
                    link.line,
                    link.text.replace('\n', " "),
                    link.target
                ));
            }
        }
    }
    assert!(
        checked > 0,
        "no link found in README.md and docs/*.md: the link finder is broken"
    );
    assert!(
        broken.is_empty(),
        "{} of {checked} links in README.md and docs/*.md do not resolve:\n  {}",
        broken.len(),
        broken.join("\n  ")
    );
}

#[test]
fn links_and_heading_ids_are_read_as_github_reads_them() {
    let text = "# Title\n\
                See [the API](api.md#the-api) and [`x`](../src/x.rs).\n\
                `[not](a-link)` and\n\
                ```sh\n\
                [not](a-link-either)\n\
                # not a heading\n\
                ```\n\
                [a link that\n\
                wraps](b.md) ![an image](c.png \"title\")\n";
    let found: Vec<(usize, String)> = links(text)
        .into_iter()
        .map(|l| (l.line, l.target))
        .collect();
    assert_eq!(
        found,
        [
            (2, "api.md#the-api".to_string()),
            (2, "../src/x.rs".to_string()),
            (8, "b.md".to_string()),
            (9, "c.png".to_string()),
        ]
    );
    assert_eq!(heading_ids(text), HashSet::from(["title".to_string()]));
    assert_eq!(
        slug("Buying through web pages (the browser driver)"),
        "buying-through-web-pages-the-browser-driver"
    );
    assert_eq!(
        slug("9. Try it against the store"),
        "9-try-it-against-the-store"
    );
    assert_eq!(slug("`[recipe]`"), "recipe");
    assert_eq!(slug("`wait_for`"), "wait_for");
    assert_eq!(
        slug("[Webhooks](webhooks.md) — retries"),
        "webhooks--retries"
    );
    let twice = heading_ids("## Notes\n## Notes\n");
    assert!(twice.contains("notes") && twice.contains("notes-1"));
}

struct Link {
    line: usize,
    text: String,
    target: String,
}

/// Checks one link target found in `page`.
fn resolve(root: &Path, page: &Path, target: &str) -> Result<(), String> {
    let lower = target.to_ascii_lowercase();
    if ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
    {
        return Ok(());
    }
    if target.is_empty() {
        return Err("empty target".into());
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let path = path.split('?').next().unwrap_or_default();
    let file = if path.is_empty() {
        page.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        root.join(percent_decoded(from_root))
    } else {
        page.parent()
            .expect("a page is in a folder")
            .join(percent_decoded(path))
    };
    let file = normalised(&file);
    if !file.exists() {
        return Err(format!("{} does not exist", shown(root, &file)));
    }
    let Some(anchor) = anchor.filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    if file.extension().is_some_and(|e| e == "md") {
        let text = fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", shown(root, &file)))?;
        let anchor = percent_decoded(anchor);
        if heading_ids(&text).contains(&anchor) {
            Ok(())
        } else {
            Err(format!(
                "{} has no heading with the id {anchor:?}",
                shown(root, &file)
            ))
        }
    } else if file.is_file() && is_line_anchor(anchor) {
        Ok(())
    } else {
        Err(format!(
            "#{anchor} on {}, which is not a markdown page",
            shown(root, &file)
        ))
    }
}

/// GitHub's anchors for lines of a source file: `L12` or `L12-L20`.
fn is_line_anchor(anchor: &str) -> bool {
    let number = |s: &str| {
        s.strip_prefix('L')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    match anchor.split_once('-') {
        Some((from, to)) => number(from) && number(to),
        None => number(anchor),
    }
}

/// `a/./b/../c` as `a/c`, without touching the file system.
fn normalised(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A path as it is written in the repository, for messages.
fn shown(root: &Path, path: &Path) -> String {
    let (root, path) = (normalised(root), normalised(path));
    path.strip_prefix(&root)
        .unwrap_or(&path)
        .display()
        .to_string()
}

fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The text with every line of a fenced code block (its fences included) blanked, so
/// that offsets still give line numbers.
fn without_fenced_code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<(char, usize)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| trimmed.chars().take_while(|c| *c == m).count());
        let in_code = match (fence, marker) {
            (None, Some(m)) if indent < 4 && run >= 3 => {
                fence = Some((m, run));
                true
            }
            (Some((open, length)), Some(m))
                if m == open && run >= length && trimmed[run..].trim().is_empty() =>
            {
                fence = None;
                true
            }
            (Some(_), _) => true,
            (None, _) => false,
        };
        if in_code {
            out.push_str(if line.ends_with('\n') { "\n" } else { "" });
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Inline links and images, `[text](target)` and `![alt](target)`, outside code.
fn links(text: &str) -> Vec<Link> {
    let text = without_fenced_code(text);
    let bytes = text.as_bytes();
    let line_at = |offset: usize| 1 + bytes[..offset].iter().filter(|b| **b == b'\n').count();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'`' => i = after_code_span(bytes, i),
            b'[' => match link_at(bytes, i) {
                Some((text_end, target_start, end)) => {
                    let raw = text[target_start..end - 1].trim();
                    let raw = raw.split_whitespace().next().unwrap_or_default();
                    let target = raw
                        .strip_prefix('<')
                        .and_then(|t| t.strip_suffix('>'))
                        .unwrap_or(raw);
                    found.push(Link {
                        line: line_at(i),
                        text: text[i + 1..text_end].to_string(),
                        target: target.to_string(),
                    });
                    i = end;
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    found
}

/// Where the code span opening at `start` ends (just past its closing backticks), or
/// just past the opening backticks when nothing closes them.
fn after_code_span(bytes: &[u8], start: usize) -> usize {
    let run = bytes[start..].iter().take_while(|b| **b == b'`').count();
    let mut i = start + run;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            let closing = bytes[i..].iter().take_while(|b| **b == b'`').count();
            if closing == run {
                return i + closing;
            }
            i += closing;
        } else {
            i += 1;
        }
    }
    start + run
}

/// For a `[` at `start` that opens an inline link: the offset of its `]`, where its
/// target starts, and just past its `)`. Neither part may cross a blank line.
fn link_at(bytes: &[u8], start: usize) -> Option<(usize, usize, usize)> {
    let mut depth = 0;
    let mut i = start;
    let text_end = loop {
        if i >= bytes.len() || blank_line_at(bytes, i) {
            return None;
        }
        match bytes[i] {
            b'\\' => i += 1,
            b'`' => {
                i = after_code_span(bytes, i);
                continue;
            }
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    break i;
                }
            }
            _ => {}
        }
        i += 1;
    };
    if bytes.get(text_end + 1) != Some(&b'(') {
        return None;
    }
    let target_start = text_end + 2;
    let mut depth = 1;
    let mut i = target_start;
    while i < bytes.len() && !blank_line_at(bytes, i) {
        match bytes[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some((text_end, target_start, i + 1));
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether a blank line starts after the newline at `i`.
fn blank_line_at(bytes: &[u8], i: usize) -> bool {
    bytes[i] == b'\n' && {
        let rest = &bytes[i + 1..];
        let spaces = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        rest.get(spaces).is_none_or(|b| *b == b'\n')
    }
}

/// The ids GitHub gives a page's headings: each heading's slug, with `-1`, `-2`, …
/// appended to repeats.
fn heading_ids(text: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    for line in without_fenced_code(text).lines() {
        let trimmed = line.trim_start_matches(' ');
        if line.len() - trimmed.len() > 3 {
            continue;
        }
        let level = trimmed.chars().take_while(|c| *c == '#').count();
        let rest = &trimmed[level..];
        if !(1..=6).contains(&level) || !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            continue;
        }
        // A closing run of `#` is not part of the heading.
        let title = rest.trim();
        let title = match title.trim_end_matches('#') {
            t if t.is_empty() || t.ends_with([' ', '\t']) => t.trim_end(),
            _ => title,
        };
        let base = slug(title);
        let mut id = base.clone();
        let mut repeat = 0;
        while ids.contains(&id) {
            repeat += 1;
            id = format!("{base}-{repeat}");
        }
        ids.insert(id);
    }
    ids
}

/// GitHub's heading slug: the heading's text (links reduced to their text, code marks
/// and emphasis stars dropped), lowercased; letters, digits, `-` and `_` are kept,
/// spaces become `-`, everything else is dropped.
fn slug(title: &str) -> String {
    let bytes = title.as_bytes();
    let mut plain = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let link = if bytes[i] == b'[' {
            link_at(bytes, i)
        } else {
            None
        };
        if let Some((text_end, _, end)) = link {
            plain.push_str(&title[i + 1..text_end]);
            i = end;
        } else {
            let c = title[i..].chars().next().expect("inside the title");
            plain.push(c);
            i += c.len_utf8();
        }
    }
    plain
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}
