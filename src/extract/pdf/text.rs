//! A pdf-extract [`OutputDev`] that lays characters out as plain text, one string per page.
//!
//! The layout rules follow pdf-extract's `PlainTextOutput` (a line break when the baseline moves, a space
//! when a gap opens between glyphs, a blank line when the baseline jumps by more than one and a half
//! lines), but it keeps each page apart and checks the deadline and reports progress at page boundaries.

use pdf_extract::{MediaBox, OutputDev, OutputError, Transform};

use crate::extract::Context;

/// A vertical move larger than this many font sizes starts a new paragraph (blank line).
const PARAGRAPH_GAP: f64 = 1.5;
/// A vertical move larger than this many font sizes, going back left, starts a new line.
const LINE_GAP: f64 = 0.5;
/// A horizontal gap wider than this many font sizes between glyphs is a space.
const WORD_GAP: f64 = 0.1;

/// Collects the text of every page it is shown.
pub struct PageText<'c, 'a> {
    ctx: &'c Context<'a>,
    total: u64,
    /// Text per page, in the order the pages were shown, with the 1-based page number.
    pub pages: Vec<(u32, String)>,
    /// Set when the deadline passed; the walk was stopped with an error at the next page.
    pub timed_out: bool,
    page_height: f64,
    last_end: f64,
    last_y: f64,
    first_char: bool,
}

impl<'c, 'a> PageText<'c, 'a> {
    /// A collector that reports progress as (done, `total`, "pages").
    pub fn new(ctx: &'c Context<'a>, total: u64) -> Self {
        PageText {
            ctx,
            total,
            pages: Vec::new(),
            timed_out: false,
            page_height: 0.0,
            last_end: f64::MAX,
            last_y: 0.0,
            first_char: false,
        }
    }

    fn current(&mut self) -> Option<&mut String> {
        self.pages.last_mut().map(|(_, text)| text)
    }
}

impl OutputDev for PageText<'_, '_> {
    fn begin_page(
        &mut self,
        page_num: u32,
        media_box: &MediaBox,
        _art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), OutputError> {
        if self.ctx.check_deadline().is_err() {
            self.timed_out = true;
            return Err(OutputError::FormatError(std::fmt::Error));
        }
        self.page_height = media_box.ury - media_box.lly;
        self.last_end = f64::MAX;
        self.last_y = 0.0;
        self.first_char = false;
        self.pages.push((page_num, String::new()));
        Ok(())
    }

    fn end_page(&mut self) -> Result<(), OutputError> {
        self.ctx
            .report(self.pages.len() as u64, self.total, "pages");
        Ok(())
    }

    fn output_character(
        &mut self,
        trm: &Transform,
        width: f64,
        _spacing: f64,
        font_size: f64,
        ch: &str,
    ) -> Result<(), OutputError> {
        // Text space to device space with the y axis flipped so y grows down the page.
        let (x, y) = (trm.m31, self.page_height - trm.m32);
        // Side of the square with the area of the transformed font-size vector (as pdf-extract does).
        let vx = font_size * trm.m11 + font_size * trm.m21;
        let vy = font_size * trm.m12 + font_size * trm.m22;
        let size = (vx * vy).abs().sqrt();
        let (first, last_y, last_end) = (self.first_char, self.last_y, self.last_end);
        let Some(out) = self.current() else {
            return Ok(()); // Characters outside a page cannot happen; ignore them if they do.
        };
        if first && !out.is_empty() {
            let dy = (y - last_y).abs();
            if dy > size * PARAGRAPH_GAP {
                out.push('\n');
            }
            if x < last_end && dy > size * LINE_GAP {
                out.push('\n');
            } else if x > last_end + size * WORD_GAP && !out.ends_with([' ', '\n']) {
                out.push(' ');
            }
        }
        out.push_str(ch);
        self.first_char = false;
        self.last_y = y;
        self.last_end = x + width * size;
        Ok(())
    }

    fn begin_word(&mut self) -> Result<(), OutputError> {
        self.first_char = true;
        Ok(())
    }

    fn end_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

/// Splits a page's text into paragraphs: blank-line separated blocks, lines right-trimmed.
pub fn paragraphs(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block = String::new();
    for line in page.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            if !block.is_empty() {
                out.push(std::mem::take(&mut block));
            }
            continue;
        }
        if !block.is_empty() {
            block.push('\n');
        }
        block.push_str(line);
    }
    if !block.is_empty() {
        out.push(block);
    }
    out
}

/// Whether a page's extracted text is too thin to count as a text layer.
pub fn is_near_empty(page: &str, min_chars: usize) -> bool {
    page.chars()
        .filter(|c| c.is_alphanumeric())
        .take(min_chars)
        .count()
        < min_chars
}
