//! CSV and TSV: decoded with [`decode_text`](crate::extract::text::decode_text) (BOM, UTF-8, then a chardetng
//! guess such as Windows-1252), parsed with the csv crate and rendered like a one-sheet workbook named
//! [`SHEET_NAME`]. The row of a cell range is the record's line in the file, so a blank line still counts
//! as a row (as when a spreadsheet program opens the file). CSV delimiters are detected, see [`detect_delimiter`];
//! TSV is always tab-separated with no quoting.

use serde_json::json;

use super::{SheetWriter, UNIT};
use crate::extract::text::decode_text;
use crate::extract::{Context, ExtractError};
use crate::types::Document;

/// The sheet name used in the locations of CSV and TSV rows.
pub const SHEET_NAME: &str = "Sheet1";
/// Delimiters tried for CSV, in order of preference on a tie.
const CANDIDATES: &[u8] = b",;\t|";
/// Records examined to detect the delimiter.
const SAMPLE_RECORDS: usize = 20;
/// The deadline is checked every this many records.
const RECORDS_PER_CHECK: u64 = 1024;

/// Extracts a CSV (`delimiter: None`, detected) or TSV (`Some(b'\t')`) file.
pub fn extract(
    bytes: &[u8],
    delimiter: Option<u8>,
    ctx: &Context<'_>,
) -> Result<Document, ExtractError> {
    let (text, encoding) = decode_text(bytes);
    let tsv = delimiter.is_some();
    let delimiter = delimiter.unwrap_or_else(|| detect_delimiter(&text));
    let mut reader = reader(&text, delimiter, !tsv);
    let mut doc = Document::default();
    let mut writer = SheetWriter::new(SHEET_NAME, 0, &mut doc.segments);
    let mut cells: u64 = 0;
    let mut records: u64 = 0;
    let mut record = csv::StringRecord::new();
    let mut truncated = false;
    let mut lines = LineCounter::new(&text);
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                return Err(ExtractError::Corrupt(format!(
                    "malformed delimited text: {e}"
                )));
            }
        }
        records += 1;
        if records.is_multiple_of(RECORDS_PER_CHECK) {
            ctx.check_deadline()?;
        }
        cells = cells.saturating_add(record.len() as u64);
        if cells > ctx.limits.max_cells {
            return Err(ExtractError::LimitExceeded(format!(
                "more than {} spreadsheet cells",
                ctx.limits.max_cells
            )));
        }
        let start = record.position().map_or(0, |p| p.byte());
        let row = lines.row_at(usize::try_from(start).unwrap_or(usize::MAX));
        let max_columns = ctx.limits.max_columns as usize;
        truncated |= record.len() > max_columns;
        let values: Vec<String> = record
            .iter()
            .take(max_columns)
            .map(|v| v.trim().to_owned())
            .collect();
        writer.row(row, &values);
    }
    let dims = writer.finish();
    ctx.report(1, 1, UNIT);
    let Some(dims) = dims else {
        return Err(ExtractError::Empty(
            "the file has no cells with content".into(),
        ));
    };
    doc.set_meta("encoding", encoding);
    doc.set_meta("delimiter", char::from(delimiter).to_string());
    doc.set_meta("sheets", json!([SHEET_NAME]));
    doc.set_meta("hidden_sheets", json!([]));
    let mut detail = json!({"name": SHEET_NAME, "type": "worksheet", "visibility": "visible"});
    if let (Some(obj), Some(extra)) = (detail.as_object_mut(), dims.as_object()) {
        obj.extend(extra.clone());
        if truncated {
            obj.insert("columns_truncated_at".into(), json!(ctx.limits.max_columns));
        }
    }
    doc.set_meta("sheet_details", json!([detail]));
    doc.set_meta("cells", cells);
    Ok(doc)
}

/// Turns record start offsets (increasing) into 0-based line numbers without rescanning the text.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: u32,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> LineCounter<'a> {
        LineCounter {
            text: text.as_bytes(),
            offset: 0,
            line: 0,
        }
    }

    /// The line of the first character of a record starting at byte `start`. The csv crate skips blank lines
    /// and may report a record's start before them, so line breaks right at `start` are skipped too.
    fn row_at(&mut self, start: usize) -> u32 {
        let mut end = start.min(self.text.len());
        while matches!(self.text.get(end), Some(b'\r' | b'\n')) {
            end += 1;
        }
        if end > self.offset {
            let newlines = self.text[self.offset..end]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            self.line = self
                .line
                .saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
            self.offset = end;
        }
        self.line
    }
}

fn reader(text: &str, delimiter: u8, quoting: bool) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .quoting(quoting)
        .from_reader(text.as_bytes())
}

/// Picks the CSV delimiter among `,` `;` tab `|`: the one whose most common field count over the first records
/// is shared by the most records (and is above one field), then the one with more columns, then the earlier
/// candidate. Falls back to `,`.
pub fn detect_delimiter(text: &str) -> u8 {
    let mut best = (0usize, 0usize, b',');
    for &candidate in CANDIDATES {
        let mut counts: Vec<usize> = reader(text, candidate, true)
            .records()
            .take(SAMPLE_RECORDS)
            .filter_map(Result::ok)
            .map(|r| r.len())
            .collect();
        counts.sort_unstable();
        let (mode, freq) = mode(&counts);
        if mode > 1 && (freq, mode) > (best.0, best.1) {
            best = (freq, mode, candidate);
        }
    }
    best.2
}

/// The most frequent value of a sorted slice and how often it occurs (ties: the larger value).
fn mode(sorted: &[usize]) -> (usize, usize) {
    let mut best = (0, 0);
    for group in sorted.chunk_by(|a, b| a == b) {
        if group.len() >= best.1 {
            best = (group[0], group.len());
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::extract::{Extractor, Format, Input, Limits};
    use crate::types::{Location, SegmentKind};

    fn run_with(bytes: &[u8], format: Format, limits: &Limits) -> Result<Document, ExtractError> {
        let progress = |_: u64, _: u64, _: &'static str| {};
        let ctx = Context {
            limits,
            deadline: Instant::now() + Duration::from_secs(60),
            progress: &progress,
        };
        super::super::SheetExtractor.extract(&Input { bytes, format }, &ctx)
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

    fn check(bytes: &[u8], expected: &str, format: Format) -> Document {
        let doc = run(bytes, format);
        assert_eq!(doc.plain_text(), expected.trim_end_matches('\n'));
        doc
    }

    #[test]
    fn comma_with_quotes_and_blank_line() {
        let doc = check(
            include_bytes!("../../../fixtures/sheet/comma.csv"),
            include_str!("../../../fixtures/sheet/comma.csv.expected.txt"),
            Format::Csv,
        );
        assert_eq!(
            ranges(&doc),
            [
                "Sheet1!A1:C1",
                "Sheet1!A2:C2",
                "Sheet1!A3:C3",
                "Sheet1!A5:C5"
            ]
        );
        assert_eq!(doc.segments[0].kind, SegmentKind::TableHeader);
        assert_eq!(doc.segments[1].kind, SegmentKind::TableRow);
        assert_eq!(doc.metadata["delimiter"], ",");
        assert_eq!(doc.metadata["sheet_details"][0]["range"], "A1:C5");
    }

    #[test]
    fn count_line_before_the_header_is_a_preamble() {
        // scikit-learn's data files start with `n_samples,n_features` before the column names.
        let doc = run(
            include_bytes!("../../../fixtures/sheet/boston_house_prices.csv"),
            Format::Csv,
        );
        let kinds: Vec<SegmentKind> = doc.segments[..3].iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                SegmentKind::Paragraph,
                SegmentKind::TableHeader,
                SegmentKind::TableRow
            ]
        );
        assert!(doc.segments[1].text.starts_with("CRIM | ZN | INDUS"));
        assert_eq!(ranges(&doc)[1], "Sheet1!A2:N2");
    }

    #[test]
    fn a_count_line_over_numbers_is_a_preamble_and_numbers_alone_are_rows() {
        let doc = run(
            include_bytes!("../../../fixtures/sheet/iris_head.csv"),
            Format::Csv,
        );
        let kinds: Vec<SegmentKind> = doc.segments[..2].iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [SegmentKind::Paragraph, SegmentKind::TableRow]);
        assert_eq!(doc.segments[1].text, "5.1 | 3.5 | 1.4 | 0.2 | 0");
        assert_eq!(ranges(&doc)[1], "Sheet1!A2:E2");

        let doc = run(b"1,2,3\n4,5,6\n", Format::Csv);
        assert!(doc.segments.iter().all(|s| s.kind == SegmentKind::TableRow));
        let doc = run(b"Year,2019,2020\nSales,10,20\n", Format::Csv);
        assert_eq!(doc.segments[0].kind, SegmentKind::TableHeader);
    }

    #[test]
    fn header_with_blank_corner_and_text_rows_stays_the_header() {
        let doc = run(b" ,Q1,Q2\nNorth,high,low\nSouth,low,high\n", Format::Csv);
        assert_eq!(doc.segments[0].kind, SegmentKind::TableHeader);
        assert_eq!(doc.segments[1].kind, SegmentKind::TableRow);
        assert_eq!(doc.segments[1].text, "North | high | low");
    }

    #[test]
    fn semicolon_is_detected() {
        let doc = check(
            include_bytes!("../../../fixtures/sheet/semicolon.csv"),
            include_str!("../../../fixtures/sheet/semicolon.csv.expected.txt"),
            Format::Csv,
        );
        assert_eq!(doc.metadata["delimiter"], ";");
    }

    #[test]
    fn encodings() {
        let cases: [(&[u8], &str, &str); 4] = [
            (
                include_bytes!("../../../fixtures/sheet/utf8-bom.csv"),
                include_str!("../../../fixtures/sheet/utf8-bom.csv.expected.txt"),
                "UTF-8",
            ),
            (
                include_bytes!("../../../fixtures/sheet/windows-1252.csv"),
                include_str!("../../../fixtures/sheet/windows-1252.csv.expected.txt"),
                "windows-1252",
            ),
            (
                include_bytes!("../../../fixtures/sheet/utf16le.csv"),
                include_str!("../../../fixtures/sheet/utf16le.csv.expected.txt"),
                "UTF-16LE",
            ),
            (
                include_bytes!("../../../fixtures/sheet/utf16be.csv"),
                include_str!("../../../fixtures/sheet/utf16be.csv.expected.txt"),
                "UTF-16BE",
            ),
        ];
        for (bytes, expected, encoding) in cases {
            let doc = check(bytes, expected, Format::Csv);
            assert_eq!(doc.metadata["encoding"], encoding);
        }
    }

    #[test]
    fn tsv_keeps_commas_in_cells() {
        let doc = check(
            include_bytes!("../../../fixtures/sheet/sample.tsv"),
            include_str!("../../../fixtures/sheet/sample.tsv.expected.txt"),
            Format::Tsv,
        );
        assert_eq!(ranges(&doc)[2], "Sheet1!A3:C3");
    }

    #[test]
    fn limits_and_empty() {
        let limits = Limits {
            max_cells: 5,
            ..Limits::default()
        };
        let bytes = include_bytes!("../../../fixtures/sheet/comma.csv");
        let err = run_with(bytes, Format::Csv, &limits).expect_err("limit");
        assert_eq!(err.code(), "limit_exceeded");
        let err = run_with(b",,\n,,\n", Format::Csv, &Limits::default()).expect_err("empty");
        assert_eq!(err.code(), "no_content");
    }

    #[test]
    fn delimiter_detection() {
        assert_eq!(detect_delimiter("a|b|c\n1|2|3\n"), b'|');
        assert_eq!(detect_delimiter("a\tb\n1\t2\n"), b'\t');
        assert_eq!(detect_delimiter("single column\nvalue\n"), b',');
    }
}
