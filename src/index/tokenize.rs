//! Analyzers of the text index.
//!
//! Two fields hold each chunk's text:
//! - `text`, analyzed by [`ENGLISH_ANALYZER`]: split on non-alphanumerics, lowercased, English
//!   Snowball stemming ("running" and "runs" both become "run"). Words of any alphabetic script
//!   (Cyrillic, Greek, Arabic, ...) are also split and lowercased here, so they match exactly.
//! - `text_ml`, analyzed by [`MULTILINGUAL_ANALYZER`] ([`MultilingualTokenizer`]): lowercased,
//!   unstemmed words, plus overlapping character bigrams over runs of CJK characters.
//!
//! Why bigrams: Chinese and Japanese are written without spaces, so the English analyzer sees a
//! whole sentence as one token and a query for a word inside it never matches. Splitting CJK
//! runs into overlapping bigrams (as Lucene's `CJKAnalyzer` does) makes any phrase of two or
//! more characters findable without a dictionary segmenter; a one-character run becomes a
//! unigram. The unstemmed words also give an exact-form match a small boost over a stem-only
//! match. Not covered: scripts without spaces that are not CJK (e.g. Thai).

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer, Token,
    TokenStream, Tokenizer,
};

/// Name under which the English stemming analyzer is registered.
pub const ENGLISH_ANALYZER: &str = "docpipe_en";
/// Name under which the multilingual (words + CJK bigrams) analyzer is registered.
pub const MULTILINGUAL_ANALYZER: &str = "docpipe_ml";
/// Longer tokens (in bytes) are dropped: they are hashes, base64 or garbage, not words.
const MAX_TOKEN_BYTES: usize = 40;

/// The English stemming analyzer of the `text` field.
pub fn english_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The multilingual analyzer of the `text_ml` field.
pub fn multilingual_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(MultilingualTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .build()
}

/// True for characters of scripts written without spaces between words that we bigram:
/// Han ideographs, Hiragana, Katakana, and Hangul syllables.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x31F0..=0x31FF    // Katakana phonetic extensions
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF66..=0xFF9F    // Halfwidth Katakana
        | 0x20000..=0x2FA1F  // CJK extensions B..F and supplements
    )
}

/// Splits text into words (runs of non-CJK alphanumerics) and overlapping bigrams of CJK runs.
#[derive(Clone, Default)]
pub struct MultilingualTokenizer {
    tokens: Vec<Token>,
}

/// The token stream of [`MultilingualTokenizer`]: tokens are computed up front.
pub struct MultilingualTokenStream<'a> {
    tokens: &'a mut Vec<Token>,
    /// Index of the next token to return; the current one is `next - 1`.
    next: usize,
}

impl Tokenizer for MultilingualTokenizer {
    type TokenStream<'a> = MultilingualTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> MultilingualTokenStream<'a> {
        self.tokens.clear();
        tokenize_into(text, &mut self.tokens);
        MultilingualTokenStream {
            tokens: &mut self.tokens,
            next: 0,
        }
    }
}

impl TokenStream for MultilingualTokenStream<'_> {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next.saturating_sub(1)]
    }

    fn token_mut(&mut self) -> &mut Token {
        let i = self.next.saturating_sub(1);
        &mut self.tokens[i]
    }
}

/// What kind of run a character belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    Word,
    Cjk,
    Other,
}

fn run_of(c: char) -> Run {
    if is_cjk(c) {
        Run::Cjk
    } else if c.is_alphanumeric() {
        Run::Word
    } else {
        Run::Other
    }
}

fn tokenize_into(text: &str, out: &mut Vec<Token>) {
    let mut start = 0;
    let mut current = Run::Other;
    for (offset, c) in text.char_indices() {
        let run = run_of(c);
        if run != current {
            emit_run(text, start, offset, current, out);
            start = offset;
            current = run;
        }
    }
    emit_run(text, start, text.len(), current, out);
}

fn push(out: &mut Vec<Token>, text: &str, from: usize, to: usize) {
    out.push(Token {
        offset_from: from,
        offset_to: to,
        position: out.len(),
        text: text[from..to].to_owned(),
        position_length: 1,
    });
}

fn emit_run(text: &str, from: usize, to: usize, run: Run, out: &mut Vec<Token>) {
    match run {
        Run::Other => {}
        Run::Word => push(out, text, from, to),
        Run::Cjk => {
            let offsets: Vec<usize> = text[from..to]
                .char_indices()
                .map(|(i, _)| from + i)
                .chain(std::iter::once(to))
                .collect();
            // offsets has one more entry than the run has characters.
            if offsets.len() == 2 {
                push(out, text, offsets[0], offsets[1]);
            }
            for w in offsets.windows(3) {
                push(out, text, w[0], w[2]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    #[test]
    fn cjk_runs_become_bigrams_and_words_stay_whole() {
        let mut a = multilingual_analyzer();
        assert_eq!(
            tokens(&mut a, "Hello 北京大学 Привет 中"),
            ["hello", "北京", "京大", "大学", "привет", "中"]
        );
    }

    #[test]
    fn english_analyzer_stems() {
        let mut a = english_analyzer();
        assert_eq!(tokens(&mut a, "Running runs"), ["run", "run"]);
    }

    #[test]
    fn offsets_point_at_the_source_text() {
        let text = "ab 東京都";
        let mut t = MultilingualTokenizer::default();
        let mut stream = t.token_stream(text);
        let mut spans = Vec::new();
        while stream.advance() {
            let tok = stream.token();
            spans.push(&text[tok.offset_from..tok.offset_to]);
        }
        assert_eq!(spans, ["ab", "東京", "京都"]);
    }
}
