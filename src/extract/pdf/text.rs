//! A pdf-extract [`OutputDev`] that lays characters out as plain text, one string per page.
//!
//! The layout rules follow pdf-extract's `PlainTextOutput` (a line break when the baseline moves back, a
//! space when a gap opens between glyphs, a blank line when the baseline jumps by more than one and a half
//! lines), but measured along the writing direction of each glyph (so rotated pages read as lines too),
//! checked between every two glyphs, with presentation-form ligatures expanded and words hyphenated at
//! line ends joined again. It keeps each page apart and checks the deadline and reports progress at page
//! boundaries.

use pdf_extract::{MediaBox, OutputDev, OutputError, Transform};

use crate::extract::Context;

/// A vertical move larger than this many font sizes starts a new paragraph (blank line).
const PARAGRAPH_GAP: f64 = 1.5;
/// A vertical move larger than this many font sizes, going back left, starts a new line.
const LINE_GAP: f64 = 0.5;
/// A horizontal gap wider than this many font sizes between glyphs is a space.
const WORD_GAP: f64 = 0.1;
/// A glyph this many font sizes or more before the end of the previous one on the same baseline starts
/// another word (a line number set in the margin after its line, a column drawn after the one to its
/// right); smaller moves back are accents and overstrikes.
const BACK_GAP: f64 = 2.0;
/// A baseline shift larger than this many font sizes back to a larger font size (the end of a
/// superscript or subscript such as a footnote mark) separates words when one side is not a letter.
const SCRIPT_SHIFT: f64 = 0.15;
/// Font sizes differing by more than this ratio count as a change of size.
const SCRIPT_SIZE_RATIO: f64 = 1.1;
/// Writing directions whose cosine is below this are different directions (rotated text).
const SAME_DIRECTION: f64 = 0.95;

/// Where the previous glyph of the page ended.
#[derive(Clone, Copy)]
pub(super) struct Pen {
    /// Device-space point where the previous glyph's advance ended.
    pub end: (f64, f64),
    /// Unit vector of its writing direction in device space.
    pub dir: (f64, f64),
    /// Its font size in device space.
    pub size: f64,
    /// Whether its last character was a letter.
    pub letter: bool,
}

/// Collects the text of every page it is shown.
pub struct PageText<'c, 'a> {
    ctx: &'c Context<'a>,
    total: u64,
    /// Text per page, in the order the pages were shown, with the 1-based page number.
    pub pages: Vec<(u32, String)>,
    /// Set when the deadline passed; the walk was stopped with an error.
    pub timed_out: bool,
    /// Set when the text passed `max_text_bytes`; the walk was stopped with an error.
    pub over_limit: bool,
    /// Bytes of text collected so far (over all pages, `already` included).
    bytes: u64,
    pen: Option<Pen>,
}

/// Characters between two deadline checks inside a page (a form XObject fan-out draws without end within
/// one page).
const DEADLINE_CHECK_EVERY: u64 = 4096;

impl<'c, 'a> PageText<'c, 'a> {
    /// A collector that reports progress as (done, `total`, "pages"), after `already` bytes of text were
    /// collected elsewhere for this file.
    pub fn new(ctx: &'c Context<'a>, total: u64, already: u64) -> Self {
        PageText {
            ctx,
            total,
            pages: Vec::new(),
            timed_out: false,
            over_limit: false,
            bytes: already,
            pen: None,
        }
    }

    /// Stops the walk (with an error pdf-extract passes up) when the text is over its limit or the
    /// deadline passed.
    fn check_bounds(&mut self, added: usize) -> Result<(), OutputError> {
        let before = self.bytes;
        self.bytes = self.bytes.saturating_add(added as u64);
        if self.bytes > self.ctx.limits.max_text_bytes {
            self.over_limit = true;
            return Err(OutputError::FormatError(std::fmt::Error));
        }
        if before / DEADLINE_CHECK_EVERY != self.bytes / DEADLINE_CHECK_EVERY
            && self.ctx.check_deadline().is_err()
        {
            self.timed_out = true;
            return Err(OutputError::FormatError(std::fmt::Error));
        }
        Ok(())
    }
}

/// What goes between the previous glyph and the next one.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Break {
    None,
    Space,
    Line,
    Paragraph,
}

/// Decides the break before a glyph at device point `origin` with writing direction `dir` (unit),
/// device font size `size` and first character a letter or not, after the glyph described by `pen`.
pub(super) fn break_before(
    pen: &Pen,
    origin: (f64, f64),
    dir: (f64, f64),
    size: f64,
    letter: bool,
) -> Break {
    if dir.0 * pen.dir.0 + dir.1 * pen.dir.1 < SAME_DIRECTION {
        return Break::Line;
    }
    let (rx, ry) = (origin.0 - pen.end.0, origin.1 - pen.end.1);
    // Distance along the writing direction, and across it (positive: up from the baseline).
    let along = rx * dir.0 + ry * dir.1;
    let across = (ry * dir.0 - rx * dir.1).abs();
    // Scripts move the baseline by less than half the larger of the two sizes.
    let line_size = size.max(pen.size);
    if across > line_size * PARAGRAPH_GAP {
        return if along < 0.0 {
            Break::Paragraph
        } else {
            Break::Line
        };
    }
    if across > line_size * LINE_GAP {
        return if along < 0.0 {
            Break::Line
        } else {
            Break::Space
        };
    }
    if along > size * WORD_GAP || along < -size * BACK_GAP {
        return Break::Space;
    }
    let out_of_script = size > pen.size * SCRIPT_SIZE_RATIO;
    if out_of_script && across > pen.size * SCRIPT_SHIFT && !(letter && pen.letter) {
        return Break::Space;
    }
    Break::None
}

impl OutputDev for PageText<'_, '_> {
    fn begin_page(
        &mut self,
        page_num: u32,
        _media_box: &MediaBox,
        _art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), OutputError> {
        if self.ctx.check_deadline().is_err() {
            self.timed_out = true;
            return Err(OutputError::FormatError(std::fmt::Error));
        }
        self.pen = None;
        self.pages.push((page_num, String::new()));
        Ok(())
    }

    fn end_page(&mut self) -> Result<(), OutputError> {
        if let Some((_, text)) = self.pages.last_mut()
            && let Some(joined) = dehyphenate(text)
        {
            *text = joined;
        }
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
        let origin = (trm.m31, trm.m32);
        // Side of the square with the area of the transformed font-size vector (as pdf-extract does).
        let vx = font_size * trm.m11 + font_size * trm.m21;
        let vy = font_size * trm.m12 + font_size * trm.m22;
        let size = (vx * vy).abs().sqrt();
        let norm = trm.m11.hypot(trm.m12);
        let dir = if norm > 0.0 {
            (trm.m11 / norm, trm.m12 / norm)
        } else {
            (1.0, 0.0)
        };
        let first_letter = ch.chars().next().is_some_and(char::is_alphabetic);
        let pen = self.pen;
        let Some((_, out)) = self.pages.last_mut() else {
            return Ok(()); // Characters outside a page cannot happen; ignore them if they do.
        };
        if let Some(pen) = pen.filter(|_| !out.is_empty()) {
            match break_before(&pen, origin, dir, size, first_letter) {
                Break::None => {}
                Break::Space => {
                    if !out.ends_with([' ', '\n']) {
                        out.push(' ');
                    }
                }
                Break::Line => out.push('\n'),
                Break::Paragraph => out.push_str("\n\n"),
            }
        }
        let len_before = out.len();
        push_expanded(out, ch);
        let added = out.len() - len_before;
        // The advance as pdf-extract measures it (width in text space times the device font size).
        let advance = width * size;
        self.pen = Some(Pen {
            end: (origin.0 + dir.0 * advance, origin.1 + dir.1 * advance),
            dir,
            size,
            letter: ch.chars().next_back().is_some_and(char::is_alphabetic),
        });
        self.check_bounds(added)
    }

    fn begin_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

/// Appends `text` with the Latin presentation-form ligatures (U+FB00 to U+FB06) spelled out.
pub(super) fn push_expanded(out: &mut String, text: &str) {
    if !text.chars().any(|c| ('\u{FB00}'..='\u{FB06}').contains(&c)) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\u{FB00}' => out.push_str("ff"),
            '\u{FB01}' => out.push_str("fi"),
            '\u{FB02}' => out.push_str("fl"),
            '\u{FB03}' => out.push_str("ffi"),
            '\u{FB04}' => out.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
            other => out.push(other),
        }
    }
}

/// The length of `line` without its trailing hyphen when it ends with a word and a hyphen (not a lone
/// hyphen, not `--`).
fn hyphen_stem(line: &str) -> Option<usize> {
    let stem = line.trim_end().strip_suffix('-')?;
    stem.chars()
        .next_back()
        .is_some_and(|c| !c.is_whitespace() && c != '-')
        .then_some(stem.len())
}

/// Joins words hyphenated at line ends: a line ending with a word and `-` followed by a line starting
/// with a lowercase letter loses the hyphen and takes the first word of the next line (a next line with
/// nothing else left is dropped). Hyphens inside a line stay. `None` when nothing changes.
pub(super) fn dehyphenate(text: &str) -> Option<String> {
    if !text.contains("-\n") && !text.contains("- \n") {
        return None;
    }
    let mut lines = text.split('\n');
    let mut out = String::with_capacity(text.len());
    let mut cur = lines.next().unwrap_or_default().to_owned();
    let mut changed = false;
    for next in lines {
        let rest = next.trim_start();
        if let Some(stem) = hyphen_stem(&cur)
            && rest.chars().next().is_some_and(char::is_lowercase)
        {
            let split = rest.find(char::is_whitespace).unwrap_or(rest.len());
            cur.truncate(stem);
            cur.push_str(&rest[..split]);
            changed = true;
            let rest = rest[split..].trim_start();
            if rest.is_empty() {
                continue;
            }
            out.push_str(&cur);
            out.push('\n');
            rest.clone_into(&mut cur);
        } else {
            out.push_str(&cur);
            out.push('\n');
            next.clone_into(&mut cur);
        }
    }
    out.push_str(&cur);
    changed.then_some(out)
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
