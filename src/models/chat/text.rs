//! Turning generated tokens into text deltas: incremental detokenisation that never splits a UTF-8 character,
//! and stop sequences that are held back while they may still be starting and are never sent.

use super::gguf_tokenizer::{GgufTokenizer, TokenizerError};

/// Decodes a growing token sequence into text pieces, looking at a short window only (the tokens since the
/// last complete piece), so each step costs the same however long the answer is.
#[derive(Debug, Default)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    /// Start of the tokens decoded as context for the next piece.
    prefix: usize,
    /// End of the tokens already turned into text.
    read: usize,
}

impl IncrementalDecoder {
    /// Adds a token and returns the new text it completes (empty while a character is incomplete).
    pub fn push(&mut self, tokenizer: &GgufTokenizer, id: u32) -> Result<String, TokenizerError> {
        self.ids.push(id);
        let before = tokenizer.decode(&self.ids[self.prefix..self.read])?;
        let after = tokenizer.decode(&self.ids[self.prefix..])?;
        if after.len() > before.len() && !after.ends_with('\u{FFFD}') {
            let piece = after.get(before.len()..).unwrap_or_default().to_owned();
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(piece)
        } else {
            Ok(String::new())
        }
    }
}

/// Holds back text that may be the start of a stop sequence and cuts the answer at the first one.
#[derive(Debug)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

/// What [`StopMatcher::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Matched {
    /// Text that is safe to send (possibly empty); generation goes on.
    Continue(String),
    /// A stop sequence was completed: the text before it, to send as the last delta.
    Stop(String),
}

impl StopMatcher {
    /// A matcher for these stop sequences (empty ones are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Adds generated text.
    pub fn push(&mut self, text: &str) -> Matched {
        self.pending.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first {
            let out = self.pending[..at].to_owned();
            self.pending.clear();
            return Matched::Stop(out);
        }
        // Hold back the longest tail that is the beginning of some stop sequence.
        let hold = (1..=self.pending.len())
            .rev()
            .filter(|&n| self.pending.is_char_boundary(self.pending.len() - n))
            .find(|&n| {
                let tail = &self.pending[self.pending.len() - n..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(0);
        let cut = self.pending.len() - hold;
        let out = self.pending[..cut].to_owned();
        self.pending.drain(..cut);
        Matched::Continue(out)
    }

    /// The text still held back, when generation ends for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> StopMatcher {
        StopMatcher::new(&s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn without_stops_everything_passes() {
        let mut m = stops(&[]);
        assert_eq!(m.push("hello"), Matched::Continue("hello".into()));
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn a_stop_split_over_pieces_is_held_back_and_cut() {
        let mut m = stops(&["END"]);
        assert_eq!(m.push("one two E"), Matched::Continue("one two ".into()));
        assert_eq!(m.push("N"), Matched::Continue(String::new()));
        assert_eq!(m.push("D three"), Matched::Stop(String::new()));
    }

    #[test]
    fn a_false_start_is_released() {
        let mut m = stops(&["END"]);
        assert_eq!(m.push("EN"), Matched::Continue(String::new()));
        assert_eq!(m.push("x"), Matched::Continue("ENx".into()));
        assert_eq!(m.push("E"), Matched::Continue(String::new()));
        assert_eq!(m.finish(), "E");
    }

    #[test]
    fn the_earliest_of_several_stops_wins_and_multibyte_text_is_kept_whole() {
        let mut m = stops(&["\n\n", "é!"]);
        assert_eq!(m.push("café! and\n\n"), Matched::Stop("caf".into()));
        let mut m = stops(&["ü"]);
        assert_eq!(m.push("éa"), Matched::Continue("éa".into()));
    }
}
