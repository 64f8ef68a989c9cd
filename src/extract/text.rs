//! Text-like files: plain text, Markdown, JSON, XML and source code.
//!
//! Bytes are decoded by [`decode_text`] (BOM, then strict UTF-8, then a chardetng guess). Plain text, JSON and XML
//! become one [`SegmentKind::Paragraph`] per run of non-blank lines, source code one [`SegmentKind::Code`] block per
//! run, both located by [`Location::Lines`] (1-based, inclusive). Markdown keeps its structure (headings, paragraphs,
//! list items, fenced code) with [`Location::Section`] locations, see [`markdown::markdown_segments`]. Text is kept as
//! written; only the `#` marks and setext underlines of headings are dropped.

pub mod markdown;

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::Encoding;

use super::{Context, ExtractError, Extractor, Format, Input};
use crate::types::{Document, Location, Segment, SegmentKind};

/// The deadline is checked and progress reported every this many blocks.
const BLOCKS_PER_CHECK: usize = 256;

/// Name reported for input that is valid UTF-8 without a BOM.
const UTF8: &str = "UTF-8";

/// Extractor for [`Format::Text`], [`Format::Markdown`], [`Format::Json`], [`Format::Xml`] and [`Format::Code`].
pub struct TextExtractor;

impl Extractor for TextExtractor {
    fn extract(&self, input: &Input<'_>, ctx: &Context<'_>) -> Result<Document, ExtractError> {
        ctx.check_deadline()?;
        let (text, encoding) = decode_text(input.bytes);
        if text.trim().is_empty() {
            return Err(ExtractError::Empty("the file has no text".into()));
        }
        let mut doc = Document::default();
        doc.set_meta("encoding", encoding);
        doc.set_meta("lines", text.lines().count());
        doc.segments = match input.format {
            Format::Markdown => markdown::markdown_segments(&text),
            Format::Code(lang) => {
                doc.set_meta("language", lang);
                line_blocks(&text, SegmentKind::Code, ctx)?
            }
            _ => line_blocks(&text, SegmentKind::Paragraph, ctx)?,
        };
        let total = doc.segments.len() as u64;
        ctx.report(total, total, "blocks");
        Ok(doc)
    }
}

/// Decodes text bytes and names the encoding used: a byte-order mark wins (UTF-8, UTF-16LE, UTF-16BE), then
/// strict UTF-8, then chardetng's guess (Windows-1252 for Latin-1 text, Shift_JIS, GBK, ...). Never fails:
/// undecodable bytes become U+FFFD. The BOM is not part of the returned text.
pub fn decode_text(bytes: &[u8]) -> (String, &'static str) {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let rest = bytes.get(bom_len..).unwrap_or_default();
        let (text, _had_errors) = encoding.decode_without_bom_handling(rest);
        return (text.into_owned(), encoding.name());
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return (text.to_owned(), UTF8);
    }
    let mut detector = EncodingDetector::new(Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    let encoding = detector.guess(None, Utf8Detection::Allow);
    let (text, _had_errors) = encoding.decode_without_bom_handling(bytes);
    (text.into_owned(), encoding.name())
}

/// Splits `text` into runs of non-blank lines, each one segment of `kind` located by its line numbers.
fn line_blocks(
    text: &str,
    kind: SegmentKind,
    ctx: &Context<'_>,
) -> Result<Vec<Segment>, ExtractError> {
    let mut segments = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut start = 0u32;
    let mut line_no = 0u32;
    for line in text.lines() {
        line_no = line_no.saturating_add(1);
        if line.trim().is_empty() {
            if !current.is_empty() {
                segments.push(block(kind, &current, start, line_no - 1));
                current.clear();
                if segments.len() % BLOCKS_PER_CHECK == 0 {
                    ctx.check_deadline()?;
                }
            }
            continue;
        }
        if current.is_empty() {
            start = line_no;
        }
        current.push(line);
    }
    if !current.is_empty() {
        segments.push(block(kind, &current, start, line_no));
    }
    Ok(segments)
}

fn block(kind: SegmentKind, lines: &[&str], start: u32, end: u32) -> Segment {
    Segment::new(kind, lines.join("\n"), Location::Lines { start, end })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::extract::Limits;

    fn run(bytes: &[u8], format: Format) -> Result<Document, ExtractError> {
        let limits = Limits::default();
        let progress = |_: u64, _: u64, _: &'static str| {};
        let ctx = Context {
            limits: &limits,
            deadline: Instant::now() + Duration::from_secs(60),
            progress: &progress,
        };
        TextExtractor.extract(&Input { bytes, format }, &ctx)
    }

    fn lines(start: u32, end: u32) -> Location {
        Location::Lines { start, end }
    }

    const PLAIN_EXPECTED: &str = include_str!("../../fixtures/text/plain-utf8.txt.expected.txt");

    #[test]
    fn plain_utf8_paragraphs_with_line_numbers() {
        let doc = run(
            include_bytes!("../../fixtures/text/plain-utf8.txt"),
            Format::Text,
        )
        .expect("extract");
        assert_eq!(doc.plain_text(), PLAIN_EXPECTED.trim_end_matches('\n'));
        let locs: Vec<_> = doc.segments.iter().map(|s| s.location.clone()).collect();
        assert_eq!(locs, vec![lines(1, 2), lines(4, 4), lines(7, 7)]);
        assert!(
            doc.segments
                .iter()
                .all(|s| s.kind == SegmentKind::Paragraph)
        );
        assert_eq!(doc.metadata["encoding"], "UTF-8");
        assert_eq!(doc.metadata["lines"], 7);
    }

    #[test]
    fn utf16le_with_bom_decodes_to_the_same_text() {
        let doc = run(
            include_bytes!("../../fixtures/text/plain-utf16le.txt"),
            Format::Text,
        )
        .expect("extract");
        let expected = include_str!("../../fixtures/text/plain-utf16le.txt.expected.txt");
        assert_eq!(doc.plain_text(), expected.trim_end_matches('\n'));
        assert_eq!(doc.metadata["encoding"], "UTF-16LE");
    }

    #[test]
    fn latin1_is_detected_as_windows_1252() {
        let doc = run(
            include_bytes!("../../fixtures/text/plain-latin1.txt"),
            Format::Text,
        )
        .expect("extract");
        let expected = include_str!("../../fixtures/text/plain-latin1.txt.expected.txt");
        assert_eq!(doc.plain_text(), expected.trim_end_matches('\n'));
        assert_eq!(doc.metadata["encoding"], "windows-1252");
    }

    #[test]
    fn decode_text_handles_boms_and_shift_jis() {
        assert_eq!(decode_text(b"\xef\xbb\xbfhi"), ("hi".to_owned(), "UTF-8"));
        assert_eq!(
            decode_text(b"\xfe\xff\x00h\x00i"),
            ("hi".to_owned(), "UTF-16BE")
        );
        let (sjis, _, _) =
            encoding_rs::SHIFT_JIS.encode("日本語のテキストです。これは東京で書かれました。");
        let (text, name) = decode_text(&sjis);
        assert_eq!(name, "Shift_JIS");
        assert_eq!(text, "日本語のテキストです。これは東京で書かれました。");
    }

    #[test]
    fn json_and_xml_are_paragraphs() {
        for (bytes, expected, format) in [
            (
                &include_bytes!("../../fixtures/text/data.json")[..],
                include_str!("../../fixtures/text/data.json.expected.txt"),
                Format::Json,
            ),
            (
                &include_bytes!("../../fixtures/text/note.xml")[..],
                include_str!("../../fixtures/text/note.xml.expected.txt"),
                Format::Xml,
            ),
        ] {
            let doc = run(bytes, format).expect("extract");
            assert_eq!(doc.plain_text(), expected.trim_end_matches('\n'));
            assert!(
                doc.segments
                    .iter()
                    .all(|s| s.kind == SegmentKind::Paragraph)
            );
        }
        let doc =
            run(include_bytes!("../../fixtures/text/note.xml"), Format::Xml).expect("extract");
        assert_eq!(doc.segments[0].location, lines(1, 5));
        assert_eq!(doc.segments[1].location, lines(7, 7));
    }

    /// Every code fixture: (file bytes, expected text, language, expected number of blocks).
    const CODE: &[(&[u8], &str, &str, usize)] = &[
        (
            include_bytes!("../../fixtures/text/sample.py"),
            include_str!("../../fixtures/text/sample.py.expected.txt"),
            "python",
            3,
        ),
        (
            include_bytes!("../../fixtures/text/sample.js"),
            include_str!("../../fixtures/text/sample.js.expected.txt"),
            "javascript",
            2,
        ),
        (
            include_bytes!("../../fixtures/text/sample.ts"),
            include_str!("../../fixtures/text/sample.ts.expected.txt"),
            "typescript",
            2,
        ),
        (
            include_bytes!("../../fixtures/text/sample.rs"),
            include_str!("../../fixtures/text/sample.rs.expected.txt"),
            "rust",
            2,
        ),
        (
            include_bytes!("../../fixtures/text/sample.go"),
            include_str!("../../fixtures/text/sample.go.expected.txt"),
            "go",
            3,
        ),
        (
            include_bytes!("../../fixtures/text/Sample.java"),
            include_str!("../../fixtures/text/Sample.java.expected.txt"),
            "java",
            1,
        ),
        (
            include_bytes!("../../fixtures/text/sample.c"),
            include_str!("../../fixtures/text/sample.c.expected.txt"),
            "c",
            2,
        ),
        (
            include_bytes!("../../fixtures/text/sample.cpp"),
            include_str!("../../fixtures/text/sample.cpp.expected.txt"),
            "cpp",
            2,
        ),
        (
            include_bytes!("../../fixtures/text/sample.css"),
            include_str!("../../fixtures/text/sample.css.expected.txt"),
            "css",
            2,
        ),
        (
            include_bytes!("../../fixtures/text/sample.sh"),
            include_str!("../../fixtures/text/sample.sh.expected.txt"),
            "shell",
            2,
        ),
        (
            include_bytes!("../../fixtures/text/sample.sql"),
            include_str!("../../fixtures/text/sample.sql.expected.txt"),
            "sql",
            2,
        ),
        (
            include_bytes!("../../fixtures/text/sample.yaml"),
            include_str!("../../fixtures/text/sample.yaml.expected.txt"),
            "yaml",
            2,
        ),
        (
            include_bytes!("../../fixtures/text/sample.toml"),
            include_str!("../../fixtures/text/sample.toml.expected.txt"),
            "toml",
            2,
        ),
    ];

    #[test]
    fn code_files_become_code_blocks() {
        for (bytes, expected, lang, blocks) in CODE {
            let doc = run(bytes, Format::Code(lang)).expect("extract");
            assert_eq!(doc.plain_text(), expected.trim_end_matches('\n'), "{lang}");
            assert_eq!(doc.segments.len(), *blocks, "{lang}");
            assert!(
                doc.segments.iter().all(|s| s.kind == SegmentKind::Code),
                "{lang}"
            );
            assert_eq!(doc.metadata["language"], *lang);
        }
        let doc = run(CODE[0].0, Format::Code("python")).expect("extract");
        assert_eq!(doc.segments[1].location, lines(4, 5));
    }

    #[test]
    fn blank_input_is_empty() {
        let err = run(b"  \n\n\t\n", Format::Text).expect_err("blank");
        assert_eq!(err.code(), "no_content");
    }

    #[test]
    fn past_deadline_times_out() {
        let limits = Limits::default();
        let progress = |_: u64, _: u64, _: &'static str| {};
        let ctx = Context {
            limits: &limits,
            deadline: Instant::now(),
            progress: &progress,
        };
        let input = Input {
            bytes: b"text",
            format: Format::Text,
        };
        let err = TextExtractor.extract(&input, &ctx).expect_err("timeout");
        assert_eq!(err.code(), "extraction_timeout");
    }
}
