//! ODT extraction with quick-xml over `content.xml`, inflated through the zip-bomb guard. Styles, metadata,
//! settings and the master pages (page headers/footers) are not read as text; `styles.xml` is only consulted
//! for list styles.
//!
//! Like DOCX: `text:h` (with `text:outline-level`, default 1) is a `Heading` and sets the heading path;
//! `text:p` is a `Paragraph`; the paragraphs of a `text:list-item` are `ListItem`s, the first prefixed with
//! its marker (`"- "` for bullets, `"1. "` etc. from the list style's number format, prefix and suffix);
//! `table:table` rows are `TableHeader` (the `table:table-header-rows`, or the first row when there are
//! none) and `TableRow`, cells joined by `" | "`. Locations are `Location::Section` with the body block
//! ordinal, as for DOCX. Whitespace is collapsed as ODF requires; `text:s`, `text:tab` and
//! `text:line-break` become spaces, a tab and a newline. Annotations (`office:annotation`) become
//! `Comment`s and footnotes/endnotes (`text:note`) `Note`s, after the body, located at the block they sit in.

mod lists;
#[cfg(test)]
mod tests;

use lists::ListStyles;

use super::office::{CELL_SEPARATOR, OLE2_MAGIC};
use super::xml::{Element, Node, Walker};
use super::{Context, ExtractError, Extractor, Input, archive};
use crate::types::{Document, Location, Segment, SegmentKind};

/// The part holding the document body.
const CONTENT_PART: &str = "content.xml";
/// The part holding named (non-automatic) styles, read for list styles only.
const STYLES_PART: &str = "styles.xml";
/// The manifest, which declares encrypted members.
const MANIFEST_PART: &str = "META-INF/manifest.xml";
/// Marks an encrypted member in the manifest.
const ENCRYPTION_MARK: &[u8] = b"encryption-data";
/// Check the deadline every this many XML nodes.
const NODES_PER_CHECK: usize = 4096;
/// Progress unit.
const UNIT: &str = "parts";
/// Elements whose text is never visible body text.
const SKIPPED: [&str; 9] = [
    "text:tracked-changes",
    "text:note-citation",
    "text:sequence-decls",
    "office:forms",
    "dc:creator",
    "dc:date",
    "svg:title",
    "svg:desc",
    "table:covered-table-cell",
];

/// Extractor for OpenDocument text files (`.odt`).
pub struct OdtExtractor;

impl Extractor for OdtExtractor {
    fn extract(&self, input: &Input<'_>, ctx: &Context<'_>) -> Result<Document, ExtractError> {
        if input.bytes.starts_with(&OLE2_MAGIC) {
            return Err(ExtractError::PasswordProtected);
        }
        let mut zip = archive::open(input.bytes, ctx.limits)?;
        if let Some(manifest) = zip.read(MANIFEST_PART)?
            && manifest
                .windows(ENCRYPTION_MARK.len())
                .any(|w| w == ENCRYPTION_MARK)
        {
            return Err(ExtractError::PasswordProtected);
        }
        ctx.report(0, 1, UNIT);
        let content = zip.require(CONTENT_PART)?;
        let mut list_styles = ListStyles::default();
        if let Some(styles) = zip.read(STYLES_PART)? {
            list_styles.add_from(&styles, STYLES_PART)?;
        }
        list_styles.add_from(&content, CONTENT_PART)?;
        let mut body = Body::new(&list_styles);
        let mut walker = Walker::new(&content, CONTENT_PART);
        let mut in_body = false;
        let mut nodes = 0usize;
        while let Some(node) = walker.next_node()? {
            nodes += 1;
            if nodes.is_multiple_of(NODES_PER_CHECK) {
                ctx.check_deadline()?;
            }
            match node {
                Node::Open(e) if e.name == "office:body" => in_body = true,
                Node::Close(name) if name == "office:body" => in_body = false,
                _ if !in_body => {}
                Node::Open(e) => body.open(&e),
                Node::Close(_) => body.close(),
                Node::Text(t) => body.text(&t),
            }
        }
        ctx.check_deadline()?;
        ctx.report(1, 1, UNIT);
        let blocks = body.block;
        let mut doc = Document {
            segments: body.segments,
            ..Document::default()
        };
        doc.segments.extend(body.sides);
        doc.set_meta("blocks", blocks);
        Ok(doc)
    }
}

/// A paragraph or heading being read.
#[derive(Debug, Default)]
struct Para {
    text: String,
    /// True after a collapsible space was written (ODF collapses runs of whitespace).
    space: bool,
    /// The outline level when this is a `text:h`.
    heading: Option<usize>,
}

impl Para {
    fn push_collapsing(&mut self, text: &str) {
        for c in text.chars() {
            if matches!(c, ' ' | '\t' | '\n' | '\r') {
                if !self.space {
                    self.text.push(' ');
                    self.space = true;
                }
            } else {
                self.text.push(c);
                self.space = false;
            }
        }
    }

    fn push_literal(&mut self, s: &str) {
        self.text.push_str(s);
        self.space = false;
    }
}

/// One open element of the body.
#[derive(Debug)]
enum Frame {
    Para(Para),
    List {
        style: Option<String>,
        count: u32,
    },
    /// A list item; `marker` is taken by its first paragraph.
    Item {
        marker: Option<String>,
    },
    Table {
        header_rows: bool,
        rows: usize,
    },
    HeaderRows,
    Row(Vec<String>),
    Cell(Vec<String>),
    /// An annotation (`Comment`) or note (`Note`) collecting its paragraphs.
    Side {
        kind: SegmentKind,
        parts: Vec<String>,
    },
    /// An element whose text is dropped, with everything inside it.
    Skip,
    Other,
}

/// Where a finished paragraph goes.
enum Target {
    Body,
    Frame(usize),
}

/// The state of the walk over `office:body`.
struct Body<'a> {
    list_styles: &'a ListStyles,
    stack: Vec<Frame>,
    /// (level, text) of the headings above the current block.
    path: Vec<(usize, String)>,
    block: u32,
    segments: Vec<Segment>,
    /// Comments and notes, emitted after the body.
    sides: Vec<Segment>,
}

impl<'a> Body<'a> {
    fn new(list_styles: &'a ListStyles) -> Body<'a> {
        Body {
            list_styles,
            stack: Vec::new(),
            path: Vec::new(),
            block: 0,
            segments: Vec::new(),
            sides: Vec::new(),
        }
    }

    fn location(&self, block: u32) -> Location {
        Location::Section {
            heading_path: self.path.iter().map(|(_, t)| t.clone()).collect(),
            block,
        }
    }

    fn skipping(&self) -> bool {
        self.stack.iter().any(|f| matches!(f, Frame::Skip))
    }

    fn para(&mut self) -> Option<&mut Para> {
        self.stack.iter_mut().rev().find_map(|f| match f {
            Frame::Para(p) => Some(p),
            _ => None,
        })
    }

    fn open(&mut self, e: &Element) {
        if self.skipping() || SKIPPED.contains(&e.name.as_str()) {
            self.stack.push(Frame::Skip);
            return;
        }
        let frame = match e.name.as_str() {
            "text:p" => Frame::Para(Para::default()),
            "text:h" => Frame::Para(Para {
                heading: Some(
                    e.attr("text:outline-level")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(1),
                ),
                ..Para::default()
            }),
            "text:s" => {
                let n = e
                    .attr("text:c")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1usize);
                if let Some(p) = self.para() {
                    p.push_literal(&" ".repeat(n.min(u16::MAX.into())));
                }
                Frame::Other
            }
            "text:tab" => {
                if let Some(p) = self.para() {
                    p.push_literal("\t");
                }
                Frame::Other
            }
            "text:line-break" => {
                if let Some(p) = self.para() {
                    p.push_literal("\n");
                }
                Frame::Other
            }
            "text:list" => {
                let inherited = self.stack.iter().rev().find_map(|f| match f {
                    Frame::List { style, .. } => Some(style.clone()),
                    _ => None,
                });
                let style = e
                    .attr("text:style-name")
                    .map(str::to_owned)
                    .or(inherited.flatten());
                Frame::List { style, count: 0 }
            }
            "text:list-item" => Frame::Item {
                marker: self.next_marker(),
            },
            "text:list-header" => Frame::Item { marker: None },
            "table:table" => Frame::Table {
                header_rows: false,
                rows: 0,
            },
            "table:table-header-rows" => {
                if let Some(Frame::Table { header_rows, .. }) = self
                    .stack
                    .iter_mut()
                    .rev()
                    .find(|f| matches!(f, Frame::Table { .. }))
                {
                    *header_rows = true;
                }
                Frame::HeaderRows
            }
            "table:table-row" => Frame::Row(Vec::new()),
            "table:table-cell" => Frame::Cell(Vec::new()),
            "office:annotation" => Frame::Side {
                kind: SegmentKind::Comment,
                parts: Vec::new(),
            },
            "text:note" => Frame::Side {
                kind: SegmentKind::Note,
                parts: Vec::new(),
            },
            _ => Frame::Other,
        };
        self.stack.push(frame);
    }

    /// Counts a new item in the innermost list and returns its marker.
    fn next_marker(&mut self) -> Option<String> {
        let depth = self
            .stack
            .iter()
            .filter(|f| matches!(f, Frame::List { .. }))
            .count();
        let level = u32::try_from(depth).unwrap_or(u32::MAX);
        let (style, count) = self.stack.iter_mut().rev().find_map(|f| match f {
            Frame::List { style, count } => {
                *count += 1;
                Some((style.clone(), *count))
            }
            _ => None,
        })?;
        self.list_styles
            .level(style.as_deref(), level)
            .marker(count)
    }

    fn text(&mut self, text: &str) {
        if self.skipping() {
            return;
        }
        if let Some(p) = self.para() {
            p.push_collapsing(text);
        }
    }

    fn close(&mut self) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        match frame {
            Frame::Para(p) => self.finish_para(p),
            Frame::Cell(parts) => {
                if let Some(Frame::Row(cells)) = self.stack.last_mut() {
                    cells.push(parts.join(" "));
                }
            }
            Frame::Row(cells) => self.finish_row(&cells),
            Frame::Side { kind, parts } => {
                let text = parts.join("\n");
                if !text.is_empty() {
                    let location = self.location(self.block + 1);
                    self.sides.push(Segment::new(kind, text, location));
                }
            }
            Frame::List { .. } | Frame::Item { .. } | Frame::Table { .. } => {}
            Frame::HeaderRows | Frame::Skip | Frame::Other => {}
        }
    }

    /// The innermost container a finished paragraph or nested table row belongs to.
    fn target(&self) -> Target {
        for (i, f) in self.stack.iter().enumerate().rev() {
            if matches!(f, Frame::Cell(_) | Frame::Side { .. }) {
                return Target::Frame(i);
            }
        }
        Target::Body
    }

    fn finish_para(&mut self, p: Para) {
        let text = p.text.trim().to_owned();
        if text.is_empty() {
            return;
        }
        if let Target::Frame(i) = self.target() {
            if let Some(Frame::Cell(parts) | Frame::Side { parts, .. }) = self.stack.get_mut(i) {
                parts.push(text);
            }
            return;
        }
        self.block += 1;
        let (kind, text) = if let Some(level) = p.heading {
            while self.path.last().is_some_and(|(l, _)| *l >= level) {
                self.path.pop();
            }
            self.path.push((level, text.clone()));
            (SegmentKind::Heading, text)
        } else if let Some(marker) = self.item_marker() {
            match marker {
                Some(m) => (SegmentKind::ListItem, format!("{m} {text}")),
                None => (SegmentKind::ListItem, text),
            }
        } else {
            (SegmentKind::Paragraph, text)
        };
        let location = self.location(self.block);
        self.segments.push(Segment::new(kind, text, location));
    }

    /// `Some(marker)` when inside a list item (the marker only for its first paragraph), `None` otherwise.
    fn item_marker(&mut self) -> Option<Option<String>> {
        self.stack.iter_mut().rev().find_map(|f| match f {
            Frame::Item { marker } => Some(marker.take()),
            _ => None,
        })
    }

    fn finish_row(&mut self, cells: &[String]) {
        if cells.iter().all(String::is_empty) {
            return;
        }
        let text = cells.join(CELL_SEPARATOR);
        // A row of a table nested in a cell becomes part of that cell's text.
        if let Target::Frame(i) = self.target() {
            if let Some(Frame::Cell(parts) | Frame::Side { parts, .. }) = self.stack.get_mut(i) {
                parts.push(text);
            }
            return;
        }
        let in_header = matches!(self.stack.last(), Some(Frame::HeaderRows));
        let Some(Frame::Table { header_rows, rows }) = self
            .stack
            .iter_mut()
            .rev()
            .find(|f| matches!(f, Frame::Table { .. }))
        else {
            return;
        };
        let kind = if in_header || (!*header_rows && *rows == 0) {
            SegmentKind::TableHeader
        } else {
            SegmentKind::TableRow
        };
        *rows += 1;
        self.block += 1;
        let location = self.location(self.block);
        self.segments.push(Segment::new(kind, text, location));
    }
}
