//! PDF text extraction: lopdf parses the file once, pdf-extract lays out each page's text (font
//! encodings, ToUnicode maps, reading order), and pages without a text layer are rendered with
//! `pdftoppm` and read with Tesseract (see [`super::ocr`]).
//!
//! Crafted files are defused before pdf-extract sees them (see [`guard`]); a panic inside pdf-extract on
//! one page is caught and only that page is lost (it is then treated as a page without text).

mod guard;
mod streams;
mod text;

use std::panic::{AssertUnwindSafe, catch_unwind};

use lopdf::Document as PdfDoc;
use serde_json::Value;

use super::ocr::{ocr_png, render_pdf_page, split_paragraphs};
use super::{Context, ExtractError, Extractor, Input, OcrMode};
use crate::types::{Document, Location, Segment, SegmentKind};
use text::PageText;

/// A page with fewer letters or digits than this has no usable text layer (OCR candidate).
const MIN_TEXT_LAYER_CHARS: usize = 3;
/// Progress unit while OCR'ing pages, after the text layer pass reported "pages".
const OCR_UNIT: &str = "ocr_pages";

/// Extracts the text of PDF files page by page, with OCR for pages that have no text layer.
///
/// OCR follows `limits.ocr`: `auto` reads pages whose text layer is (near) empty, `on` reads every page
/// and prefers the OCR text when it is not empty, `off` never OCRs. At most `limits.max_ocr_pages`
/// pages are OCR'd; the others without text are listed in the `pages_without_text` metadata.
pub struct PdfExtractor;

impl Extractor for PdfExtractor {
    fn extract(&self, input: &Input<'_>, ctx: &Context<'_>) -> Result<Document, ExtractError> {
        let mut pdf = load(input.bytes)?;
        let page_ids = guard::page_ids(&pdf)?;
        let count = page_ids.len();
        let max_pages = ctx.limits.max_pages as usize;
        if count > max_pages {
            return Err(ExtractError::LimitExceeded(format!(
                "the PDF has {count} pages, more than the limit of {max_pages}"
            )));
        }
        guard::sanitize(&mut pdf, &page_ids)?;
        ctx.check_deadline()?;
        let streams = streams::check(&mut pdf, ctx.limits)?;
        ctx.check_deadline()?;

        let mut doc = Document::default();
        if streams.cmaps_dropped > 0 {
            doc.set_meta("cmaps_dropped", streams.cmaps_dropped);
        }
        info_metadata(&pdf, &mut doc);
        doc.set_meta("pages", count);
        let texts = page_texts(&pdf, count, ctx)?;
        drop(pdf);
        let ocr = ocr_pages(input.bytes, &texts, ctx)?;

        let mut ocr_done = Vec::new();
        let mut without_text = Vec::new();
        for (index, text) in texts.iter().enumerate() {
            let page = page_number(index);
            let (body, from_ocr) = match ocr.get(&page) {
                Some(Ok(ocr_text)) if !ocr_text.is_empty() => (ocr_text.as_str(), true),
                _ => (text.as_str(), false),
            };
            if ocr.get(&page).is_some_and(Result::is_ok) {
                ocr_done.push(page);
            } else if text::is_near_empty(text, MIN_TEXT_LAYER_CHARS) {
                without_text.push(page);
            }
            let location = Location::Page {
                page,
                ocr: from_ocr,
            };
            let paragraphs: Vec<String> = if from_ocr {
                split_paragraphs(body).map(str::to_owned).collect()
            } else {
                text::paragraphs(body)
            };
            doc.segments.extend(
                paragraphs
                    .into_iter()
                    .map(|p| Segment::new(SegmentKind::Paragraph, p, location.clone())),
            );
        }
        doc.set_meta("ocr_pages", ocr_done);
        doc.set_meta("pages_without_text", without_text);
        if let Some(Err(first)) = ocr.values().find(|r| r.is_err()) {
            doc.set_meta("ocr_error", first.clone());
        }
        Ok(doc)
    }
}

/// Parses the file, decrypting it when the user password is empty.
fn load(bytes: &[u8]) -> Result<PdfDoc, ExtractError> {
    // lopdf already decrypts with the empty password while loading; a file needing another password
    // loads still encrypted (or fails with a password error).
    let options = lopdf::LoadOptions {
        filter: Some(streams::load_filter),
        ..Default::default()
    };
    let mut pdf = match catch_unwind(|| PdfDoc::load_mem_with_options(bytes, options)) {
        Ok(Ok(pdf)) => pdf,
        Ok(Err(lopdf::Error::InvalidPassword | lopdf::Error::Decryption(_))) => {
            return Err(ExtractError::EncryptedPdf);
        }
        Ok(Err(e)) => return Err(ExtractError::Corrupt(format!("cannot parse the PDF: {e}"))),
        Err(_) => {
            return Err(ExtractError::Corrupt(
                "the PDF parser failed on this file".into(),
            ));
        }
    };
    streams::check_object_streams(&pdf)?;
    if pdf.is_encrypted() && pdf.decrypt("").is_err() {
        return Err(ExtractError::EncryptedPdf);
    }
    Ok(pdf)
}

/// The text layer of every page, in page order (empty for a page pdf-extract could not read).
///
/// The fast path walks the whole document in one pass (pdf-extract's per-page entry point re-walks
/// the page tree for every page); when a page fails, the walk resumes page by page after it.
fn page_texts(pdf: &PdfDoc, count: usize, ctx: &Context<'_>) -> Result<Vec<String>, ExtractError> {
    let total = count as u64;
    let mut out = PageText::new(ctx, total, 0);
    let whole = catch_unwind(AssertUnwindSafe(|| pdf_extract::output_doc(pdf, &mut out)));
    if out.timed_out {
        return Err(ExtractError::Timeout);
    }
    if out.over_limit {
        return Err(too_much_text(ctx));
    }
    let mut texts = vec![String::new(); count];
    let mut next = 1;
    for (page, text) in out.pages.drain(..) {
        if let Some(slot) = texts.get_mut(page_index(page)) {
            *slot = text;
        }
        next = page + 1;
    }
    if !matches!(whole, Ok(Ok(()))) {
        // The page that failed keeps what was read of it; carry on with the pages after it.
        for page in next..=u32::try_from(count).unwrap_or(u32::MAX) {
            ctx.check_deadline()?;
            let already = texts.iter().map(|t| t.len() as u64).sum();
            let mut one = PageText::new(ctx, total, already);
            let _ = catch_unwind(AssertUnwindSafe(|| {
                pdf_extract::output_doc_page(pdf, &mut one, page)
            }));
            if one.timed_out {
                return Err(ExtractError::Timeout);
            }
            if one.over_limit {
                return Err(too_much_text(ctx));
            }
            if let (Some(slot), Some((_, text))) =
                (texts.get_mut(page_index(page)), one.pages.pop())
            {
                *slot = text;
            }
            ctx.report(u64::from(page), total, "pages");
        }
    }
    Ok(texts)
}

fn too_much_text(ctx: &Context<'_>) -> ExtractError {
    ExtractError::LimitExceeded(format!(
        "the PDF has more than {} bytes of text (max_text_bytes)",
        ctx.limits.max_text_bytes
    ))
}

/// OCRs the pages `limits.ocr` selects, up to `limits.max_ocr_pages`; keyed by 1-based page number.
/// A page whose rendering or OCR failed maps to the error message; a timeout fails the whole file.
fn ocr_pages(
    bytes: &[u8],
    texts: &[String],
    ctx: &Context<'_>,
) -> Result<std::collections::BTreeMap<u32, Result<String, String>>, ExtractError> {
    let limits = ctx.limits;
    let wanted: Vec<u32> = texts
        .iter()
        .enumerate()
        .filter(|(_, text)| match limits.ocr {
            OcrMode::Off => false,
            OcrMode::On => true,
            OcrMode::Auto => text::is_near_empty(text, MIN_TEXT_LAYER_CHARS),
        })
        .map(|(index, _)| page_number(index))
        .take(limits.max_ocr_pages as usize)
        .collect();
    let mut results = std::collections::BTreeMap::new();
    let total = wanted.len() as u64;
    for (done, &page) in wanted.iter().enumerate() {
        ctx.check_deadline()?;
        let result = render_pdf_page(bytes, page, limits.ocr_dpi, ctx.remaining())
            .and_then(|png| ocr_png(&png, &limits.ocr_language, ctx.remaining()));
        match result {
            Ok(text) => results.insert(page, Ok(text)),
            Err(ExtractError::Timeout) => return Err(ExtractError::Timeout),
            Err(e) => results.insert(page, Err(e.to_string())),
        };
        ctx.report(done as u64 + 1, total, OCR_UNIT);
    }
    Ok(results)
}

/// Title and author from the document information dictionary, when present and not blank.
fn info_metadata(pdf: &PdfDoc, doc: &mut Document) {
    let Some(info) = pdf
        .trailer
        .get(b"Info")
        .ok()
        .and_then(|obj| pdf.dereference(obj).ok())
        .and_then(|(_, obj)| obj.as_dict().ok())
    else {
        return;
    };
    for (key, name) in [(&b"Title"[..], "title"), (&b"Author"[..], "author")] {
        let value = info
            .get(key)
            .ok()
            .and_then(|obj| pdf.dereference(obj).ok())
            .and_then(|(_, obj)| lopdf::decode_text_string(obj).ok());
        if let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
            doc.set_meta(name, Value::String(value));
        }
    }
}

/// 1-based page number of a 0-based index (page counts are bounded by `max_pages`, a `u32`).
fn page_number(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// 0-based index of a 1-based page number.
fn page_index(page: u32) -> usize {
    (page as usize).saturating_sub(1)
}

#[cfg(test)]
mod tests;
