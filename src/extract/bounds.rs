//! Bounds every extractor's output obeys before it leaves extraction, whatever the format: a most number
//! of segments and of text bytes per file (past them the file fails with `limit_exceeded`), and no segment
//! longer than [`MAX_SEGMENT_BYTES`] (a longer one is cut at whitespace into several with the same
//! location), so chunking and embedding of one file stay bounded too.

use super::{ExtractError, Limits};
use crate::types::{Document, Segment};

/// Longest segment handed to the chunker; a single 10 MB line would otherwise be split by `text-splitter`
/// as one piece, at a cost that grows faster than its length.
pub const MAX_SEGMENT_BYTES: usize = 64 * 1024;
/// How far back from a cut a whitespace is looked for, so words are not split.
const CUT_LOOKBACK: usize = 1024;

/// Checks the limits and cuts long segments.
pub fn bound(mut doc: Document, limits: &Limits) -> Result<Document, ExtractError> {
    let segments = doc.segments.len() as u64;
    if segments > limits.max_segments {
        return Err(ExtractError::LimitExceeded(format!(
            "the file has {segments} text blocks (paragraphs, rows, cells), more than the limit of {} \
             (max_segments)",
            limits.max_segments
        )));
    }
    let bytes: u64 = doc.segments.iter().map(|s| s.text.len() as u64).sum();
    if bytes > limits.max_text_bytes {
        return Err(ExtractError::LimitExceeded(format!(
            "the file has {bytes} bytes of text, more than the limit of {} (max_text_bytes)",
            limits.max_text_bytes
        )));
    }
    if doc
        .segments
        .iter()
        .any(|s| s.text.len() > MAX_SEGMENT_BYTES)
    {
        let mut out = Vec::with_capacity(doc.segments.len());
        for seg in doc.segments {
            if seg.text.len() <= MAX_SEGMENT_BYTES {
                out.push(seg);
                continue;
            }
            out.extend(
                cut(&seg.text, MAX_SEGMENT_BYTES)
                    .into_iter()
                    .map(|piece| Segment::new(seg.kind, piece, seg.location.clone())),
            );
        }
        doc.segments = out;
    }
    Ok(doc)
}

/// `text` in pieces of at most `max` bytes, cut at the last whitespace before the limit when there is one
/// near it, otherwise at a character boundary; whitespace at the cuts is dropped.
fn cut(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut end = max;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let window_start = end.saturating_sub(CUT_LOOKBACK);
        if let Some(space) = rest[..end]
            .rfind(char::is_whitespace)
            .filter(|&i| i > window_start)
        {
            end = space;
        }
        let piece = rest[..end].trim_end();
        if !piece.is_empty() {
            pieces.push(piece);
        }
        rest = rest[end..].trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Location, SegmentKind};

    fn doc(texts: &[String]) -> Document {
        Document {
            segments: texts
                .iter()
                .map(|t| Segment::new(SegmentKind::Paragraph, t.clone(), Location::Image))
                .collect(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn a_long_line_is_cut_at_words_and_loses_no_text() {
        let line = "word ".repeat(100_000);
        let out =
            bound(doc(std::slice::from_ref(&line)), &Limits::default()).expect("within limits");
        assert!(out.segments.len() > 5);
        assert!(
            out.segments
                .iter()
                .all(|s| s.text.len() <= MAX_SEGMENT_BYTES)
        );
        assert!(out.segments.iter().all(|s| !s.text.starts_with(' ')));
        let words: usize = out
            .segments
            .iter()
            .map(|s| s.text.split_whitespace().count())
            .sum();
        assert_eq!(words, 100_000);
        // Without whitespace, between characters (multi-byte ones stay whole).
        let blob = "é".repeat(100_000);
        let out = bound(doc(&[blob]), &Limits::default()).expect("within limits");
        let chars: usize = out.segments.iter().map(|s| s.text.chars().count()).sum();
        assert_eq!(chars, 100_000);
    }

    #[test]
    fn too_many_segments_or_bytes_fail_with_limit_exceeded() {
        let limits = Limits {
            max_segments: 3,
            max_text_bytes: 10,
            ..Limits::default()
        };
        let many: Vec<String> = (0..4).map(|i| i.to_string()).collect();
        let err = bound(doc(&many), &limits).expect_err("too many");
        assert_eq!(err.code(), "limit_exceeded");
        assert!(err.to_string().contains("max_segments"), "{err}");
        let err = bound(doc(&["x".repeat(11)]), &limits).expect_err("too long");
        assert!(err.to_string().contains("max_text_bytes"), "{err}");
        let ok = bound(doc(&["short".to_owned()]), &limits).expect("fits");
        assert_eq!(ok.segments.len(), 1);
    }
}
