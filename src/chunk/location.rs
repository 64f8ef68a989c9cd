//! Where a chunk is: the merged location of its segments, and the unit keys that decide where chunks break.

use serde::{Deserialize, Serialize};

use crate::types::{Location, Segment, SegmentKind};

/// Letters in a spreadsheet column name (A..Z).
const COLUMN_RADIX: u32 = 26;

/// The merged location of a chunk's content segments (not of the overlap or the repeated table header it
/// starts with). Serialised with a `type` tag like [`Location`], e.g.
/// `{"type": "pages", "from": 2, "to": 3, "ocr": false}` or `{"type": "cells", "sheet": "Sheet1", "range": "A1:D40"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChunkLocation {
    /// Pages `from..=to` of a PDF (1-based); `ocr` is true when any of them was read by OCR.
    Pages { from: u32, to: u32, ocr: bool },
    /// Slides `from..=to` of a presentation (1-based).
    Slides { from: u32, to: u32 },
    /// The bounding A1 range of the chunk's rows in one sheet, e.g. `A1:D40`; it includes the header row
    /// when that row is right above the chunk's rows. A chunk never spans two sheets.
    Cells { sheet: String, range: String },
    /// A flowing document: the heading path of the chunk's first segment and the blocks it covers.
    Section {
        heading_path: Vec<String>,
        blocks: BlockRange,
    },
    /// Lines `start..=end` (1-based) of a text-like file.
    Lines { start: u32, end: u32 },
    /// A time range of audio, in seconds.
    Time { start: f64, end: f64 },
    /// A whole image (OCR text of the picture).
    Image,
}

/// An inclusive range of 1-based block indices of a flowing document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRange {
    /// First block.
    pub from: u32,
    /// Last block.
    pub to: u32,
}

impl ChunkLocation {
    /// The location of a chunk made of one segment at `location`.
    pub(super) fn of(location: &Location) -> Self {
        match location {
            Location::Page { page, ocr } => Self::Pages {
                from: *page,
                to: *page,
                ocr: *ocr,
            },
            Location::Slide { slide } => Self::Slides {
                from: *slide,
                to: *slide,
            },
            Location::Cells { sheet, range } => Self::Cells {
                sheet: sheet.clone(),
                range: range.clone(),
            },
            Location::Section {
                heading_path,
                block,
            } => Self::Section {
                heading_path: heading_path.clone(),
                blocks: BlockRange {
                    from: *block,
                    to: *block,
                },
            },
            Location::Lines { start, end } => Self::Lines {
                start: *start,
                end: *end,
            },
            Location::Time { start, end } => Self::Time {
                start: *start,
                end: *end,
            },
            Location::Image => Self::Image,
        }
    }

    /// Widens this location to cover `location` too. A location of another kind or another sheet is ignored:
    /// the packer never puts such segments into one chunk.
    pub(super) fn extend(&mut self, location: &Location) {
        match (self, location) {
            (
                Self::Pages { from, to, ocr },
                Location::Page {
                    page,
                    ocr: page_ocr,
                },
            ) => {
                widen(from, to, *page, *page);
                *ocr |= *page_ocr;
            }
            (Self::Slides { from, to }, Location::Slide { slide }) => {
                widen(from, to, *slide, *slide)
            }
            (Self::Cells { sheet, range }, Location::Cells { sheet: s, range: r })
                if sheet == s =>
            {
                if let (Some(a), Some(b)) = (CellRect::parse(range), CellRect::parse(r)) {
                    *range = a.union(b).to_string();
                }
            }
            (Self::Section { blocks, .. }, Location::Section { block, .. }) => {
                widen(&mut blocks.from, &mut blocks.to, *block, *block);
            }
            (Self::Lines { start, end }, Location::Lines { start: s, end: e }) => {
                widen(start, end, *s, *e);
            }
            (Self::Time { start, end }, Location::Time { start: s, end: e }) => {
                *start = start.min(*s);
                *end = end.max(*e);
            }
            _ => {}
        }
    }

    /// Covers a repeated table header too when its row is right above this chunk's rows (the first chunk of a
    /// sheet: `A1:D1` + `A2:D40` gives `A1:D40`); a later chunk keeps the range of its own rows.
    pub(super) fn extend_with_header(&mut self, header: &Location) {
        let (Self::Cells { sheet, range }, Location::Cells { sheet: s, range: r }) =
            (&*self, header)
        else {
            return;
        };
        if sheet != s {
            return;
        }
        if let (Some(rows), Some(head)) = (CellRect::parse(range), CellRect::parse(r))
            && head.bottom + 1 == rows.top
        {
            self.extend(header);
        }
    }

    /// Merges the locations of a chunk's content segments, in order.
    pub(super) fn merge<'a>(mut locations: impl Iterator<Item = &'a Location>) -> Option<Self> {
        let mut merged = Self::of(locations.next()?);
        for location in locations {
            merged.extend(location);
        }
        Some(merged)
    }
}

fn widen(from: &mut u32, to: &mut u32, start: u32, end: u32) {
    *from = (*from).min(start);
    *to = (*to).max(end);
}

/// A rectangle of cells in A1 notation, columns and rows 1-based and inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CellRect {
    left: u32,
    top: u32,
    right: u32,
    bottom: u32,
}

impl CellRect {
    /// Parses `A2:D2` or a single cell `B3`; `None` for anything else.
    pub(super) fn parse(range: &str) -> Option<Self> {
        let (first, last) = range.split_once(':').unwrap_or((range, range));
        let (c1, r1) = parse_cell(first)?;
        let (c2, r2) = parse_cell(last)?;
        Some(Self {
            left: c1.min(c2),
            top: r1.min(r2),
            right: c1.max(c2),
            bottom: r1.max(r2),
        })
    }

    fn union(self, other: Self) -> Self {
        Self {
            left: self.left.min(other.left),
            top: self.top.min(other.top),
            right: self.right.max(other.right),
            bottom: self.bottom.max(other.bottom),
        }
    }
}

impl std::fmt::Display for CellRect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}:{}{}",
            column_name(self.left),
            self.top,
            column_name(self.right),
            self.bottom
        )
    }
}

/// `B3` -> (2, 3).
fn parse_cell(cell: &str) -> Option<(u32, u32)> {
    let digits = cell.find(|c: char| c.is_ascii_digit())?;
    let (letters, row) = cell.split_at(digits);
    if letters.is_empty() || !letters.chars().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let mut column: u32 = 0;
    for c in letters.bytes() {
        column = column
            .checked_mul(COLUMN_RADIX)?
            .checked_add(u32::from(c - b'A') + 1)?;
    }
    let row: u32 = row.parse().ok()?;
    (row > 0).then_some((column, row))
}

/// 1 -> `A`, 27 -> `AA`.
fn column_name(mut column: u32) -> String {
    let mut letters = Vec::new();
    while column > 0 {
        let rem = (column - 1) % COLUMN_RADIX;
        letters.push(char::from(
            b'A' + u8::try_from(rem).expect("rem < 26. This is a bug."),
        ));
        column = (column - 1) / COLUMN_RADIX;
    }
    letters.iter().rev().collect()
}

/// The part of a document a segment belongs to. A chunk grows across units only while it is still small
/// (soft boundary), and never across location kinds or sheets (hard boundary).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct UnitKey<'a> {
    place: Place<'a>,
    family: Family,
}

#[derive(Debug, Clone, PartialEq)]
enum Place<'a> {
    Page(u32),
    Slide(u32),
    Sheet(&'a str),
    /// The top-level heading of a flowing document's section.
    Section(Option<&'a str>),
    Lines,
    Time,
    Image,
}

/// Body text, page margins and annotations are different kinds of block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Body,
    Margin,
    Annotation,
}

impl<'a> UnitKey<'a> {
    /// The unit of `segment`.
    pub(super) fn of(segment: &'a Segment) -> Self {
        let place = match &segment.location {
            Location::Page { page, .. } => Place::Page(*page),
            Location::Slide { slide } => Place::Slide(*slide),
            Location::Cells { sheet, .. } => Place::Sheet(sheet),
            Location::Section { heading_path, .. } => {
                Place::Section(heading_path.first().map(String::as_str))
            }
            Location::Lines { .. } => Place::Lines,
            Location::Time { .. } => Place::Time,
            Location::Image => Place::Image,
        };
        let family = match segment.kind {
            SegmentKind::Header | SegmentKind::Footer => Family::Margin,
            SegmentKind::Comment | SegmentKind::Note => Family::Annotation,
            SegmentKind::Heading
            | SegmentKind::Paragraph
            | SegmentKind::ListItem
            | SegmentKind::TableHeader
            | SegmentKind::TableRow
            | SegmentKind::Code
            | SegmentKind::Transcript => Family::Body,
        };
        Self { place, family }
    }

    /// True when a chunk must end between a segment of this unit and one of `next`: another kind of location
    /// or another sheet.
    pub(super) fn must_break(&self, next: &Self) -> bool {
        match (&self.place, &next.place) {
            (Place::Sheet(a), Place::Sheet(b)) => a != b,
            (a, b) => std::mem::discriminant(a) != std::mem::discriminant(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_a1_ranges() {
        let rect = CellRect::parse("A2:D2").expect("valid range");
        assert_eq!(rect.to_string(), "A2:D2");
        let single = CellRect::parse("AB7").expect("valid cell");
        assert_eq!(single.to_string(), "AB7:AB7");
        assert_eq!(rect.union(single).to_string(), "A2:AB7");
        assert_eq!(column_name(26), "Z");
        assert_eq!(column_name(27), "AA");
        assert_eq!(column_name(702), "ZZ");
        assert_eq!(column_name(703), "AAA");
        for bad in ["", "A", "7", "a1", "A0", "A1:", "A1:B"] {
            assert_eq!(CellRect::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn merges_cells_of_one_sheet_and_ignores_other_sheets() {
        let cells = |sheet: &str, range: &str| Location::Cells {
            sheet: sheet.to_owned(),
            range: range.to_owned(),
        };
        let locations = [
            cells("S", "A2:D2"),
            cells("S", "A40:C40"),
            cells("T", "A99:Z99"),
        ];
        let mut merged = ChunkLocation::merge(locations.iter()).expect("non-empty");
        merged.extend_with_header(&cells("S", "A1:D1"));
        assert_eq!(
            merged,
            ChunkLocation::Cells {
                sheet: "S".to_owned(),
                range: "A1:D40".to_owned()
            }
        );
        // A header far above the rows is not part of the range.
        let mut later = ChunkLocation::of(&cells("S", "A41:D41"));
        later.extend_with_header(&cells("S", "A1:D1"));
        assert_eq!(
            later,
            ChunkLocation::Cells {
                sheet: "S".to_owned(),
                range: "A41:D41".to_owned()
            }
        );
    }

    #[test]
    fn serialises_with_a_type_tag() {
        let pages = ChunkLocation::Pages {
            from: 1,
            to: 2,
            ocr: true,
        };
        assert_eq!(
            serde_json::to_string(&pages).expect("serialisable"),
            r#"{"type":"pages","from":1,"to":2,"ocr":true}"#
        );
        let section = ChunkLocation::Section {
            heading_path: vec!["Intro".to_owned()],
            blocks: BlockRange { from: 3, to: 5 },
        };
        let json = serde_json::to_string(&section).expect("serialisable");
        assert_eq!(
            json,
            r#"{"type":"section","heading_path":["Intro"],"blocks":{"from":3,"to":5}}"#
        );
        let back: ChunkLocation = serde_json::from_str(&json).expect("deserialisable");
        assert_eq!(back, section);
    }
}
