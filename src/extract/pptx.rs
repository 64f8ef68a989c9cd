//! PPTX extraction with quick-xml over parts inflated through the zip-bomb guard.
//!
//! Slides come in presentation order (`p:sldIdLst` in `ppt/presentation.xml`, resolved through its rels).
//! For each slide, in this order: the title placeholder (`title` / `ctrTitle`) as a `Heading`, every other
//! text body as one `Paragraph` per `a:p` in shape-tree order, tables (`a:tbl`) as a `TableHeader` row
//! then `TableRow`s (cells joined by `" | "`), then the speaker notes (the notes slide's `body`
//! placeholder) as one `Note` per paragraph. Every segment is located at `Location::Slide` (1-based).

use super::office::{CELL_SEPARATOR, OLE2_MAGIC};
use super::xml::{self, Node, Walker};
use super::{Context, ExtractError, Extractor, Input, archive};
use crate::types::{Document, Location, Segment, SegmentKind};

/// Where the presentation part is when `_rels/.rels` does not say.
const DEFAULT_MAIN_PART: &str = "ppt/presentation.xml";
/// Progress unit.
const UNIT: &str = "slides";
/// Placeholder types that hold a slide's title.
const TITLE_TYPES: [&str; 2] = ["title", "ctrTitle"];
/// The placeholder type that holds speaker notes on a notes slide.
const NOTES_BODY_TYPE: &str = "body";

/// Extractor for PowerPoint presentations (`.pptx`).
pub struct PptxExtractor;

impl Extractor for PptxExtractor {
    fn extract(&self, input: &Input<'_>, ctx: &Context<'_>) -> Result<Document, ExtractError> {
        if input.bytes.starts_with(&OLE2_MAGIC) {
            return Err(ExtractError::PasswordProtected);
        }
        let mut zip = archive::open(input.bytes, ctx.limits)?;
        let main = match zip.read("_rels/.rels")? {
            Some(bytes) => xml::parse_rels(&bytes, "")?
                .into_iter()
                .find(|r| r.is("officeDocument") && !r.external)
                .map_or_else(|| DEFAULT_MAIN_PART.to_owned(), |r| r.target),
            None => DEFAULT_MAIN_PART.to_owned(),
        };
        let presentation = zip.require(&main)?;
        let rels = match zip.read(&xml::rels_part(&main))? {
            Some(bytes) => xml::parse_rels(&bytes, &main)?,
            None => Vec::new(),
        };
        let mut slides = Vec::new();
        for rid in slide_ids(&presentation, &main)? {
            let rel = rels
                .iter()
                .find(|r| r.id == rid && !r.external)
                .ok_or_else(|| {
                    ExtractError::Corrupt(format!("{main}: slide {rid} has no relationship"))
                })?;
            slides.push(rel.target.clone());
        }
        let total = slides.len() as u64;
        if total > u64::from(ctx.limits.max_pages) {
            return Err(ExtractError::LimitExceeded(format!(
                "the presentation has {total} slides (limit {})",
                ctx.limits.max_pages
            )));
        }
        let mut doc = Document::default();
        for (i, part) in slides.iter().enumerate() {
            ctx.check_deadline()?;
            ctx.report(i as u64, total, UNIT);
            let number = u32::try_from(i + 1)
                .expect("slides are fewer than max_pages (a u32). This is a bug.");
            slide(&mut zip, part, number, &mut doc.segments)?;
        }
        ctx.report(total, total, UNIT);
        doc.set_meta("slides", total);
        Ok(doc)
    }
}

/// The `r:id`s of `p:sldIdLst`, in order.
fn slide_ids(presentation: &[u8], part: &str) -> Result<Vec<String>, ExtractError> {
    let mut walker = Walker::new(presentation, part);
    let mut ids = Vec::new();
    let mut in_list = false;
    while let Some(node) = walker.next_node()? {
        match node {
            Node::Open(e) if e.name == "p:sldIdLst" => in_list = true,
            Node::Close(name) if name == "p:sldIdLst" => in_list = false,
            Node::Open(e) if in_list && e.name == "p:sldId" => {
                if let Some(id) = e.attr("r:id") {
                    ids.push(id.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(ids)
}

/// Appends one slide's segments, then its notes.
fn slide(
    zip: &mut archive::Container<'_>,
    part: &str,
    number: u32,
    out: &mut Vec<Segment>,
) -> Result<(), ExtractError> {
    let location = Location::Slide { slide: number };
    let bytes = zip.require(part)?;
    let slide_shapes = shapes(&bytes, part)?;
    let (titles, others): (Vec<&Shape>, Vec<&Shape>) =
        slide_shapes.iter().partition(|s| s.is_title());
    for shape in titles {
        let text = shape.paragraphs.join(" ");
        if !text.is_empty() {
            out.push(Segment::new(SegmentKind::Heading, text, location.clone()));
        }
    }
    for shape in others {
        for p in &shape.paragraphs {
            out.push(Segment::new(
                SegmentKind::Paragraph,
                p.clone(),
                location.clone(),
            ));
        }
        for (i, row) in shape.rows.iter().enumerate() {
            let kind = if i == 0 {
                SegmentKind::TableHeader
            } else {
                SegmentKind::TableRow
            };
            out.push(Segment::new(kind, row.clone(), location.clone()));
        }
    }
    let Some(rels) = zip.read(&xml::rels_part(part))? else {
        return Ok(());
    };
    let rels = xml::parse_rels(&rels, part)?;
    let Some(notes_part) = rels.iter().find(|r| r.is("notesSlide") && !r.external) else {
        return Ok(());
    };
    let Some(notes) = zip.read(&notes_part.target)? else {
        return Ok(());
    };
    for shape in shapes(&notes, &notes_part.target)? {
        if shape.placeholder.as_deref() == Some(NOTES_BODY_TYPE) {
            for p in shape.paragraphs {
                out.push(Segment::new(SegmentKind::Note, p, location.clone()));
            }
        }
    }
    Ok(())
}

/// The text of one shape or graphic frame.
#[derive(Debug, Default)]
struct Shape {
    /// The placeholder type (`title`, `body`, ...), when the shape is a placeholder.
    placeholder: Option<String>,
    /// Non-empty paragraphs of its text body.
    paragraphs: Vec<String>,
    /// Rows of its table, cells joined by [`CELL_SEPARATOR`].
    rows: Vec<String>,
}

impl Shape {
    fn is_title(&self) -> bool {
        self.placeholder
            .as_deref()
            .is_some_and(|t| TITLE_TYPES.contains(&t))
    }
}

/// The table row and cell being read.
#[derive(Default)]
struct TableState {
    row: Vec<String>,
    cell: Vec<String>,
}

/// Every shape (`p:sp`) and graphic frame (`p:graphicFrame`) with text, in shape-tree order.
fn shapes(bytes: &[u8], part: &str) -> Result<Vec<Shape>, ExtractError> {
    let mut walker = Walker::new(bytes, part);
    let mut out = Vec::new();
    let mut shape: Option<Shape> = None;
    let mut paragraph: Option<String> = None;
    let mut in_text = false;
    let mut table: Option<TableState> = None;
    while let Some(node) = walker.next_node()? {
        match node {
            Node::Open(e) => match e.name.as_str() {
                "p:sp" | "p:graphicFrame" => shape = Some(Shape::default()),
                "p:ph" => {
                    if let Some(s) = shape.as_mut() {
                        // A placeholder without a type is a body placeholder (ECMA-376 default).
                        s.placeholder = Some(e.attr("type").unwrap_or(NOTES_BODY_TYPE).to_owned());
                    }
                }
                "a:p" => paragraph = Some(String::new()),
                "a:t" => in_text = true,
                "a:br" => {
                    if let Some(p) = paragraph.as_mut() {
                        p.push('\n');
                    }
                }
                "a:tbl" => table = Some(TableState::default()),
                "a:tr" => {
                    if let Some(t) = table.as_mut() {
                        t.row.clear();
                    }
                }
                "a:tc" => {
                    if let Some(t) = table.as_mut() {
                        t.cell.clear();
                    }
                }
                _ => {}
            },
            Node::Text(text) => {
                if in_text && let Some(p) = paragraph.as_mut() {
                    p.push_str(&text);
                }
            }
            Node::Close(name) => match name.as_str() {
                "a:t" => in_text = false,
                "a:p" => {
                    let text = paragraph.take().unwrap_or_default();
                    let text = text.trim();
                    if let Some(t) = table.as_mut() {
                        if !text.is_empty() {
                            t.cell.push(text.to_owned());
                        }
                    } else if let Some(s) = shape.as_mut()
                        && !text.is_empty()
                    {
                        s.paragraphs.push(text.to_owned());
                    }
                }
                "a:tc" => {
                    if let Some(t) = table.as_mut() {
                        let cell = t.cell.join(" ");
                        t.row.push(cell);
                    }
                }
                "a:tr" => {
                    if let Some(t) = table.as_mut()
                        && let Some(s) = shape.as_mut()
                        && t.row.iter().any(|c| !c.is_empty())
                    {
                        s.rows.push(t.row.join(CELL_SEPARATOR));
                    }
                }
                "a:tbl" => table = None,
                "p:sp" | "p:graphicFrame" => {
                    if let Some(s) = shape.take()
                        && (!s.paragraphs.is_empty() || !s.rows.is_empty())
                    {
                        out.push(s);
                    }
                }
                _ => {}
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
