//! The chunker: turns a [`Document`]'s segments into chunks that fit the embedder's window, each with the merged
//! location of its segments. Pure logic: no I/O, no threads (callers run it on a blocking thread).
//!
//! Rules, in the order the packer applies them:
//! - Segments are packed whole, in order, joined by `"\n"`, while the chunk's token count stays within
//!   [`ChunkConfig::max_tokens`]. Chunks break between segments whenever possible.
//! - A chunk never spans two kinds of location or two sheets. It grows across pages, slides, top-level
//!   sections and kinds of block (body, margin, annotation), and past a heading or table header, only while
//!   it is still small (less than a quarter of the budget): otherwise those start a new chunk. A heading that
//!   would end a chunk moves on to the next one with the text under it.
//! - A segment longer than a chunk is cut with `text-splitter` at the highest boundary that fits (lines,
//!   sentences, words; between characters only for a word longer than a chunk); its pieces keep the segment's
//!   location, e.g. the time range of a long transcript segment.
//! - A chunk that continues the unit of the chunk before it (the budget ran out) starts with up to
//!   [`ChunkConfig::overlap_tokens`] of that chunk's trailing text: whole words, or whole rows / transcript
//!   segments for tables and audio. [`Chunk::overlap_chars`] says how long that prefix is.
//! - A chunk of table rows starts with the table's header row, repeated ([`Chunk::header_chars`]), unless the
//!   header alone takes more than half the budget.
//!
//! No text is lost: [`reassemble`] strips the repeated prefixes and joins the chunks with `"\n"`, which gives
//! [`Document::plain_text`] back up to whitespace (the splitter trims whitespace where it cuts a segment, and a
//! cut inside a segment becomes a newline). Empty segments are skipped.

mod location;
mod pack;
#[cfg(test)]
mod proptests;
mod split;
#[cfg(test)]
mod tests;

pub use location::{BlockRange, ChunkLocation};

use serde::{Deserialize, Serialize};

use crate::types::Document;

/// Default tokens per chunk, overlap and `[CLS]`/`[SEP]` included: below the embedder's window (256 tokens
/// for MiniLM) so a caller may still add a short title without truncation.
pub const DEFAULT_MAX_TOKENS: usize = 240;
/// Default tokens a chunk may repeat from the chunk before it.
pub const DEFAULT_OVERLAP_TOKENS: usize = 32;
/// Smallest accepted `max_tokens`: below it a chunk holds a handful of words.
pub const MIN_MAX_TOKENS: usize = 16;
/// The overlap may take at most 1/N of a chunk, so every chunk carries mostly new text.
const MAX_OVERLAP_DIVISOR: usize = 2;

/// Errors of the chunker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The configuration cannot produce chunks that fit the embedder.
    #[error("invalid chunk config: {0}")]
    InvalidConfig(String),
}

/// How big chunks are, in tokens as counted by the embedder's tokenizer (`[CLS]` and `[SEP]` included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkConfig {
    /// Most tokens of one chunk, its overlap and repeated table header included; at most the embedder's
    /// window (checked by [`ChunkConfig::validate`]).
    pub max_tokens: usize,
    /// Most tokens a chunk repeats from the chunk before it; at most half of `max_tokens`.
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_TOKENS,
            overlap_tokens: DEFAULT_OVERLAP_TOKENS,
        }
    }
}

impl ChunkConfig {
    /// Checks that chunks fit the embedder's window of `window` tokens (the caller knows the embedder; the
    /// chunker does not) and that the overlap leaves room for new text.
    pub fn validate(&self, window: usize) -> Result<(), ChunkError> {
        if self.max_tokens > window {
            return Err(ChunkError::InvalidConfig(format!(
                "max_tokens is {}, but the embedder's window is {window} tokens",
                self.max_tokens
            )));
        }
        self.check_shape()
    }

    /// The checks that need no embedder: a chunk holds more than a handful of tokens, the overlap at most half.
    fn check_shape(&self) -> Result<(), ChunkError> {
        let Self {
            max_tokens,
            overlap_tokens,
        } = *self;
        if max_tokens < MIN_MAX_TOKENS {
            return Err(ChunkError::InvalidConfig(format!(
                "max_tokens is {max_tokens}, it must be at least {MIN_MAX_TOKENS}"
            )));
        }
        if overlap_tokens > max_tokens / MAX_OVERLAP_DIVISOR {
            return Err(ChunkError::InvalidConfig(format!(
                "overlap_tokens is {overlap_tokens}, it must be at most half of max_tokens ({max_tokens})"
            )));
        }
        Ok(())
    }
}

/// A piece of a document sized for the embedder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position of the chunk in its document: 0, 1, 2, ...
    pub ordinal: u32,
    /// The text to embed and index: repeated header, overlap, then the chunk's own segments.
    pub text: String,
    /// Where the chunk's own segments are (not the repeated header or overlap).
    pub location: ChunkLocation,
    /// Tokens of `text` by the counter, `[CLS]` and `[SEP]` included; at most `max_tokens`.
    pub token_count: u32,
    /// Leading characters (after the header) repeated from the previous chunk, with their separator; 0 if none.
    pub overlap_chars: u32,
    /// Leading characters that repeat the table's header row, with their `"\n"`; 0 if none.
    pub header_chars: u32,
}

impl Chunk {
    /// The chunk's own text: `text` without the repeated header and overlap.
    pub fn content(&self) -> &str {
        let skip = self.header_chars as usize + self.overlap_chars as usize;
        self.text
            .char_indices()
            .nth(skip)
            .map_or("", |(i, _)| &self.text[i..])
    }
}

/// Cuts `doc` into chunks of at most `cfg.max_tokens` tokens as counted by `count` (in production the
/// embedder's token counter; callers check `cfg` against its window with [`ChunkConfig::validate`]). See the
/// module docs for the rules.
pub fn chunk_document(
    doc: &Document,
    cfg: &ChunkConfig,
    count: &dyn Fn(&str) -> usize,
) -> Result<Vec<Chunk>, ChunkError> {
    chunk_document_at_most(doc, cfg, count, usize::MAX)
}

/// Like [`chunk_document`], but stops once it has made more than `max_chunks` chunks (the result then has
/// `max_chunks + 1`), so a file over the limit costs only the limit's worth of work to refuse.
pub fn chunk_document_at_most(
    doc: &Document,
    cfg: &ChunkConfig,
    count: &dyn Fn(&str) -> usize,
    max_chunks: usize,
) -> Result<Vec<Chunk>, ChunkError> {
    cfg.check_shape()?;
    Ok(pack::Packer::new(cfg, count).run(&doc.segments, max_chunks))
}

/// The document's text rebuilt from its chunks: their [`Chunk::content`]s joined by `"\n"`. Equal to
/// [`Document::plain_text`] up to whitespace.
pub fn reassemble(chunks: &[Chunk]) -> String {
    let contents: Vec<&str> = chunks.iter().map(Chunk::content).collect();
    contents.join("\n")
}
