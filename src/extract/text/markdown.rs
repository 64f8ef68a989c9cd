//! Markdown sectioning: a line-based reader for the block structure chunking needs (ATX and setext headings,
//! paragraphs, list items, fenced code). It is not a full CommonMark parser: inline markup is kept as written,
//! block quotes and indented code are treated as paragraphs, and thematic breaks are dropped.
//! Also used for HTML, which html2text renders with Markdown-style `#` headings.

use crate::types::{Location, Segment, SegmentKind};

/// Deepest ATX heading level (`######`).
const MAX_ATX_LEVEL: usize = 6;
/// Shortest code fence (three backticks or tildes).
const MIN_FENCE_LEN: usize = 3;
/// Most spaces of indentation before a block marker (more makes indented code in CommonMark).
const MAX_MARKER_INDENT: usize = 3;

/// A block being collected.
struct Open<'a> {
    kind: SegmentKind,
    lines: Vec<&'a str>,
    /// For code: the fence character and its length, until the closing fence is seen.
    fence: Option<(char, usize)>,
}

/// Builds segments while tracking the heading path.
#[derive(Default)]
struct Builder {
    path: Vec<(usize, String)>,
    block: u32,
    segments: Vec<Segment>,
}

impl Builder {
    fn push(&mut self, kind: SegmentKind, text: String) {
        self.block = self.block.saturating_add(1);
        let heading_path = self.path.iter().map(|(_, t)| t.clone()).collect();
        let location = Location::Section {
            heading_path,
            block: self.block,
        };
        self.segments.push(Segment::new(kind, text, location));
    }

    fn heading(&mut self, level: usize, text: String) {
        self.path.retain(|(l, _)| *l < level);
        self.path.push((level, text.clone()));
        self.push(SegmentKind::Heading, text);
    }

    fn flush(&mut self, open: &mut Option<Open<'_>>) {
        if let Some(block) = open.take() {
            self.push(block.kind, block.lines.join("\n"));
        }
    }
}

/// Splits Markdown into heading, paragraph, list item and code segments. Each segment's location is
/// [`Location::Section`]: the headings above it (a heading's own path ends with itself) and its 1-based block
/// number in the document. Fenced code is never split and `#` lines inside fences are not headings.
pub fn markdown_segments(text: &str) -> Vec<Segment> {
    let mut b = Builder::default();
    let mut open: Option<Open<'_>> = None;
    for line in text.lines() {
        if let Some(Open {
            fence: Some((ch, len)),
            lines,
            ..
        }) = open.as_mut()
        {
            lines.push(line);
            if is_closing_fence(line, *ch, *len) {
                b.flush(&mut open);
            }
            continue;
        }
        if line.trim().is_empty() {
            b.flush(&mut open);
            continue;
        }
        if let Some(fence) = opening_fence(line) {
            b.flush(&mut open);
            open = Some(Open {
                kind: SegmentKind::Code,
                lines: vec![line],
                fence: Some(fence),
            });
            continue;
        }
        if let Some((level, heading)) = atx_heading(line) {
            b.flush(&mut open);
            b.heading(level, heading);
            continue;
        }
        if let Some(level) = setext_level(line) {
            match open.take() {
                Some(para) if para.kind == SegmentKind::Paragraph => {
                    let title = para
                        .lines
                        .iter()
                        .map(|l| l.trim())
                        .collect::<Vec<_>>()
                        .join(" ");
                    b.heading(level, title);
                }
                other => {
                    // A `---`/`===` line with no paragraph above is a thematic break (or stray text): drop it.
                    open = other;
                    b.flush(&mut open);
                }
            }
            continue;
        }
        if is_thematic_break(line) {
            b.flush(&mut open);
            continue;
        }
        if is_list_item(line) {
            b.flush(&mut open);
            open = Some(Open {
                kind: SegmentKind::ListItem,
                lines: vec![line],
                fence: None,
            });
            continue;
        }
        match open.as_mut() {
            Some(block) => block.lines.push(line),
            None => {
                open = Some(Open {
                    kind: SegmentKind::Paragraph,
                    lines: vec![line],
                    fence: None,
                });
            }
        }
    }
    // An unclosed fence runs to the end of the document, as in CommonMark.
    b.flush(&mut open);
    b.segments
}

/// The line without its block indentation, or `None` when indented too far to be a marker.
fn unindent(line: &str) -> Option<&str> {
    let rest = line.trim_start_matches(' ');
    (line.len() - rest.len() <= MAX_MARKER_INDENT).then_some(rest)
}

fn opening_fence(line: &str) -> Option<(char, usize)> {
    let rest = unindent(line)?;
    let ch = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = rest.chars().take_while(|c| *c == ch).count();
    // A backtick fence's info string may not contain backticks.
    let info_ok = ch == '~' || !rest[len..].contains('`');
    (len >= MIN_FENCE_LEN && info_ok).then_some((ch, len))
}

fn is_closing_fence(line: &str, ch: char, len: usize) -> bool {
    let Some(rest) = unindent(line) else {
        return false;
    };
    let run = rest.chars().take_while(|c| *c == ch).count();
    run >= len && rest[run..].trim().is_empty()
}

fn atx_heading(line: &str) -> Option<(usize, String)> {
    let rest = unindent(line)?;
    let level = rest.chars().take_while(|c| *c == '#').count();
    if level == 0 || level > MAX_ATX_LEVEL {
        return None;
    }
    let after = &rest[level..];
    if !(after.is_empty() || after.starts_with([' ', '\t'])) {
        return None;
    }
    let mut title = after.trim();
    // An optional closing sequence of `#`s preceded by a space is not part of the title.
    let stripped = title.trim_end_matches('#');
    if stripped.len() < title.len() && (stripped.is_empty() || stripped.ends_with([' ', '\t'])) {
        title = stripped.trim_end();
    }
    Some((level, title.to_owned()))
}

fn setext_level(line: &str) -> Option<usize> {
    let rest = unindent(line)?.trim_end();
    let ch = rest.chars().next()?;
    if !rest.chars().all(|c| c == ch) {
        return None;
    }
    match ch {
        '=' => Some(1),
        '-' => Some(2),
        _ => None,
    }
}

fn is_thematic_break(line: &str) -> bool {
    let Some(rest) = unindent(line) else {
        return false;
    };
    let compact: String = rest.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(ch) = compact.chars().next() else {
        return false;
    };
    matches!(ch, '*' | '-' | '_')
        && compact.len() >= MIN_FENCE_LEN
        && compact.chars().all(|c| c == ch)
}

fn is_list_item(line: &str) -> bool {
    let rest = line.trim_start();
    let marker_len = if rest.starts_with(['-', '*', '+']) {
        1
    } else {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || !rest[digits..].starts_with(['.', ')']) {
            return false;
        }
        digits + 1
    };
    let after = &rest[marker_len..];
    after.is_empty() || after.starts_with([' ', '\t'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(path: &[&str], block: u32) -> Location {
        Location::Section {
            heading_path: path.iter().map(|s| (*s).to_owned()).collect(),
            block,
        }
    }

    #[test]
    fn guide_fixture_keeps_structure() {
        let text = include_str!("../../../fixtures/text/guide.md");
        let segments = markdown_segments(text);
        let expected = include_str!("../../../fixtures/text/guide.md.expected.txt");
        let joined: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(joined.join("\n"), expected.trim_end_matches('\n'));

        use SegmentKind::{Code, Heading, ListItem, Paragraph};
        let kinds: Vec<SegmentKind> = segments.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Heading, Paragraph, Heading, Paragraph, Code, ListItem, ListItem, Heading,
                ListItem, ListItem, Heading, Paragraph, Heading, Paragraph
            ]
        );
        assert_eq!(segments[0].location, section(&["Docpipe Guide"], 1));
        assert_eq!(
            segments[4].location,
            section(&["Docpipe Guide", "Install"], 5)
        );
        assert!(
            segments[4]
                .text
                .contains("# this is a comment, not a heading")
        );
        assert_eq!(segments[6].text, "- second item\n  continues here");
        assert_eq!(
            segments[8].location,
            section(&["Docpipe Guide", "Install", "Options"], 9)
        );
        assert_eq!(segments[10].location, section(&["Setext Title"], 11));
        assert_eq!(
            segments[13].location,
            section(&["Setext Title", "Another Section"], 14)
        );
    }

    #[test]
    fn heading_details() {
        assert_eq!(atx_heading("## Title ##"), Some((2, "Title".to_owned())));
        assert_eq!(atx_heading("#hashtag"), None);
        assert_eq!(atx_heading("####### seven"), None);
        assert_eq!(atx_heading("    # indented code"), None);
        assert!(is_thematic_break("* * *"));
        assert!(!is_list_item("-not a list"));
        assert!(is_list_item("10) ten"));
    }

    #[test]
    fn unclosed_fence_runs_to_the_end() {
        let segments = markdown_segments("text\n\n~~~\n# not heading\n\nstill code");
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[1].kind, SegmentKind::Code);
        assert_eq!(segments[1].text, "~~~\n# not heading\n\nstill code");
    }
}
