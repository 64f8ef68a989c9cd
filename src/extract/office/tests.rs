use super::*;
use crate::extract::xml::testing::{find, noise, run, run_expired, section, zip_of};
use crate::extract::{Format, Limits};

const REPORT: &[u8] = include_bytes!("../../../fixtures/office/report.docx");
const REPORT_TEXT: &str = include_str!("../../../fixtures/office/report.docx.expected.txt");
const GUIDE: &[u8] = include_bytes!("../../../fixtures/office/guide-libreoffice.docx");
const GUIDE_TEXT: &str =
    include_str!("../../../fixtures/office/guide-libreoffice.docx.expected.txt");

fn extract(bytes: &[u8]) -> Result<Document, ExtractError> {
    run(&DocxExtractor, bytes, Format::Docx, &Limits::default())
}

#[test]
fn python_docx_fixture_text() {
    let doc = extract(REPORT).expect("extract");
    assert_eq!(doc.plain_text(), REPORT_TEXT);
}

#[test]
fn python_docx_fixture_kinds_and_locations() {
    let doc = extract(REPORT).expect("extract");
    let title = find(&doc, "Quarterly Report");
    assert_eq!(title.kind, SegmentKind::Heading);
    assert_eq!(title.location, section(&["Quarterly Report"], 1));
    let goals = find(&doc, "Goals");
    assert_eq!(
        goals.location,
        section(&["Quarterly Report", "Introduction", "Goals"], 4)
    );
    let bullet = find(&doc, "- Grow revenue");
    assert_eq!(bullet.kind, SegmentKind::ListItem);
    assert_eq!(
        bullet.location,
        section(&["Quarterly Report", "Introduction", "Goals"], 5)
    );
    // "Results" is a level-1 heading: it replaces "Introduction" and drops "Goals".
    let results = find(&doc, "Revenue grew by 12 percent.");
    assert_eq!(results.kind, SegmentKind::Paragraph);
    assert_eq!(
        results.location,
        section(&["Quarterly Report", "Results"], 8)
    );
    assert_eq!(find(&doc, "2. Write the tests").kind, SegmentKind::ListItem);
    let header_row = find(&doc, "Region | Revenue");
    assert_eq!(header_row.kind, SegmentKind::TableHeader);
    assert_eq!(
        header_row.location,
        section(&["Quarterly Report", "Results", "Figures"], 12)
    );
    let row = find(&doc, "South | 80");
    assert_eq!(row.kind, SegmentKind::TableRow);
    assert_eq!(
        row.location,
        section(&["Quarterly Report", "Results", "Figures"], 14)
    );
    assert_eq!(find(&doc, "ACME Confidential").kind, SegmentKind::Header);
    assert_eq!(find(&doc, "Page footer text").kind, SegmentKind::Footer);
    let comment = find(&doc, "Check this figure");
    assert_eq!(comment.kind, SegmentKind::Comment);
    assert_eq!(
        comment.location, results.location,
        "a comment sits where it is anchored"
    );
    assert_eq!(doc.metadata.get("blocks"), Some(&serde_json::json!(15)));
}

#[test]
fn libreoffice_docx_fixture() {
    let doc = extract(GUIDE).expect("extract");
    assert_eq!(doc.plain_text(), GUIDE_TEXT);
    let heading = find(&doc, "Counting");
    assert_eq!(heading.kind, SegmentKind::Heading);
    assert_eq!(heading.location, section(&["Field Guide", "Counting"], 7));
    assert_eq!(find(&doc, "- Notebook").kind, SegmentKind::ListItem);
    assert_eq!(
        find(&doc, "1. Count the flock").location,
        section(&["Field Guide", "Counting"], 8)
    );
    assert_eq!(find(&doc, "Species | Count").kind, SegmentKind::TableHeader);
    assert_eq!(find(&doc, "Wren | 1").location, section(&["Records"], 13));
    assert_eq!(find(&doc, "Field Guide Header").kind, SegmentKind::Header);
    assert_eq!(find(&doc, "Field Guide Footer").kind, SegmentKind::Footer);
    assert_eq!(find(&doc, "Verify the method").kind, SegmentKind::Comment);
}

#[test]
fn truncated_fixture_is_corrupt() {
    let err = extract(&REPORT[..REPORT.len() / 2]).expect_err("truncated");
    assert_eq!(err.code(), "corrupt_file");
}

#[test]
fn random_bytes_are_corrupt() {
    assert_eq!(
        extract(&noise(4096)).expect_err("noise").code(),
        "corrupt_file"
    );
    assert_eq!(extract(b"").expect_err("empty").code(), "corrupt_file");
}

#[test]
fn ole2_container_is_password_protected() {
    let mut bytes = OLE2_MAGIC.to_vec();
    bytes.extend(noise(1024));
    assert_eq!(
        extract(&bytes).expect_err("ole2").code(),
        "password_protected"
    );
}

#[test]
fn zip_bomb_is_refused() {
    let huge = vec![b'a'; 16 * 1024 * 1024];
    let bytes = zip_of(&[
        ("[Content_Types].xml", b"<Types/>".as_slice()),
        ("word/document.xml", huge.as_slice()),
    ]);
    assert_eq!(extract(&bytes).expect_err("bomb").code(), "limit_exceeded");
}

#[test]
fn malformed_document_part_is_corrupt() {
    let bytes = zip_of(&[("word/document.xml", b"<w:document><w:body><w:p>".as_slice())]);
    let err = extract(&bytes).expect_err("bad xml");
    assert_eq!(err.code(), "corrupt_file");
    let bytes = zip_of(&[("other.xml", b"<a/>".as_slice())]);
    assert_eq!(
        extract(&bytes).expect_err("no document").code(),
        "corrupt_file"
    );
}

#[test]
fn expired_deadline_times_out() {
    let err = run_expired(&DocxExtractor, REPORT, Format::Docx).expect_err("timeout");
    assert_eq!(err.code(), "extraction_timeout");
}
