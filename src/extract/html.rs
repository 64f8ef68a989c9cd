//! HTML: decoded with the page's declared charset (`<meta charset>` or `http-equiv` content type) when it names
//! one, else by [`decode_text`]; rendered to readable text by html2text (scripts and styles dropped, no line
//! wrapping); then sectioned like Markdown, because html2text writes `<h1>`..`<h6>` as `#` headings, so every
//! segment carries its heading path ([`markdown_segments`]). The `<title>` goes to the `title` metadata.

use encoding_rs::Encoding;

use super::text::decode_text;
use super::text::markdown::markdown_segments;
use super::{Context, ExtractError, Extractor, Input};
use crate::types::Document;

/// Render width: wide enough that html2text never wraps a paragraph.
const RENDER_WIDTH: usize = 100_000;
/// Bytes searched for a `<meta charset>` declaration, as browsers do (the HTML spec's prescan uses 1024).
const CHARSET_PRESCAN_BYTES: usize = 1024;

/// Extractor for [`Format::Html`](super::Format::Html).
pub struct HtmlExtractor;

impl Extractor for HtmlExtractor {
    fn extract(&self, input: &Input<'_>, ctx: &Context<'_>) -> Result<Document, ExtractError> {
        ctx.check_deadline()?;
        let (html, encoding) = decode_html(input.bytes);
        let rendered = html2text::config::plain()
            .link_footnotes(false)
            .allow_width_overflow()
            .string_from_read(html.as_bytes(), RENDER_WIDTH)
            .map_err(|e| ExtractError::Corrupt(format!("cannot render the HTML: {e}")))?;
        ctx.check_deadline()?;
        let mut doc = Document {
            segments: markdown_segments(&rendered),
            ..Document::default()
        };
        if doc.segments.is_empty() {
            return Err(ExtractError::Empty("the page has no visible text".into()));
        }
        doc.set_meta("encoding", encoding);
        if let Some(title) = title(&html) {
            doc.set_meta("title", title);
        }
        let total = doc.segments.len() as u64;
        ctx.report(total, total, "blocks");
        Ok(doc)
    }
}

/// Decodes a page: BOM first, then a charset declared in its first bytes, then [`decode_text`]'s detection.
fn decode_html(bytes: &[u8]) -> (String, &'static str) {
    if Encoding::for_bom(bytes).is_none()
        && let Some(encoding) = declared_charset(bytes)
    {
        let (text, _had_errors) = encoding.decode_without_bom_handling(bytes);
        return (text.into_owned(), encoding.name());
    }
    decode_text(bytes)
}

/// The encoding named by `charset=` in the prescan window, if encoding_rs knows the label.
fn declared_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = &bytes[..bytes.len().min(CHARSET_PRESCAN_BYTES)];
    let lower = head.to_ascii_lowercase();
    let at = lower
        .windows(b"charset".len())
        .position(|w| w == b"charset")?;
    let rest = &head[at + b"charset".len()..];
    let rest = rest.strip_prefix(b"=").or_else(|| {
        let trimmed = rest.trim_ascii_start();
        trimmed.strip_prefix(b"=")
    })?;
    let rest = rest.trim_ascii_start();
    let rest = rest
        .strip_prefix(b"\"")
        .or_else(|| rest.strip_prefix(b"'"))
        .unwrap_or(rest);
    let end = rest
        .iter()
        .position(|b| matches!(b, b'"' | b'\'' | b';' | b'>' | b'/') || b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    let encoding = Encoding::for_label(&rest[..end])?;
    // A page that declares UTF-16 but reached here has no BOM; trust detection instead, as browsers do.
    (encoding != encoding_rs::UTF_16LE && encoding != encoding_rs::UTF_16BE).then_some(encoding)
}

/// The text of the first `<title>` element, whitespace collapsed, with the common entities decoded.
fn title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let raw = html.get(start..end)?;
    let text = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::extract::{Format, Limits};
    use crate::types::{Location, SegmentKind};

    fn run(bytes: &[u8]) -> Result<Document, ExtractError> {
        let limits = Limits::default();
        let progress = |_: u64, _: u64, _: &'static str| {};
        let ctx = Context {
            limits: &limits,
            deadline: Instant::now() + Duration::from_secs(60),
            progress: &progress,
        };
        HtmlExtractor.extract(
            &Input {
                bytes,
                format: Format::Html,
            },
            &ctx,
        )
    }

    fn path(doc: &Document, i: usize) -> Vec<String> {
        match &doc.segments[i].location {
            Location::Section { heading_path, .. } => heading_path.clone(),
            other => panic!("unexpected location {other:?}"),
        }
    }

    #[test]
    fn page_with_headings_scripts_and_styles() {
        let doc = run(include_bytes!("../../fixtures/text/page.html")).expect("extract");
        let expected = include_str!("../../fixtures/text/page.html.expected.txt");
        assert_eq!(doc.plain_text(), expected.trim_end_matches('\n'));
        assert!(!doc.plain_text().contains("secret"));
        assert!(!doc.plain_text().contains("color"));
        assert_eq!(doc.metadata["title"], "Docpipe Page");
        assert_eq!(doc.metadata["encoding"], "UTF-8");
        assert_eq!(doc.segments[0].kind, SegmentKind::Heading);
        assert_eq!(path(&doc, 1), ["Overview"]);
        assert_eq!(path(&doc, 3), ["Overview", "Details"]);
        assert_eq!(
            doc.segments.last().map(|s| s.kind),
            Some(SegmentKind::ListItem)
        );
    }

    #[test]
    fn declared_windows_1252() {
        let doc = run(include_bytes!("../../fixtures/text/legacy-1252.html")).expect("extract");
        let expected = include_str!("../../fixtures/text/legacy-1252.html.expected.txt");
        assert_eq!(doc.plain_text(), expected.trim_end_matches('\n'));
        assert_eq!(doc.metadata["title"], "Résumé");
        assert_eq!(doc.metadata["encoding"], "windows-1252");
    }

    #[test]
    fn charset_prescan() {
        let meta = b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=Shift_JIS\">";
        assert_eq!(declared_charset(meta), Some(encoding_rs::SHIFT_JIS));
        assert_eq!(declared_charset(b"<meta charset='utf-16'>"), None);
        assert_eq!(declared_charset(b"<p>no declaration</p>"), None);
    }

    #[test]
    fn page_without_text_is_empty() {
        let err =
            run(b"<html><head><script>x()</script></head><body></body></html>").expect_err("empty");
        assert_eq!(err.code(), "no_content");
    }
}
