//! Spreadsheets: XLSX, XLS, XLSB and ODS through calamine; CSV and TSV through the csv crate ([`delimited`]).
//!
//! Every sheet is read in workbook order, hidden and very hidden ones too (they are listed in the metadata).
//! In each sheet the first non-empty row is the header ([`SegmentKind::TableHeader`]); every later non-empty row
//! is a [`SegmentKind::TableRow`]. A short preamble before the real header (a title row, or the `506,13` count line
//! of scikit-learn's data files) is recognised when the next row is wider and all text: the preamble becomes
//! [`SegmentKind::Paragraph`]s and that row the header (at most [`MAX_PREAMBLE_ROWS`] rows). A first row that
//! starts with a number over a number is no header: it is the first data row when its cells are of the same
//! kinds as the row below, else a preamble (iris.csv's `150,4,setosa,...`), and the sheet has no header.
//! A row's text is its cells ([`cell::render`]) joined by `" | "`, from the sheet's first used column to the
//! row's last non-empty cell, so columns line up with the header. Its location is
//! [`Location::Cells`] with the A1-style range of exactly those cells, e.g. `A2:D2`.
//! CSV and TSV files have one sheet, named [`delimited::SHEET_NAME`] (`Sheet1`, as spreadsheet programs call it).

mod cell;
pub mod delimited;
mod xls_guard;

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use calamine::{
    Data, Ods, OdsError, Range, Reader, SheetType, SheetVisible, Sheets, Xls, XlsError, Xlsb,
    XlsbError, Xlsx, XlsxError, open_workbook_from_rs,
};
use serde_json::json;

use super::{Context, ExtractError, Extractor, Format, Input, archive};
use crate::types::{Document, Location, Segment, SegmentKind};

/// Magic bytes of an OLE2 compound file: XLS, or an encrypted (password-protected) OOXML workbook.
const OLE2_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
/// Separator between the cells of a row.
pub const CELL_SEPARATOR: &str = " | ";
/// Progress unit.
const UNIT: &str = "sheets";
/// Letters in a spreadsheet column name.
const COLUMN_RADIX: u32 = 26;
/// Rows before the header that may be taken for a preamble.
pub const MAX_PREAMBLE_ROWS: usize = 3;

/// Extractor for [`Format::Xlsx`], [`Format::Xls`], [`Format::Xlsb`], [`Format::Ods`], [`Format::Csv`] and
/// [`Format::Tsv`].
pub struct SheetExtractor;

impl Extractor for SheetExtractor {
    fn extract(&self, input: &Input<'_>, ctx: &Context<'_>) -> Result<Document, ExtractError> {
        ctx.check_deadline()?;
        if input.bytes.is_empty() {
            return Err(ExtractError::Empty("the file is empty (0 bytes)".into()));
        }
        match input.format {
            Format::Csv => delimited::extract(input.bytes, None, ctx),
            Format::Tsv => delimited::extract(input.bytes, Some(b'\t'), ctx),
            format => extract_workbook(input.bytes, format, ctx),
        }
    }
}

/// Collects the segments of one sheet and its used area.
pub struct SheetWriter<'a> {
    sheet: &'a str,
    /// First used column (0-based): every row is rendered from here so columns line up.
    first_col: u32,
    header_seen: bool,
    /// The header candidate: the first row, held until the next one shows whether it is a preamble.
    held: Option<(u32, Vec<String>)>,
    preamble_rows: usize,
    /// Used area: (first row, first col, last row, last col), 0-based.
    used: Option<(u32, u32, u32, u32)>,
    segments: &'a mut Vec<Segment>,
}

impl<'a> SheetWriter<'a> {
    /// A writer for sheet `sheet` whose first used column is `first_col`.
    pub fn new(sheet: &'a str, first_col: u32, segments: &'a mut Vec<Segment>) -> SheetWriter<'a> {
        SheetWriter {
            sheet,
            first_col,
            header_seen: false,
            held: None,
            preamble_rows: 0,
            used: None,
            segments,
        }
    }

    /// Adds row `row` (0-based) whose cells start at `first_col`; a row with no text is skipped.
    pub fn row(&mut self, row: u32, cells: &[String]) {
        let Some(last) = cells.iter().rposition(|c| !c.is_empty()) else {
            return;
        };
        let first_text = cells.iter().position(|c| !c.is_empty()).unwrap_or(last);
        let last_col = self.first_col + last as u32;
        let first_text_col = self.first_col + first_text as u32;
        self.used = Some(match self.used {
            None => (row, first_text_col, row, last_col),
            Some((r0, c0, _, c1)) => (r0, c0.min(first_text_col), row, c1.max(last_col)),
        });
        let cells = &cells[..=last];
        if self.header_seen {
            self.push(SegmentKind::TableRow, row, cells);
            return;
        }
        match self.held.take() {
            None => self.held = Some((row, cells.to_vec())),
            Some((held_row, held)) if starts_like_data(&held, cells) => {
                // No header: a line of the data's own kind is the first row; a line whose cells do not fit
                // the columns below (iris.csv's `150,4,setosa,...` count line) is a preamble.
                self.header_seen = true;
                let kind = if same_kinds(&held, cells) {
                    SegmentKind::TableRow
                } else {
                    SegmentKind::Paragraph
                };
                self.push(kind, held_row, &held);
                self.push(SegmentKind::TableRow, row, cells);
            }
            Some((held_row, held)) if self.is_preamble(&held, cells) => {
                self.preamble_rows += 1;
                self.push(SegmentKind::Paragraph, held_row, &held);
                self.held = Some((row, cells.to_vec()));
            }
            Some((held_row, held)) => {
                self.header_seen = true;
                self.push(SegmentKind::TableHeader, held_row, &held);
                self.push(SegmentKind::TableRow, row, cells);
            }
        }
    }

    /// Whether `held`, the header candidate, is a preamble to `next`: `held` is a title (one cell) or holds a
    /// number, which a header does not; `next` has more cells with text and none of them is a number.
    fn is_preamble(&self, held: &[String], next: &[String]) -> bool {
        self.preamble_rows < MAX_PREAMBLE_ROWS
            && (texts(held).count() == 1 || texts(held).any(is_number))
            && texts(next).count() > texts(held).count()
            && !texts(next).any(is_number)
    }

    fn push(&mut self, kind: SegmentKind, row: u32, cells: &[String]) {
        let last_col = self.first_col + cells.len().saturating_sub(1) as u32;
        let text = cells.join(CELL_SEPARATOR);
        let range = format!("{}:{}", a1(row, self.first_col), a1(row, last_col));
        let location = Location::Cells {
            sheet: self.sheet.to_owned(),
            range,
        };
        self.segments.push(Segment::new(kind, text, location));
    }

    /// Ends the sheet (a sheet of one row has that row as its header) and gives its used area as `A1:D20` with
    /// its row and column counts, or `None` when no row had text.
    pub fn finish(mut self) -> Option<serde_json::Value> {
        if let Some((row, cells)) = self.held.take() {
            self.push(SegmentKind::TableHeader, row, &cells);
        }
        let (r0, c0, r1, c1) = self.used?;
        Some(json!({
            "range": format!("{}:{}", a1(r0, c0), a1(r1, c1)),
            "rows": r1 - r0 + 1,
            "columns": c1 - c0 + 1,
        }))
    }
}

/// The non-empty cells of a row, trimmed.
fn texts(cells: &[String]) -> impl Iterator<Item = &str> {
    cells.iter().map(|c| c.trim()).filter(|c| !c.is_empty())
}

fn is_number(cell: &str) -> bool {
    cell.trim().parse::<f64>().is_ok()
}

/// Whether `held`, the header candidate, starts like the data below it: its first cell is a number over a
/// number in `next`. A header names its columns and does not start with a number (a corner cell such as
/// `Year` above `2019 | 2020` is text).
fn starts_like_data(held: &[String], next: &[String]) -> bool {
    let Some(first) = held.iter().position(|c| !c.trim().is_empty()) else {
        return false;
    };
    is_number(&held[first]) && next.get(first).is_some_and(|c| is_number(c))
}

/// Whether every column both rows fill holds a number in both or text in both.
fn same_kinds(a: &[String], b: &[String]) -> bool {
    a.iter()
        .zip(b)
        .filter(|(x, y)| !x.trim().is_empty() && !y.trim().is_empty())
        .all(|(x, y)| is_number(x) == is_number(y))
}

/// The A1-style name of a 0-based (row, column).
pub fn a1(row: u32, col: u32) -> String {
    let mut letters = Vec::new();
    let mut n = col + 1;
    while n > 0 {
        let rem = (n - 1) % COLUMN_RADIX;
        letters.push(char::from(b'A' + rem as u8));
        n = (n - 1) / COLUMN_RADIX;
    }
    let column: String = letters.into_iter().rev().collect();
    format!("{column}{}", u64::from(row) + 1)
}

fn extract_workbook(
    bytes: &[u8],
    format: Format,
    ctx: &Context<'_>,
) -> Result<Document, ExtractError> {
    let zip_based = matches!(format, Format::Xlsx | Format::Xlsb | Format::Ods);
    // An encrypted OOXML workbook is an OLE2 file, not a ZIP: let calamine report it as password-protected.
    if zip_based && !bytes.starts_with(OLE2_MAGIC) {
        archive::open(bytes, ctx.limits)?;
    }
    if format == Format::Xls {
        xls_guard::check(bytes, ctx.limits)?;
    }
    let mut workbook = unpanicked(format, || open(bytes, format))?;
    let sheets = workbook.sheets_metadata().to_vec();
    let total = sheets.len() as u64;
    let mut doc = Document::default();
    let mut details = Vec::new();
    let mut cells_read: u64 = 0;
    for (i, sheet) in sheets.iter().enumerate() {
        ctx.check_deadline()?;
        ctx.report(i as u64, total, UNIT);
        let mut detail = json!({
            "name": sheet.name,
            "type": sheet_type(sheet.typ),
            "visibility": visibility(sheet.visible),
        });
        if sheet.typ == SheetType::WorkSheet {
            let max_columns = ctx.limits.max_columns as usize;
            let truncated = if let Sheets::Xlsx(xlsx) = &mut workbook {
                // Cell by cell: a dense range would allocate by the span of the cells (A1 and XFD1048576
                // are 17 billion cells apart), whatever few cells there are.
                let cells = sparse_cells(xlsx, &sheet.name, ctx, &mut cells_read)?;
                let first_col = cells.iter().map(|c| c.1).min().unwrap_or(0);
                let mut writer = SheetWriter::new(&sheet.name, first_col, &mut doc.segments);
                let truncated = write_sparse(&cells, first_col, max_columns, &mut writer);
                finish_sheet(writer, &mut detail);
                truncated
            } else {
                let range = unpanicked(format, || {
                    workbook.worksheet_range(&sheet.name).map_err(|e| {
                        ExtractError::Corrupt(format!("cannot read sheet {}: {e}", sheet.name))
                    })
                })?;
                let (height, width) = range.get_size();
                cells_read =
                    cells_read.saturating_add((height as u64).saturating_mul(width as u64));
                if cells_read > ctx.limits.max_cells {
                    return Err(too_many_cells(ctx));
                }
                let mut writer =
                    SheetWriter::new(&sheet.name, first_used_col(&range), &mut doc.segments);
                let truncated = write_range(&range, max_columns, &mut writer);
                finish_sheet(writer, &mut detail);
                truncated
            };
            if truncated && let Some(obj) = detail.as_object_mut() {
                obj.insert("columns_truncated_at".into(), json!(max_columns));
            }
        }
        details.push(detail);
    }
    ctx.report(total, total, UNIT);
    if doc.segments.is_empty() {
        return Err(ExtractError::Empty(
            "the workbook has no cells with content".into(),
        ));
    }
    let names: Vec<&str> = sheets.iter().map(|s| s.name.as_str()).collect();
    let hidden: Vec<&str> = sheets
        .iter()
        .filter(|s| s.visible != SheetVisible::Visible)
        .map(|s| s.name.as_str())
        .collect();
    doc.set_meta("sheets", json!(names));
    doc.set_meta("hidden_sheets", json!(hidden));
    doc.set_meta("sheet_details", details);
    doc.set_meta("cells", cells_read);
    Ok(doc)
}

fn open(bytes: &[u8], format: Format) -> Result<Sheets<Cursor<&[u8]>>, ExtractError> {
    let rs = Cursor::new(bytes);
    match format {
        Format::Xls => open_workbook_from_rs::<Xls<_>, _>(rs)
            .map(Sheets::Xls)
            .map_err(|e| match e {
                XlsError::Password => ExtractError::PasswordProtected,
                e => corrupt(format, &e),
            }),
        Format::Xlsb => open_workbook_from_rs::<Xlsb<_>, _>(rs)
            .map(Sheets::Xlsb)
            .map_err(|e| match e {
                XlsbError::Password => ExtractError::PasswordProtected,
                e => corrupt(format, &e),
            }),
        Format::Ods => open_workbook_from_rs::<Ods<_>, _>(rs)
            .map(Sheets::Ods)
            .map_err(|e| match e {
                OdsError::Password => ExtractError::PasswordProtected,
                e => corrupt(format, &e),
            }),
        _ => open_workbook_from_rs::<Xlsx<_>, _>(rs)
            .map(Sheets::Xlsx)
            .map_err(|e| match e {
                XlsxError::Password => ExtractError::PasswordProtected,
                e => corrupt(format, &e),
            }),
    }
}

/// Runs a calamine call with its panics turned into [`ExtractError::Corrupt`]: calamine 0.38 panics on
/// some malformed files (slice indexes and asserts in its XLS reader, found by cargo fuzz), and a parser's
/// panic is the file's fault, as for lopdf in the PDF extractor.
fn unpanicked<T>(
    format: Format,
    f: impl FnOnce() -> Result<T, ExtractError>,
) -> Result<T, ExtractError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(corrupt(format, &format!("the parser failed ({what})")))
    })
}

fn corrupt(format: Format, e: &dyn std::fmt::Display) -> ExtractError {
    ExtractError::Corrupt(format!("not a readable {} workbook: {e}", format.name()))
}

/// The leftmost column holding any content, absolute (0-based).
fn first_used_col(range: &Range<Data>) -> u32 {
    let (_, start_col) = range.start().unwrap_or((0, 0));
    let offset = range.used_cells().map(|(_, c, _)| c).min().unwrap_or(0);
    start_col + offset as u32
}

/// Writes a dense range's rows, each cut at `max_columns` cells; true when a row was cut.
fn write_range(range: &Range<Data>, max_columns: usize, writer: &mut SheetWriter<'_>) -> bool {
    let Some((start_row, start_col)) = range.start() else {
        return false;
    };
    let skip = writer.first_col.saturating_sub(start_col) as usize;
    let mut truncated = false;
    for (i, row) in range.rows().enumerate() {
        truncated |= row.len().saturating_sub(skip) > max_columns;
        let cells: Vec<String> = row
            .iter()
            .skip(skip)
            .take(max_columns)
            .map(cell::render)
            .collect();
        writer.row(start_row + i as u32, &cells);
    }
    truncated
}

/// Cells read from an XLSX sheet one at a time.
const CELLS_PER_CHECK: u64 = 4096;

/// The non-empty cells of an XLSX sheet as (row, column, text), sorted; counts them into `cells_read`.
fn sparse_cells(
    xlsx: &mut Xlsx<Cursor<&[u8]>>,
    name: &str,
    ctx: &Context<'_>,
    cells_read: &mut u64,
) -> Result<Vec<(u32, u32, String)>, ExtractError> {
    let corrupt = |e: XlsxError| ExtractError::Corrupt(format!("cannot read sheet {name}: {e}"));
    let mut reader = match xlsx.worksheet_cells_reader(name) {
        Ok(r) => r,
        Err(XlsxError::NotAWorksheet(_)) => return Ok(Vec::new()),
        Err(e) => return Err(corrupt(e)),
    };
    let mut cells = Vec::new();
    while let Some(cell) = reader.next_cell().map_err(corrupt)? {
        let (row, col) = cell.get_position();
        let text = cell::render(&Data::from(cell.get_value().clone()));
        if text.is_empty() {
            continue;
        }
        *cells_read += 1;
        if *cells_read > ctx.limits.max_cells {
            return Err(too_many_cells(ctx));
        }
        if cells_read.is_multiple_of(CELLS_PER_CHECK) {
            ctx.check_deadline()?;
        }
        cells.push((row, col, text));
    }
    cells.sort_unstable_by_key(|c| (c.0, c.1));
    Ok(cells)
}

/// Writes sorted sparse cells row by row from `first_col`, at most `max_columns` per row (the gaps between
/// cells are empty cells); true when a row was cut.
fn write_sparse(
    cells: &[(u32, u32, String)],
    first_col: u32,
    max_columns: usize,
    writer: &mut SheetWriter<'_>,
) -> bool {
    let mut truncated = false;
    for row in cells.chunk_by(|a, b| a.0 == b.0) {
        let mut values: Vec<String> = Vec::new();
        for (_, col, text) in row {
            let i = (col - first_col) as usize;
            if i >= max_columns {
                truncated = true;
                break;
            }
            values.resize(i, String::new());
            values.push(text.clone());
        }
        writer.row(row[0].0, &values);
    }
    truncated
}

fn finish_sheet(writer: SheetWriter<'_>, detail: &mut serde_json::Value) {
    if let (Some(dims), Some(obj)) = (writer.finish(), detail.as_object_mut()) {
        obj.extend(dims.as_object().cloned().unwrap_or_default());
    }
}

fn too_many_cells(ctx: &Context<'_>) -> ExtractError {
    ExtractError::LimitExceeded(format!(
        "more than {} spreadsheet cells",
        ctx.limits.max_cells
    ))
}

fn sheet_type(typ: SheetType) -> &'static str {
    match typ {
        SheetType::WorkSheet => "worksheet",
        SheetType::DialogSheet => "dialog_sheet",
        SheetType::MacroSheet => "macro_sheet",
        SheetType::ChartSheet => "chart_sheet",
        SheetType::Vba => "vba",
    }
}

fn visibility(visible: SheetVisible) -> &'static str {
    match visible {
        SheetVisible::Visible => "visible",
        SheetVisible::Hidden => "hidden",
        SheetVisible::VeryHidden => "very_hidden",
    }
}

#[cfg(test)]
mod tests;
