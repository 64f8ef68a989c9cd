//! DOCX extraction. The container is opened through the zip-bomb guard ([`archive::open`]) and every part is
//! inflated through it with a cap; docx-rs then parses the parts (`FromXML`), so docx-rs never inflates
//! anything itself (its `read_docx` would inflate without a cap and decode every embedded image).
//!
//! Output, in order: the body (headings, paragraphs, list items, table rows), then page headers, page
//! footers and comments, so the body's block numbering stays intact.
//! - A heading (style `Title`, `Heading 1..9` or an outline level) sets the heading path; `Title` is level 0,
//!   `Heading N` level N. A heading's own location includes itself.
//! - `block` is the 1-based ordinal of the body block (non-empty paragraph, list item or table row).
//! - List items are prefixed `"- "` for bullets and `"N. "` (or `a.`, `i.` per the numbering format) for
//!   numbered lists; counters start at 1 per list and restart deeper levels.
//! - Table rows are cells joined by `" | "`; the first row of each table is the `TableHeader`.
//! - Header/footer segments use an empty heading path and their paragraph ordinal within their part;
//!   identical header (footer) texts from several sections are kept once.
//! - A comment is located where it is anchored (`commentRangeStart`); a comment without an anchor docx-rs
//!   can see gets an empty heading path and block 0.

use std::collections::HashMap;

use docx_rs::{
    Comments, DocumentChild, FromXML, Numberings, Paragraph, ParagraphChild, Run, RunChild, Styles,
    Table, TableCellContent, TableChild, TableRowChild,
};

mod style;
#[cfg(test)]
mod tests;

use super::xml::{self, Rel};
use super::{Context, ExtractError, Extractor, Input, archive};
use crate::types::{Document, Location, Segment, SegmentKind};
pub(crate) use style::label as number_label;
use style::{ListFormat, ListState, ParagraphClass, StyleMap};

/// The OLE2 compound-file magic: an encrypted OOXML file (or a legacy `.doc`) is wrapped in one.
pub(crate) const OLE2_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
/// Where the main part is when `_rels/.rels` does not say.
const DEFAULT_MAIN_PART: &str = "word/document.xml";
/// Check the deadline and report progress every this many body blocks.
const BLOCKS_PER_CHECK: usize = 64;
/// Progress unit.
const UNIT: &str = "blocks";
/// Separator between table cells in a row's text.
pub(crate) const CELL_SEPARATOR: &str = " | ";

/// Extractor for Word documents (`.docx`).
pub struct DocxExtractor;

impl Extractor for DocxExtractor {
    fn extract(&self, input: &Input<'_>, ctx: &Context<'_>) -> Result<Document, ExtractError> {
        if input.bytes.starts_with(&OLE2_MAGIC) {
            return Err(ExtractError::PasswordProtected);
        }
        let mut zip = archive::open(input.bytes, ctx.limits)?;
        let main = main_part(&mut zip)?;
        let doc_xml = zip.require(&main)?;
        let rels = match zip.read(&xml::rels_part(&main))? {
            Some(bytes) => xml::parse_rels(&bytes, &main)?,
            None => Vec::new(),
        };
        let styles = first_part(&mut zip, &rels, "styles")?
            .filter(|b| xml::check_well_formed(b, "styles").is_ok())
            .and_then(|b| Styles::from_xml(&b[..]).ok())
            .map(|s| StyleMap::new(&s))
            .unwrap_or_default();
        let numberings = first_part(&mut zip, &rels, "numbering")?
            .filter(|b| xml::check_well_formed(b, "numbering").is_ok())
            .and_then(|b| Numberings::from_xml(&b[..]).ok());
        // docx-rs builds the whole tree (about a kilobyte per paragraph): count before building it.
        let blocks = xml::well_formed_count(&doc_xml, &main, &["p", "tr", "tc"])?;
        if blocks > ctx.limits.max_segments {
            return Err(ExtractError::LimitExceeded(format!(
                "{main} has {blocks} paragraphs, table rows and cells, more than the limit of {} \
                 (max_segments)",
                ctx.limits.max_segments
            )));
        }
        let body = docx_rs::Document::from_xml(&doc_xml[..])
            .map_err(|e| ExtractError::Corrupt(format!("{main}: {e}")))?;

        let total = body.children.len();
        ctx.report(0, total as u64, UNIT);
        let mut walk = Walk {
            styles: &styles,
            lists: ListState::new(numberings.as_ref()),
            path: Vec::new(),
            block: 0,
            segments: Vec::new(),
            anchors: HashMap::new(),
        };
        for (i, child) in body.children.iter().enumerate() {
            if i % BLOCKS_PER_CHECK == 0 {
                ctx.check_deadline()?;
                ctx.report(i as u64, total as u64, UNIT);
            }
            walk.document_child(child);
        }
        ctx.check_deadline()?;
        let body_blocks = walk.block;
        let mut segments = walk.segments;
        for (kind, rel_kind) in [
            (SegmentKind::Header, "header"),
            (SegmentKind::Footer, "footer"),
        ] {
            for rel in rels.iter().filter(|r| r.is(rel_kind) && !r.external) {
                let Some(bytes) = zip.read(&rel.target)? else {
                    continue;
                };
                xml::check_well_formed(&bytes, &rel.target)?;
                let texts = match kind {
                    SegmentKind::Header => {
                        docx_rs::Header::from_xml(&bytes[..]).map(|h| header_texts(&h.children))
                    }
                    _ => docx_rs::Footer::from_xml(&bytes[..]).map(|f| footer_texts(&f.children)),
                }
                .map_err(|e| ExtractError::Corrupt(format!("{}: {e}", rel.target)))?;
                push_margin(&mut segments, kind, texts);
            }
        }
        if let Some(bytes) = first_part(&mut zip, &rels, "comments")? {
            xml::check_well_formed(&bytes, "comments")?;
            let comments = Comments::from_xml(&bytes[..])
                .map_err(|e| ExtractError::Corrupt(format!("comments: {e}")))?;
            for comment in comments.inner() {
                let text = comment_text(comment);
                if text.is_empty() {
                    continue;
                }
                let location =
                    walk.anchors
                        .get(&comment.id)
                        .cloned()
                        .unwrap_or(Location::Section {
                            heading_path: Vec::new(),
                            block: 0,
                        });
                segments.push(Segment::new(SegmentKind::Comment, text, location));
            }
        }
        ctx.report(total as u64, total as u64, UNIT);
        let mut doc = Document {
            segments,
            ..Document::default()
        };
        doc.set_meta("blocks", body_blocks);
        Ok(doc)
    }
}

/// The main document part named by the package relationships.
fn main_part(zip: &mut archive::Container<'_>) -> Result<String, ExtractError> {
    let Some(bytes) = zip.read("_rels/.rels")? else {
        return Ok(DEFAULT_MAIN_PART.to_owned());
    };
    Ok(xml::parse_rels(&bytes, "")?
        .into_iter()
        .find(|r| r.is("officeDocument") && !r.external)
        .map_or_else(|| DEFAULT_MAIN_PART.to_owned(), |r| r.target))
}

/// The first internal part related to the main part with this relationship kind, inflated.
fn first_part(
    zip: &mut archive::Container<'_>,
    rels: &[Rel],
    kind: &str,
) -> Result<Option<Vec<u8>>, ExtractError> {
    match rels.iter().find(|r| r.is(kind) && !r.external) {
        Some(rel) => zip.read(&rel.target),
        None => Ok(None),
    }
}

/// Walks the body, keeping the heading path, block counter and list counters.
struct Walk<'a> {
    styles: &'a StyleMap,
    lists: ListState<'a>,
    /// (level, text) of the headings above the current block, outermost first.
    path: Vec<(usize, String)>,
    block: u32,
    segments: Vec<Segment>,
    /// Where each comment id is anchored.
    anchors: HashMap<usize, Location>,
}

impl Walk<'_> {
    fn document_child(&mut self, child: &DocumentChild) {
        match child {
            DocumentChild::Paragraph(p) => self.paragraph(p),
            DocumentChild::Table(t) => self.table(t),
            DocumentChild::StructuredDataTag(sdt) => {
                for c in &sdt.children {
                    match c {
                        docx_rs::StructuredDataTagChild::Paragraph(p) => self.paragraph(p),
                        docx_rs::StructuredDataTagChild::Table(t) => self.table(t),
                        _ => {}
                    }
                }
            }
            // A table of contents repeats the headings; bookmarks and range marks carry no text.
            DocumentChild::TableOfContents(_)
            | DocumentChild::BookmarkStart(_)
            | DocumentChild::BookmarkEnd(_)
            | DocumentChild::CommentStart(_)
            | DocumentChild::CommentEnd(_)
            | DocumentChild::Section(_) => {}
        }
    }

    fn location(&self) -> Location {
        Location::Section {
            heading_path: self.path.iter().map(|(_, t)| t.clone()).collect(),
            block: self.block,
        }
    }

    fn paragraph(&mut self, p: &Paragraph) {
        let mut comments = Vec::new();
        let text = paragraph_text(p, &mut comments);
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.block += 1;
        let (kind, text) = match self.styles.classify(&p.property) {
            ParagraphClass::Heading(level) => {
                while self.path.last().is_some_and(|(l, _)| *l >= level) {
                    self.path.pop();
                }
                self.path.push((level, text.to_owned()));
                (SegmentKind::Heading, text.to_owned())
            }
            ParagraphClass::List { num_id, level } => {
                let prefix = match self.lists.next(num_id, level) {
                    ListFormat::Bullet => "- ".to_owned(),
                    ListFormat::None => String::new(),
                    ListFormat::Numbered(label) => format!("{label} "),
                };
                (SegmentKind::ListItem, format!("{prefix}{text}"))
            }
            ParagraphClass::Body => (SegmentKind::Paragraph, text.to_owned()),
        };
        let location = self.location();
        for id in comments {
            self.anchors.entry(id).or_insert_with(|| location.clone());
        }
        self.segments.push(Segment::new(kind, text, location));
    }

    fn table(&mut self, t: &Table) {
        let mut first = true;
        for row in table_rows(t) {
            self.block += 1;
            let kind = if first {
                SegmentKind::TableHeader
            } else {
                SegmentKind::TableRow
            };
            first = false;
            let location = self.location();
            self.segments.push(Segment::new(kind, row, location));
        }
    }
}

/// The rows of a table as text, cells joined by [`CELL_SEPARATOR`]; rows with no text are left out.
fn table_rows(t: &Table) -> Vec<String> {
    let mut rows = Vec::new();
    for TableChild::TableRow(row) in &t.rows {
        let cells: Vec<String> = row
            .cells
            .iter()
            .map(|TableRowChild::TableCell(cell)| {
                let mut parts = Vec::new();
                for content in &cell.children {
                    match content {
                        TableCellContent::Paragraph(p) => {
                            parts.push(paragraph_text(p, &mut Vec::new()))
                        }
                        TableCellContent::Table(inner) => parts.extend(table_rows(inner)),
                        TableCellContent::StructuredDataTag(_)
                        | TableCellContent::TableOfContents(_) => {}
                    }
                }
                let joined: Vec<&str> = parts
                    .iter()
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .collect();
                joined.join(" ")
            })
            .collect();
        if cells.iter().any(|c| !c.is_empty()) {
            rows.push(cells.join(CELL_SEPARATOR));
        }
    }
    rows
}

/// The visible text of a paragraph (deleted and moved-away text left out); collects anchored comment ids.
fn paragraph_text(p: &Paragraph, comments: &mut Vec<usize>) -> String {
    let mut out = String::new();
    children_text(&p.children, &mut out, comments);
    out
}

fn children_text(children: &[ParagraphChild], out: &mut String, comments: &mut Vec<usize>) {
    for child in children {
        match child {
            ParagraphChild::Run(run) => run_text(run, out, comments),
            ParagraphChild::Insert(ins) => {
                for c in &ins.children {
                    match c {
                        docx_rs::InsertChild::Run(run) => run_text(run, out, comments),
                        docx_rs::InsertChild::CommentStart(c) => comments.push(c.id),
                        docx_rs::InsertChild::Delete(_) | docx_rs::InsertChild::CommentEnd(_) => {}
                    }
                }
            }
            ParagraphChild::MoveTo(mv) => {
                for c in &mv.children {
                    match c {
                        docx_rs::MoveToChild::Run(run) => run_text(run, out, comments),
                        docx_rs::MoveToChild::CommentStart(c) => comments.push(c.id),
                        docx_rs::MoveToChild::Delete(_) | docx_rs::MoveToChild::CommentEnd(_) => {}
                    }
                }
            }
            ParagraphChild::Hyperlink(link) => children_text(&link.children, out, comments),
            ParagraphChild::CommentStart(c) => comments.push(c.id),
            ParagraphChild::StructuredDataTag(sdt) => {
                for c in &sdt.children {
                    match c {
                        docx_rs::StructuredDataTagChild::Run(run) => run_text(run, out, comments),
                        docx_rs::StructuredDataTagChild::Paragraph(p) => {
                            children_text(&p.children, out, comments);
                        }
                        docx_rs::StructuredDataTagChild::CommentStart(c) => comments.push(c.id),
                        _ => {}
                    }
                }
            }
            ParagraphChild::Delete(_)
            | ParagraphChild::MoveFrom(_)
            | ParagraphChild::BookmarkStart(_)
            | ParagraphChild::BookmarkEnd(_)
            | ParagraphChild::CommentEnd(_)
            | ParagraphChild::PageNum(_)
            | ParagraphChild::NumPages(_) => {}
        }
    }
}

fn run_text(run: &Run, out: &mut String, comments: &mut Vec<usize>) {
    for child in &run.children {
        match child {
            RunChild::Text(t) => out.push_str(&t.text),
            RunChild::Tab(_) | RunChild::PTab(_) => out.push('\t'),
            RunChild::Break(_) | RunChild::CarriageReturn(_) => out.push('\n'),
            RunChild::CommentStart(c) => comments.push(c.id),
            // Field codes, drawings, deleted text and marks are not visible text.
            _ => {}
        }
    }
}

fn header_texts(children: &[docx_rs::HeaderChild]) -> Vec<String> {
    let mut out = Vec::new();
    for child in children {
        match child {
            docx_rs::HeaderChild::Paragraph(p) => out.push(paragraph_text(p, &mut Vec::new())),
            docx_rs::HeaderChild::Table(t) => out.extend(table_rows(t)),
            docx_rs::HeaderChild::StructuredDataTag(_) => {}
        }
    }
    out
}

fn footer_texts(children: &[docx_rs::FooterChild]) -> Vec<String> {
    let mut out = Vec::new();
    for child in children {
        match child {
            docx_rs::FooterChild::Paragraph(p) => out.push(paragraph_text(p, &mut Vec::new())),
            docx_rs::FooterChild::Table(t) => out.extend(table_rows(t)),
            docx_rs::FooterChild::StructuredDataTag(_) => {}
        }
    }
    out
}

/// Appends header or footer lines, skipping empty ones and texts already emitted with the same kind.
fn push_margin(segments: &mut Vec<Segment>, kind: SegmentKind, texts: Vec<String>) {
    let mut block = 0;
    for text in texts {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        block += 1;
        if segments.iter().any(|s| s.kind == kind && s.text == text) {
            continue;
        }
        let location = Location::Section {
            heading_path: Vec::new(),
            block,
        };
        segments.push(Segment::new(kind, text, location));
    }
}

/// A comment's paragraphs joined by newlines.
fn comment_text(comment: &docx_rs::Comment) -> String {
    let mut parts = Vec::new();
    for child in &comment.children {
        match child {
            docx_rs::CommentChild::Paragraph(p) => parts.push(paragraph_text(p, &mut Vec::new())),
            docx_rs::CommentChild::Table(t) => parts.extend(table_rows(t)),
        }
    }
    let parts: Vec<&str> = parts
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    parts.join("\n")
}
