use super::*;
use crate::extract::xml::testing::{noise, run, run_expired, zip_of};
use crate::extract::{Format, Limits};

const DECK: &[u8] = include_bytes!("../../../fixtures/office/deck.pptx");
const DECK_TEXT: &str = include_str!("../../../fixtures/office/deck.pptx.expected.txt");

fn extract(bytes: &[u8]) -> Result<Document, ExtractError> {
    run(&PptxExtractor, bytes, Format::Pptx, &Limits::default())
}

fn on(doc: &Document, text: &str) -> (SegmentKind, Location) {
    let s = doc
        .segments
        .iter()
        .find(|s| s.text == text)
        .unwrap_or_else(|| panic!("no segment {text:?} in {:#?}", doc.segments));
    (s.kind, s.location.clone())
}

fn slide(n: u32) -> Location {
    Location::Slide { slide: n }
}

#[test]
fn fixture_text() {
    let doc = extract(DECK).expect("extract");
    assert_eq!(doc.plain_text(), DECK_TEXT);
    assert_eq!(doc.metadata.get("slides"), Some(&serde_json::json!(3)));
}

#[test]
fn fixture_kinds_and_slides() {
    let doc = extract(DECK).expect("extract");
    assert_eq!(
        on(&doc, "Docpipe Overview"),
        (SegmentKind::Heading, slide(1))
    );
    assert_eq!(
        on(&doc, "Text with locations"),
        (SegmentKind::Paragraph, slide(1))
    );
    assert_eq!(on(&doc, "Welcome everyone."), (SegmentKind::Note, slide(1)));
    assert_eq!(on(&doc, "Features"), (SegmentKind::Heading, slide(2)));
    assert_eq!(on(&doc, "Extract ODT"), (SegmentKind::Paragraph, slide(2)));
    assert_eq!(
        on(&doc, "Mention the zip-bomb guard."),
        (SegmentKind::Note, slide(2))
    );
    assert_eq!(on(&doc, "Numbers"), (SegmentKind::Heading, slide(3)));
    assert_eq!(
        on(&doc, "Format | Tests"),
        (SegmentKind::TableHeader, slide(3))
    );
    assert_eq!(on(&doc, "PPTX | 4"), (SegmentKind::TableRow, slide(3)));
}

#[test]
fn too_many_slides_is_a_limit() {
    let limits = Limits {
        max_pages: 2,
        ..Limits::default()
    };
    let err = run(&PptxExtractor, DECK, Format::Pptx, &limits).expect_err("3 slides > 2");
    assert_eq!(err.code(), "limit_exceeded");
}

#[test]
fn truncated_and_random_bytes_are_corrupt() {
    assert_eq!(
        extract(&DECK[..DECK.len() / 2])
            .expect_err("truncated")
            .code(),
        "corrupt_file"
    );
    assert_eq!(
        extract(&noise(4096)).expect_err("noise").code(),
        "corrupt_file"
    );
}

#[test]
fn zip_bomb_is_refused() {
    let huge = vec![b' '; 16 * 1024 * 1024];
    let bytes = zip_of(&[("ppt/presentation.xml", huge.as_slice())]);
    assert_eq!(extract(&bytes).expect_err("bomb").code(), "limit_exceeded");
}

#[test]
fn ole2_is_password_protected() {
    let mut bytes = OLE2_MAGIC.to_vec();
    bytes.extend(noise(512));
    assert_eq!(
        extract(&bytes).expect_err("ole2").code(),
        "password_protected"
    );
}

#[test]
fn dangling_slide_reference_is_corrupt() {
    let pres = br#"<p:presentation xmlns:p="p" xmlns:r="r"><p:sldIdLst><p:sldId id="256" r:id="rId9"/></p:sldIdLst></p:presentation>"#;
    let bytes = zip_of(&[("ppt/presentation.xml", pres.as_slice())]);
    assert_eq!(
        extract(&bytes).expect_err("dangling").code(),
        "corrupt_file"
    );
}

#[test]
fn expired_deadline_times_out() {
    let err = run_expired(&PptxExtractor, DECK, Format::Pptx).expect_err("timeout");
    assert_eq!(err.code(), "extraction_timeout");
}
