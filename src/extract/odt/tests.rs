use super::*;
use crate::extract::xml::testing::{find, noise, run, run_expired, section, zip_of};
use crate::extract::{Format, Limits};

const GUIDE: &[u8] = include_bytes!("../../../fixtures/office/guide.odt");
const GUIDE_TEXT: &str = include_str!("../../../fixtures/office/guide.odt.expected.txt");

fn extract(bytes: &[u8]) -> Result<Document, ExtractError> {
    run(&OdtExtractor, bytes, Format::Odt, &Limits::default())
}

/// An ODT holding only this `office:text` body.
fn odt_with_body(body: &str) -> Vec<u8> {
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0"><office:automatic-styles><text:list-style style:name="N"><text:list-level-style-number text:level="1" style:num-format="1" style:num-suffix=")"/><text:list-level-style-number text:level="2" style:num-format="a" style:num-suffix="."/></text:list-style></office:automatic-styles><office:body><office:text>{body}</office:text></office:body></office:document-content>"#
    );
    zip_of(&[
        (
            "mimetype",
            b"application/vnd.oasis.opendocument.text".as_slice(),
        ),
        ("content.xml", content.as_bytes()),
    ])
}

#[test]
fn fixture_text() {
    let doc = extract(GUIDE).expect("extract");
    assert_eq!(doc.plain_text(), GUIDE_TEXT);
    assert_eq!(doc.metadata.get("blocks"), Some(&serde_json::json!(14)));
}

#[test]
fn fixture_kinds_and_locations() {
    let doc = extract(GUIDE).expect("extract");
    let h = find(&doc, "Field Guide");
    assert_eq!(
        (h.kind, h.location.clone()),
        (SegmentKind::Heading, section(&["Field Guide"], 1))
    );
    let p = find(&doc, "Look\tup.\nThen listen.");
    assert_eq!(
        (p.kind, p.location.clone()),
        (
            SegmentKind::Paragraph,
            section(&["Field Guide", "Spotting"], 4)
        )
    );
    let item = find(&doc, "2. Write it down");
    assert_eq!(
        (item.kind, item.location.clone()),
        (
            SegmentKind::ListItem,
            section(&["Field Guide", "Counting"], 9)
        )
    );
    assert_eq!(find(&doc, "- Binoculars").kind, SegmentKind::ListItem);
    let header = find(&doc, "Species | Count");
    assert_eq!(
        (header.kind, header.location.clone()),
        (SegmentKind::TableHeader, section(&["Records"], 11))
    );
    assert_eq!(find(&doc, "Robin | 3").kind, SegmentKind::TableRow);
    let comment = find(&doc, "Verify the method");
    assert_eq!(comment.kind, SegmentKind::Comment);
    assert_eq!(
        comment.location, p.location,
        "the comment sits in the paragraph it annotates"
    );
}

#[test]
fn spans_spaces_tabs_and_breaks() {
    let doc = extract(&odt_with_body(
        "<text:p>  One <text:span>two <text:span>three</text:span></text:span>\n   four<text:s text:c=\"3\"/>five<text:tab/>six<text:line-break/>seven<text:s/></text:p>",
    ))
    .expect("extract");
    assert_eq!(doc.plain_text(), "One two three four   five\tsix\nseven");
}

#[test]
fn nested_numbered_lists_and_table_without_header_rows() {
    let doc = extract(&odt_with_body(concat!(
        "<text:h text:outline-level=\"2\">Deep</text:h>",
        "<text:list text:style-name=\"N\"><text:list-item><text:p>First</text:p>",
        "<text:list><text:list-item><text:p>Inner</text:p></text:list-item></text:list></text:list-item>",
        "<text:list-item><text:p>Second</text:p><text:p>More of second</text:p></text:list-item></text:list>",
        "<table:table><table:table-row><table:table-cell><text:p>a</text:p><text:p>b</text:p></table:table-cell>",
        "<table:covered-table-cell><text:p>hidden</text:p></table:covered-table-cell>",
        "<table:table-cell><text:p>c</text:p></table:table-cell></table:table-row>",
        "<table:table-row><table:table-cell><text:p>d<text:note><text:note-citation>1</text:note-citation>",
        "<text:note-body><text:p>A footnote</text:p></text:note-body></text:note></text:p></table:table-cell>",
        "<table:table-cell/></table:table-row></table:table>",
    )))
    .expect("extract");
    let texts: Vec<(&str, SegmentKind)> = doc
        .segments
        .iter()
        .map(|s| (s.text.as_str(), s.kind))
        .collect();
    assert_eq!(
        texts,
        vec![
            ("Deep", SegmentKind::Heading),
            ("1) First", SegmentKind::ListItem),
            ("a. Inner", SegmentKind::ListItem),
            ("2) Second", SegmentKind::ListItem),
            ("More of second", SegmentKind::ListItem),
            ("a b | c", SegmentKind::TableHeader),
            ("d | ", SegmentKind::TableRow),
            ("A footnote", SegmentKind::Note),
        ]
    );
    assert_eq!(doc.segments[6].location, section(&["Deep"], 7));
}

#[test]
fn truncated_and_random_bytes_are_corrupt() {
    assert_eq!(
        extract(&GUIDE[..GUIDE.len() / 2])
            .expect_err("truncated")
            .code(),
        "corrupt_file"
    );
    assert_eq!(
        extract(&noise(2048)).expect_err("noise").code(),
        "corrupt_file"
    );
    let bad = zip_of(&[(
        "content.xml",
        b"<office:body><text:p>x</office:body>".as_slice(),
    )]);
    assert_eq!(extract(&bad).expect_err("bad xml").code(), "corrupt_file");
}

#[test]
fn zip_bomb_is_refused() {
    let huge = vec![b'x'; 16 * 1024 * 1024];
    let bytes = zip_of(&[("content.xml", huge.as_slice())]);
    assert_eq!(extract(&bytes).expect_err("bomb").code(), "limit_exceeded");
}

#[test]
fn encrypted_odt_is_password_protected() {
    let manifest = br#"<manifest:manifest><manifest:file-entry manifest:full-path="content.xml"><manifest:encryption-data/></manifest:file-entry></manifest:manifest>"#;
    let bytes = zip_of(&[
        ("META-INF/manifest.xml", manifest.as_slice()),
        ("content.xml", b"\x01\x02".as_slice()),
    ]);
    assert_eq!(
        extract(&bytes).expect_err("encrypted").code(),
        "password_protected"
    );
}

#[test]
fn expired_deadline_times_out() {
    let err = run_expired(&OdtExtractor, GUIDE, Format::Odt).expect_err("timeout");
    assert_eq!(err.code(), "extraction_timeout");
}
