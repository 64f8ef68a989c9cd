//! Splitting text that does not fit a chunk, with `text-splitter` sized by our token counter, and the places
//! where an overlap may start.

use text_splitter::{ChunkConfig as SplitConfig, ChunkSizer, TextSplitter};

/// Sizes text for `text-splitter` with the chunker's counter, so its pieces are measured exactly as chunks are.
struct CountSizer<'a>(&'a dyn Fn(&str) -> usize);

impl ChunkSizer for CountSizer<'_> {
    fn size(&self, chunk: &str) -> usize {
        (self.0)(chunk)
    }
}

fn splitter(capacity: usize, count: &dyn Fn(&str) -> usize) -> TextSplitter<CountSizer<'_>> {
    TextSplitter::new(SplitConfig::new(capacity.max(1)).with_sizer(CountSizer(count)))
}

/// The first piece of `text` that counts at most `capacity` tokens, with its byte offset in `text`; it ends at
/// the highest semantic boundary (line, sentence, word) that fits. `None` when not even one word fits.
pub(super) fn first_piece<'t>(
    text: &'t str,
    capacity: usize,
    count: &dyn Fn(&str) -> usize,
) -> Option<(usize, &'t str)> {
    let first = splitter(capacity, count).chunk_indices(text).next()?;
    (count(first.1) <= capacity).then_some(first)
}

/// `text` cut into pieces of at most `capacity` tokens each (byte offset, piece), at the highest semantic
/// boundaries that fit; whitespace at the cuts is trimmed. A word is cut only when it alone is longer than
/// `limit` (the whole chunk budget), and then between characters: no piece ever counts more than `limit`
/// unless a single character does.
pub(super) fn pieces<'t>(
    text: &'t str,
    capacity: usize,
    limit: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<(usize, &'t str)> {
    let mut out = Vec::new();
    for (offset, piece) in splitter(capacity, count).chunk_indices(text) {
        if count(piece) <= limit {
            out.push((offset, piece));
        } else {
            bisect(piece, offset, limit, count, &mut out);
        }
    }
    out
}

/// Halves `piece` at a character boundary until every part fits `limit` (only for a "word" longer than a whole
/// chunk, e.g. a base64 blob, which `text-splitter` leaves whole when nothing smaller fits its capacity).
fn bisect<'t>(
    piece: &'t str,
    offset: usize,
    limit: usize,
    count: &dyn Fn(&str) -> usize,
    out: &mut Vec<(usize, &'t str)>,
) {
    let chars = piece.chars().count();
    if chars <= 1 || count(piece) <= limit {
        out.push((offset, piece));
        return;
    }
    let mid = piece
        .char_indices()
        .nth(chars / 2)
        .map_or(piece.len(), |(i, _)| i);
    bisect(&piece[..mid], offset, limit, count, out);
    bisect(&piece[mid..], offset + mid, limit, count, out);
}

/// Byte offsets in `text` where an overlap may start: the starts of its words (after whitespace), at most the
/// last `keep` of them, ascending.
pub(super) fn word_starts(text: &str, keep: usize) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut after_space = false;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if after_space && !space {
            starts.push(i);
        }
        after_space = space;
    }
    let skip = starts.len().saturating_sub(keep);
    starts.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    #[test]
    fn pieces_are_bounded_and_keep_every_word() {
        let text = (0..1000)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let parts = pieces(&text, 50, 60, &words);
        assert!(parts.len() >= 20);
        assert!(parts.iter().all(|(_, p)| words(p) <= 50));
        let joined: Vec<&str> = parts.iter().map(|(_, p)| *p).collect();
        assert_eq!(joined.join(" "), text);
        for (offset, piece) in parts {
            assert_eq!(&text[offset..offset + piece.len()], piece);
        }
    }

    #[test]
    fn a_word_longer_than_the_limit_is_cut_between_characters() {
        let by_chars = |t: &str| t.chars().count();
        let text = format!("short {} tail", "é".repeat(100));
        let parts = pieces(&text, 30, 30, &by_chars);
        assert!(parts.iter().all(|(_, p)| by_chars(p) <= 30));
        let rebuilt: String = parts.iter().map(|(_, p)| *p).collect();
        assert_eq!(rebuilt.replace(' ', ""), text.replace(' ', ""));
    }

    #[test]
    fn first_piece_fits_and_word_starts_are_after_whitespace() {
        let text = "one two three four five";
        assert_eq!(first_piece(text, 2, &words), Some((0, "one two")));
        assert_eq!(first_piece(text, 0, &words), None);
        assert_eq!(word_starts(text, 10), vec![4, 8, 14, 19]);
        assert_eq!(word_starts(text, 2), vec![14, 19]);
        assert_eq!(word_starts("  lead\n\ttab", 10), vec![2, 8]);
    }
}
