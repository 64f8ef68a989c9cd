//! The packer: walks the segments once and fills chunks up to the token budget (rules in the module docs).

use super::location::{ChunkLocation, UnitKey};
use super::{Chunk, ChunkConfig, split};
use crate::types::{Segment, SegmentKind};

/// A chunk is non-trivial once its own text counts at least 1/N of the budget; after that a heading or a new
/// page, slide or section starts a new chunk.
const NON_TRIVIAL_DIVISOR: usize = 4;
/// A table header is repeated only when it counts at most 1/N of the budget.
const HEADER_SHARE_DIVISOR: usize = 2;
/// Pieces of a long segment get at least 1/N of the budget, however much room is kept for a prefix; and a
/// small chunk is topped up with the start of a long segment only when at least that much room is left.
const MIN_PIECE_DIVISOR: usize = 4;
/// Between two segments of a chunk, and after a repeated header.
const SEGMENT_SEPARATOR: &str = "\n";

/// Text placed in a chunk: a whole segment or a piece of one.
#[derive(Clone, Copy)]
struct Item<'a> {
    seg: &'a Segment,
    /// Index of the segment in the document.
    index: usize,
    /// Byte offset of `text` in the segment's text.
    start: usize,
    text: &'a str,
}

impl<'a> Item<'a> {
    fn end(&self) -> usize {
        self.start + self.text.len()
    }

    /// What goes between `prev` and this item: the original gap inside one segment, else a newline.
    fn separator_after(&self, prev: &Item<'a>) -> &'a str {
        if prev.index == self.index && prev.end() <= self.start {
            &self.seg.text[prev.end()..self.start]
        } else {
            SEGMENT_SEPARATOR
        }
    }

    /// Overlap may repeat only whole rows and transcript segments of tables and audio, and whole words else.
    fn whole_segments_only(&self) -> bool {
        matches!(
            self.seg.kind,
            SegmentKind::TableHeader | SegmentKind::TableRow | SegmentKind::Transcript
        )
    }
}

/// The chunk being filled.
struct Open<'a> {
    /// Unit of the last item.
    key: UnitKey<'a>,
    text: String,
    /// The table header repeated at the start, if any.
    header: Option<&'a Segment>,
    header_chars: usize,
    overlap_chars: usize,
    /// Byte offset in `text` where the chunk's own items start.
    content_start: usize,
    items: Vec<Item<'a>>,
    /// Tokens of `text`.
    tokens: usize,
    /// Length and tokens of `text` before the last item was appended.
    before_last: (usize, usize),
}

/// What the next chunk may repeat from the one just closed, when it continues the same unit.
struct Carry<'a> {
    key: UnitKey<'a>,
    content: String,
    /// Byte offsets in `content` where an overlap may start, ascending.
    starts: Vec<usize>,
    last: Item<'a>,
}

/// Fills chunks; one per [`super::chunk_document`] call.
pub(super) struct Packer<'a> {
    budget: usize,
    overlap: usize,
    count: &'a dyn Fn(&str) -> usize,
    cur: Option<Open<'a>>,
    carry: Option<Carry<'a>>,
    /// The last table header, its unit and its token count (counted once, not once per row).
    table_header: Option<(UnitKey<'a>, &'a Segment, usize)>,
    chunks: Vec<Chunk>,
}

impl<'a> Packer<'a> {
    pub(super) fn new(cfg: &ChunkConfig, count: &'a dyn Fn(&str) -> usize) -> Self {
        Self {
            budget: cfg.max_tokens,
            overlap: cfg.overlap_tokens,
            count,
            cur: None,
            carry: None,
            table_header: None,
            chunks: Vec::new(),
        }
    }

    /// Packs `segments`, stopping early once more than `max_chunks` chunks are made.
    pub(super) fn run(mut self, segments: &'a [Segment], max_chunks: usize) -> Vec<Chunk> {
        for (index, seg) in segments.iter().enumerate() {
            if self.chunks.len() > max_chunks {
                return self.chunks;
            }
            if seg.text.trim().is_empty() {
                continue;
            }
            let key = UnitKey::of(seg);
            self.break_before(seg, &key);
            self.track_header(seg, &key);
            let item = Item {
                seg,
                index,
                start: 0,
                text: &seg.text,
            };
            self.place(item, &key);
        }
        self.flush(false);
        self.chunks
    }

    /// Closes the open chunk before `seg` at a hard boundary, or at a soft one once the chunk is non-trivial.
    fn break_before(&mut self, seg: &Segment, key: &UnitKey<'a>) {
        let Some(open) = &self.cur else {
            return;
        };
        let starts_block = matches!(seg.kind, SegmentKind::Heading | SegmentKind::TableHeader);
        if open.key.must_break(key) || ((open.key != *key || starts_block) && self.non_trivial()) {
            self.flush(false);
        }
    }

    fn track_header(&mut self, seg: &'a Segment, key: &UnitKey<'a>) {
        match seg.kind {
            SegmentKind::TableHeader => {
                self.table_header = Some((key.clone(), seg, (self.count)(&seg.text)));
            }
            SegmentKind::TableRow => {}
            _ => self.table_header = None,
        }
    }

    /// Whether the open chunk's own text takes a real share of the budget.
    fn non_trivial(&self) -> bool {
        self.cur.as_ref().is_some_and(|open| {
            (self.count)(&open.text[open.content_start..]) >= self.budget / NON_TRIVIAL_DIVISOR
        })
    }

    fn fits(&self, text: &str) -> bool {
        (self.count)(text) <= self.budget
    }

    /// Puts a whole segment into the open chunk, or into a new one, or cuts it when it is longer than a chunk.
    fn place(&mut self, item: Item<'a>, key: &UnitKey<'a>) {
        if self.cur.is_some() && self.append(item, key) {
            return;
        }
        if self.detach_heading(item) && self.append(item, key) {
            return;
        }
        if self.fits(item.text) {
            self.flush(true);
            self.start(item, key);
            return;
        }
        self.place_long(item, key);
    }

    /// When `item` does not fit after a heading that ends the open chunk, moves the heading to a new chunk so it
    /// stays with the text under it (if they fit together, or `item` must be cut anyway).
    fn detach_heading(&mut self, item: Item<'a>) -> bool {
        let Some(open) = self.cur.as_ref() else {
            return false;
        };
        let Some(&heading) = open.items.last() else {
            return false;
        };
        if open.items.len() < 2 || heading.seg.kind != SegmentKind::Heading {
            return false;
        }
        let together = format!("{}{SEGMENT_SEPARATOR}{}", heading.text, item.text);
        if self.fits(item.text) && !self.fits(&together) {
            return false;
        }
        let Some(open) = self.cur.as_mut() else {
            return false;
        };
        open.items.pop();
        open.text.truncate(open.before_last.0);
        open.tokens = open.before_last.1;
        if let Some(prev) = open.items.last() {
            open.key = UnitKey::of(prev.seg);
        }
        self.flush(false);
        self.start(heading, &UnitKey::of(heading.seg));
        true
    }

    /// Cuts a segment longer than a chunk into pieces: the first may top up a small open chunk, the others
    /// leave room for the overlap and header of the chunks they start.
    fn place_long(&mut self, item: Item<'a>, key: &UnitKey<'a>) {
        let mut done = 0;
        if let Some(open) = &self.cur
            && !self.non_trivial()
        {
            // Appending a piece adds about its count less the counter's fixed cost ([CLS] and [SEP]).
            let room = (self.budget + (self.count)("")).saturating_sub(open.tokens);
            if room >= self.budget / MIN_PIECE_DIVISOR
                && let Some((offset, piece)) = split::first_piece(item.text, room, self.count)
                && self.append(
                    Item {
                        text: piece,
                        start: offset,
                        ..item
                    },
                    key,
                )
            {
                done = offset + piece.len();
            }
        }
        self.flush(true);
        let rest = &item.text[done..];
        let capacity = self.piece_capacity(item.seg, key);
        for (offset, piece) in split::pieces(rest, capacity, self.budget, self.count) {
            let piece = Item {
                start: done + offset,
                text: piece,
                ..item
            };
            if self.cur.is_some() && self.append(piece, key) {
                continue;
            }
            self.flush(true);
            self.start(piece, key);
        }
    }

    /// Tokens for each piece of a long segment: the budget less the overlap and a repeated header.
    fn piece_capacity(&self, seg: &Segment, key: &UnitKey<'a>) -> usize {
        let fixed = (self.count)("");
        let header = self
            .header_for(seg, key)
            .and(self.table_header.as_ref())
            .map_or(0, |(_, _, tokens)| tokens.saturating_sub(fixed));
        self.budget
            .saturating_sub(self.overlap + header)
            .max(self.budget / MIN_PIECE_DIVISOR)
    }

    /// The table header to repeat before `seg`, if it is a row of a table whose header fits the share.
    fn header_for(&self, seg: &Segment, key: &UnitKey<'a>) -> Option<&'a Segment> {
        let (header_key, header, tokens) = self.table_header.as_ref()?;
        (seg.kind == SegmentKind::TableRow
            && header_key == key
            && *tokens <= self.budget / HEADER_SHARE_DIVISOR)
            .then_some(*header)
    }

    /// Appends `item` to the open chunk if the result fits.
    fn append(&mut self, item: Item<'a>, key: &UnitKey<'a>) -> bool {
        let Some(open) = self.cur.as_mut() else {
            return false;
        };
        let len = open.text.len();
        if let Some(prev) = open.items.last() {
            open.text.push_str(item.separator_after(prev));
        }
        open.text.push_str(item.text);
        let tokens = (self.count)(&open.text);
        if tokens > self.budget {
            open.text.truncate(len);
            return false;
        }
        open.before_last = (len, open.tokens);
        open.tokens = tokens;
        open.items.push(item);
        open.key = key.clone();
        true
    }

    /// Opens a chunk with `item`, after the repeated header and the longest overlap that fit. Degrades to the
    /// bare item, which fits whenever a piece does (see [`split::pieces`]).
    fn start(&mut self, item: Item<'a>, key: &UnitKey<'a>) {
        let carry = self.carry.take().filter(|carry| carry.key == *key);
        let header = self.header_for(item.seg, key);
        let headers = if header.is_some() {
            vec![header, None]
        } else {
            vec![None]
        };
        for header in headers {
            if let Some(carry) = &carry
                && let Some(open) = self.with_overlap(header, carry, item, key)
            {
                self.cur = Some(open);
                return;
            }
            let open = self.build(header, None, item, key);
            if open.tokens <= self.budget || header.is_none() {
                self.cur = Some(open);
                return;
            }
        }
    }

    /// The chunk with the longest overlap from `carry` that keeps both the overlap within `overlap_tokens` and
    /// the chunk within the budget; `None` when no overlap fits.
    fn with_overlap(
        &self,
        header: Option<&'a Segment>,
        carry: &Carry<'a>,
        item: Item<'a>,
        key: &UnitKey<'a>,
    ) -> Option<Open<'a>> {
        let starts = &carry.starts;
        let suffix = |i: usize| &carry.content[starts[i]..];
        // Counts fall as the start moves right: find the first start whose suffix is short enough, then the
        // first from there whose chunk fits.
        let short = starts.partition_point(|&s| (self.count)(&carry.content[s..]) > self.overlap);
        let mut best = None;
        let (mut lo, mut hi) = (short, starts.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let open = self.build(header, Some((suffix(mid), carry)), item, key);
            if open.tokens <= self.budget {
                best = Some(open);
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        best
    }

    fn build(
        &self,
        header: Option<&'a Segment>,
        overlap: Option<(&str, &Carry<'a>)>,
        item: Item<'a>,
        key: &UnitKey<'a>,
    ) -> Open<'a> {
        let mut text = String::new();
        if let Some(header) = header {
            text.push_str(&header.text);
            text.push_str(SEGMENT_SEPARATOR);
        }
        let header_chars = text.chars().count();
        if let Some((overlap, carry)) = overlap {
            text.push_str(overlap);
            text.push_str(item.separator_after(&carry.last));
        }
        let content_start = text.len();
        let overlap_chars = text.chars().count() - header_chars;
        text.push_str(item.text);
        Open {
            key: key.clone(),
            tokens: (self.count)(&text),
            text,
            header,
            header_chars,
            overlap_chars,
            content_start,
            items: vec![item],
            before_last: (0, 0),
        }
    }

    /// Closes the open chunk; when `continuing`, the next chunk (of the same unit) may overlap it.
    fn flush(&mut self, continuing: bool) {
        let Some(open) = self.cur.take() else {
            return;
        };
        let last = *open
            .items
            .last()
            .expect("an open chunk has at least one item. This is a bug.");
        self.carry = continuing.then(|| {
            let content = open.text[open.content_start..].to_owned();
            let starts = if last.whole_segments_only() {
                item_starts(&open.items)
            } else {
                split::word_starts(&content, self.overlap + 1)
            };
            Carry {
                key: open.key.clone(),
                content,
                starts,
                last,
            }
        });
        let mut location = ChunkLocation::merge(open.items.iter().map(|i| &i.seg.location))
            .expect("an open chunk has at least one item. This is a bug.");
        if let Some(header) = open.header {
            location.extend_with_header(&header.location);
        }
        self.chunks.push(Chunk {
            ordinal: to_u32(self.chunks.len()),
            text: open.text,
            location,
            token_count: to_u32(open.tokens),
            overlap_chars: to_u32(open.overlap_chars),
            header_chars: to_u32(open.header_chars),
        });
    }
}

/// Byte offsets of the items after the first in the content they make up.
fn item_starts(items: &[Item<'_>]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut offset = 0;
    let mut prev: Option<&Item<'_>> = None;
    for item in items {
        if let Some(p) = prev {
            offset += item.separator_after(p).len();
            starts.push(offset);
        }
        offset += item.text.len();
        prev = Some(item);
    }
    starts
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
