//! Workbook tests over python-calamine's fixtures.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;
use crate::extract::Limits;

fn run_with(bytes: &[u8], format: Format, limits: &Limits) -> Result<Document, ExtractError> {
    let progress = |_: u64, _: u64, _: &'static str| {};
    let ctx = Context {
        limits,
        deadline: Instant::now() + Duration::from_secs(60),
        progress: &progress,
    };
    SheetExtractor.extract(&Input { bytes, format }, &ctx)
}

fn run(bytes: &[u8], format: Format) -> Document {
    run_with(bytes, format, &Limits::default()).expect("extract")
}

fn ranges(doc: &Document) -> Vec<String> {
    doc.segments
        .iter()
        .map(|s| match &s.location {
            Location::Cells { sheet, range } => format!("{sheet}!{range}"),
            other => panic!("unexpected location {other:?}"),
        })
        .collect()
}

#[test]
fn base_in_four_formats() {
    let cases: [(&[u8], &str, Format, &[&str]); 4] = [
        (
            include_bytes!("../../../fixtures/sheet/calamine_base.xlsx"),
            include_str!("../../../fixtures/sheet/calamine_base.xlsx.expected.txt"),
            Format::Xlsx,
            &["Sheet1", "Sheet2", "Sheet3", "Merged Cells"],
        ),
        (
            include_bytes!("../../../fixtures/sheet/calamine_base.xlsb"),
            include_str!("../../../fixtures/sheet/calamine_base.xlsb.expected.txt"),
            Format::Xlsb,
            &["Sheet1", "Sheet2", "Sheet3", "Merged Cells"],
        ),
        (
            include_bytes!("../../../fixtures/sheet/calamine_base.xls"),
            include_str!("../../../fixtures/sheet/calamine_base.xls.expected.txt"),
            Format::Xls,
            &["Sheet1", "Sheet2", "Merged Cells"],
        ),
        (
            include_bytes!("../../../fixtures/sheet/calamine_base.ods"),
            include_str!("../../../fixtures/sheet/calamine_base.ods.expected.txt"),
            Format::Ods,
            &["Sheet1", "Sheet2", "Merged Cells"],
        ),
    ];
    for (bytes, expected, format, sheets) in cases {
        let doc = run(bytes, format);
        assert_eq!(
            doc.plain_text(),
            expected.trim_end_matches('\n'),
            "{format:?}"
        );
        assert_eq!(doc.metadata["sheets"], json!(sheets), "{format:?}");
        assert_eq!(doc.segments[0].kind, SegmentKind::TableHeader);
        assert_eq!(ranges(&doc)[0], "Sheet1!A2:J2", "{format:?}");
        assert_eq!(doc.metadata["sheet_details"][0]["range"], "A2:J2");
        assert_eq!(doc.metadata["sheet_details"][0]["columns"], 10);
        assert!(
            doc.metadata["sheet_details"][1].get("range").is_none(),
            "Sheet2 is empty"
        );
    }
    let doc = run(
        include_bytes!("../../../fixtures/sheet/calamine_base.xlsx"),
        Format::Xlsx,
    );
    assert_eq!(
        ranges(&doc)[1..],
        ["Sheet3!B2:D2", "Sheet3!B3:D3", "Sheet3!B4:D4"]
    );
    let kinds: Vec<SegmentKind> = doc.segments.iter().map(|s| s.kind).collect();
    use SegmentKind::{TableHeader, TableRow};
    assert_eq!(kinds, [TableHeader, TableHeader, TableRow, TableRow]);
    assert_eq!(doc.metadata["sheet_details"][2]["range"], "B2:D4");
    assert_eq!(doc.metadata["sheet_details"][2]["rows"], 3);
}

#[test]
fn hidden_sheets_are_extracted_and_listed() {
    let doc = run(
        include_bytes!("../../../fixtures/sheet/calamine_any_sheets.xlsx"),
        Format::Xlsx,
    );
    let expected = include_str!("../../../fixtures/sheet/calamine_any_sheets.xlsx.expected.txt");
    assert_eq!(doc.plain_text(), expected.trim_end_matches('\n'));
    assert_eq!(
        ranges(&doc),
        [
            "Visible!A1:B1",
            "Visible!A2:B2",
            "Visible!A3:B3",
            "Visible!A5:A5"
        ]
    );
    assert_eq!(
        doc.metadata["sheets"],
        json!(["Visible", "Hidden", "VeryHidden", "Chart"])
    );
    assert_eq!(
        doc.metadata["hidden_sheets"],
        json!(["Hidden", "VeryHidden"])
    );
    let details = &doc.metadata["sheet_details"];
    assert_eq!(details[1]["visibility"], "hidden");
    assert_eq!(details[2]["visibility"], "very_hidden");
    assert_eq!(details[3]["type"], "chart_sheet");
}

#[test]
fn several_tables() {
    let doc = run(
        include_bytes!("../../../fixtures/sheet/calamine_table_multiple.xlsx"),
        Format::Xlsx,
    );
    let expected =
        include_str!("../../../fixtures/sheet/calamine_table_multiple.xlsx.expected.txt");
    assert_eq!(doc.plain_text(), expected.trim_end_matches('\n'));
    let r = ranges(&doc);
    assert_eq!(r[0], "Sheet1!A1:C1");
    assert_eq!(r[4], "Sheet1!A5:C5");
    assert_eq!(r[5], "Sheet2!A1:B1");
    assert_eq!(r[15], "Sheet3!A7:B7");
    assert_eq!(doc.segments[15].kind, SegmentKind::TableRow);
}

#[test]
fn password_empty_corrupt() {
    let err = run_with(
        include_bytes!("../../../fixtures/sheet/calamine_password.xlsx"),
        Format::Xlsx,
        &Limits::default(),
    )
    .expect_err("password");
    assert_eq!(err.code(), "password_protected");
    let err = run_with(
        include_bytes!("../../../fixtures/sheet/calamine_empty_file.xlsx"),
        Format::Xlsx,
        &Limits::default(),
    )
    .expect_err("empty");
    assert_eq!(err.code(), "no_content");
    let base = include_bytes!("../../../fixtures/sheet/calamine_base.xlsx");
    for format in [Format::Xlsx, Format::Xlsb, Format::Ods, Format::Xls] {
        let err =
            run_with(&base[..base.len() / 2], format, &Limits::default()).expect_err("truncated");
        assert_eq!(err.code(), "corrupt_file", "{format:?}");
    }
    let xls = include_bytes!("../../../fixtures/sheet/calamine_base.xls");
    let err =
        run_with(&xls[..xls.len() / 2], Format::Xls, &Limits::default()).expect_err("truncated");
    assert_eq!(err.code(), "corrupt_file");
}

#[test]
fn cell_limit_and_progress() {
    let limits = Limits {
        max_cells: 5,
        ..Limits::default()
    };
    let bytes = include_bytes!("../../../fixtures/sheet/calamine_base.xlsx");
    let err = run_with(bytes, Format::Xlsx, &limits).expect_err("limit");
    assert_eq!(err.code(), "limit_exceeded");

    let seen = Mutex::new(Vec::new());
    let progress = |done: u64, total: u64, unit: &'static str| {
        seen.lock().expect("lock").push((done, total, unit));
    };
    let limits = Limits::default();
    let ctx = Context {
        limits: &limits,
        deadline: Instant::now() + Duration::from_secs(60),
        progress: &progress,
    };
    let input = Input {
        bytes,
        format: Format::Xlsx,
    };
    SheetExtractor.extract(&input, &ctx).expect("extract");
    assert_eq!(seen.lock().expect("lock").last(), Some(&(4, 4, "sheets")));

    let past = Context {
        limits: &limits,
        deadline: Instant::now(),
        progress: &progress,
    };
    let err = SheetExtractor.extract(&input, &past).expect_err("timeout");
    assert_eq!(err.code(), "extraction_timeout");
}

#[test]
fn a1_names() {
    assert_eq!(a1(0, 0), "A1");
    assert_eq!(a1(9, 25), "Z10");
    assert_eq!(a1(0, 26), "AA1");
    assert_eq!(a1(1, 701), "ZZ2");
    assert_eq!(a1(1, 702), "AAA2");
}
