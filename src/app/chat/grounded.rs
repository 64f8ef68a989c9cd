//! Grounded prompts for chat with files: numbered sources chosen within a token budget, the instructions
//! to cite them (worded per model family), reading the citations back out of the answer, and the quote of
//! each source that best matches the question. Pure functions.

use std::collections::BTreeSet;
use std::ops::Range;

use serde_json::Value;

use crate::chunk::ChunkLocation;
use crate::models::chat::{ChatMessage, Role};

/// How a model family is asked. Small models follow a short rule with an example better than a long rule;
/// Qwen2.5 answers a bare `[1]` unless it is shown an answer in words and reminded after the question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Qwen2 / Qwen2.5 instruct models.
    Qwen,
    /// SmolLM / SmolLM2 instruct models.
    SmolLm,
    /// Any other model (remote providers included).
    Generic,
}

impl Family {
    /// The family of a model id.
    pub fn of(model_id: &str) -> Family {
        let id = model_id.to_ascii_lowercase();
        if id.contains("qwen") {
            Family::Qwen
        } else if id.contains("smollm") {
            Family::SmolLm
        } else {
            Family::Generic
        }
    }
}

/// Which answer a prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// The fact in words with `[n]` after it.
    Cited,
    /// The fact in words only: the retry when a cited answer came back as markers alone (the server adds
    /// the citation).
    Plain,
}

/// The system instructions of a family and style.
fn instructions(family: Family, style: Style) -> &'static str {
    match (family, style) {
        (Family::Generic, Style::Cited) => {
            "Answer the question using only the numbered sources below. \
             Cite the source of each fact with its number in square brackets, like [1]. \
             If the sources do not contain the answer, say that you do not know."
        }
        (Family::Qwen | Family::SmolLm, Style::Cited) => {
            "You answer questions about the user's documents. Use only the numbered sources. \
             Write the answer as a short sentence that states the fact in words, then the number of its \
             source in square brackets. For example, if source [2] says how long a bridge is and the \
             question asks it, answer like this: The bridge is 120 metres long [2]. \
             If the sources do not contain the answer, say that you do not know."
        }
        (_, Style::Plain) => {
            "You answer questions about the user's documents. Using only the text below, answer in one \
             short sentence that states the fact in words. If the text does not contain the answer, say \
             that you do not know."
        }
    }
}

/// Said again after the question, where a small model reads it last.
fn reminder(family: Family, style: Style) -> Option<&'static str> {
    match (family, style) {
        (Family::Qwen, Style::Cited) => {
            Some("Answer in a full sentence with the fact in words, then cite it like [1].")
        }
        (Family::SmolLm, Style::Cited) => {
            Some("Answer in one sentence and cite the source like [1].")
        }
        (Family::Generic, Style::Cited) | (_, Style::Plain) => None,
    }
}

/// A chunk that may become a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// `<file id>#<ordinal>`.
    pub chunk_id: String,
    /// Its file.
    pub file_id: String,
    /// The file's name.
    pub filename: String,
    /// Where the chunk is (a [`ChunkLocation`] as JSON).
    pub location: Value,
    /// Its text.
    pub text: String,
    /// The part of `text` (a byte range) the prompt gives when the whole chunk would take the room of
    /// several sources: the sentences best matching the question ([`excerpt`]). `None`: the whole text.
    pub excerpt: Option<Range<usize>>,
}

/// A source as numbered in the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The number the answer cites, from 1.
    pub number: usize,
    /// What it is.
    pub chunk: Candidate,
}

/// A prompt with its sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Grounded {
    /// The conversation to send.
    pub messages: Vec<ChatMessage>,
    /// The sources in it, numbered from 1.
    pub sources: Vec<Source>,
    /// Tokens of source text in the prompt.
    pub context_tokens: usize,
}

/// Tokens of an excerpt: the sentence that best matches the question with those around it, about three.
pub const EXCERPT_TOKENS: usize = 80;
/// Excerpts a source given whole must leave room for after it.
const EXCERPTS_KEPT: usize = 2;

/// Takes candidates in order while they fit `budget` tokens, at most `max_sources` of them. When they do
/// not all fit whole, the first goes whole and each later one whole only while room for
/// [`EXCERPTS_KEPT`] excerpts remains after it, else as its [`excerpt`] for `question`: several places of
/// a file in view beat one more whole chunk (the evidence is one sentence; the best hit is rarely wrong
/// twice, but its neighbours and the next hits are where it is when it is). A candidate that fits in
/// neither form is skipped for smaller ones after it.
pub fn select(
    candidates: Vec<Candidate>,
    budget: usize,
    max_sources: usize,
    question: &str,
    count: &dyn Fn(&str) -> usize,
) -> (Vec<Candidate>, usize) {
    let all_fit = candidates.len() <= max_sources
        && candidates
            .iter()
            .enumerate()
            .map(|(i, c)| count(&source_block(i + 1, c)))
            .sum::<usize>()
            <= budget;
    let reserve = EXCERPT_TOKENS * EXCERPTS_KEPT;
    let mut used = 0;
    let mut out = Vec::new();
    for mut c in candidates {
        if out.len() == max_sources {
            break;
        }
        let n = count(&source_block(out.len() + 1, &c));
        let room_after = if all_fit || out.is_empty() {
            0
        } else {
            reserve
        };
        if used + n + room_after <= budget {
            used += n;
            out.push(c);
            continue;
        }
        let range = excerpt(&c.text, question, EXCERPT_TOKENS, count);
        if range.len() < c.text.trim().len() {
            c.excerpt = Some(range);
        }
        let n = count(&source_block(out.len() + 1, &c));
        if used + n <= budget {
            used += n;
            out.push(c);
        }
    }
    (out, used)
}

/// The part of `text` a prompt gives for `question` in about `max_tokens`: its sentence (or line, or row)
/// sharing the most words with the question, then the ones after and before it in turn while they fit.
/// When no sentence shares a word, the start of the text.
pub fn excerpt(
    text: &str,
    question: &str,
    max_tokens: usize,
    count: &dyn Fn(&str) -> usize,
) -> Range<usize> {
    let spans = spans(text);
    let q = quote_terms(question);
    let Some(best) = (0..spans.len()).max_by_key(|&i| {
        // Ties go to the earlier sentence (max_by_key keeps the last maximum, so rank by position too).
        (
            overlap(&text[spans[i].0..spans[i].1], &q, &[]),
            std::cmp::Reverse(i),
        )
    }) else {
        return 0..0;
    };
    let (mut lo, mut hi) = (best, best);
    let range = |lo: usize, hi: usize| spans[lo].0..spans[hi].1;
    loop {
        let mut grew = false;
        for (l, h) in [(lo, hi + 1), (lo.wrapping_sub(1), hi)] {
            if l < spans.len() && h < spans.len() && count(&text[range(l, h)]) <= max_tokens {
                (lo, hi) = (l, h);
                grew = true;
            }
        }
        if !grew {
            return range(lo, hi);
        }
    }
}

/// A human label of a chunk location: `page 3`, `pages 2-3`, `Sheet1!A1:D9`, `Intro > Scope`, `lines 4-9`,
/// `0:12-0:30`.
pub fn location_label(location: &Value) -> String {
    let Ok(loc) = serde_json::from_value::<ChunkLocation>(location.clone()) else {
        return String::new();
    };
    let span = |what: &str, a: u32, b: u32| {
        if a == b {
            format!("{what} {a}")
        } else {
            format!("{what}s {a}-{b}")
        }
    };
    match loc {
        ChunkLocation::Pages { from, to, .. } => span("page", from, to),
        ChunkLocation::Slides { from, to } => span("slide", from, to),
        ChunkLocation::Cells { sheet, range } => format!("{sheet}!{range}"),
        ChunkLocation::Section { heading_path, .. } => heading_path.join(" > "),
        ChunkLocation::Lines { start, end } => span("line", start, end),
        ChunkLocation::Time { start, end } => format!("{}-{}", clock(start), clock(end)),
        ChunkLocation::Image => "image".into(),
    }
}

fn clock(secs: f64) -> String {
    // Whole seconds are precise enough for a label (non-negative, so the cast only drops the fraction).
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// One source as it appears in the prompt.
fn source_block(number: usize, c: &Candidate) -> String {
    let label = location_label(&c.location);
    let place = if label.is_empty() {
        c.filename.clone()
    } else {
        format!("{}, {label}", c.filename)
    };
    match &c.excerpt {
        Some(r) => format!(
            "[{number}] ({place})\n... {} ...\n",
            c.text[r.clone()].trim()
        ),
        None => format!("[{number}] ({place})\n{}\n", c.text.trim()),
    }
}

/// Builds the prompt: the instructions (plus the client's own system messages) as the system message,
/// earlier turns unchanged, and the sources before the last user message.
pub fn build(
    conversation: &[ChatMessage],
    chosen: Vec<Candidate>,
    context_tokens: usize,
    family: Family,
    style: Style,
) -> Grounded {
    let sources: Vec<Source> = chosen
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| Source {
            number: i + 1,
            chunk,
        })
        .collect();
    let mut system = instructions(family, style).to_owned();
    for m in conversation.iter().filter(|m| m.role == Role::System) {
        system.push_str("\n\n");
        system.push_str(&m.content);
    }
    let last_user = conversation.iter().rposition(|m| m.role == Role::User);
    let mut messages = vec![ChatMessage {
        role: Role::System,
        content: system,
    }];
    let blocks: String = sources
        .iter()
        .map(|s| source_block(s.number, &s.chunk))
        .collect::<Vec<_>>()
        .join("\n");
    for (i, m) in conversation.iter().enumerate() {
        if m.role == Role::System {
            continue;
        }
        if Some(i) == last_user {
            let mut content = format!("Sources:\n\n{blocks}\nQuestion: {}", m.content.trim());
            if let Some(r) = reminder(family, style) {
                content.push_str("\n\n");
                content.push_str(r);
            }
            messages.push(ChatMessage {
                role: Role::User,
                content,
            });
        } else {
            messages.push(m.clone());
        }
    }
    Grounded {
        messages,
        sources,
        context_tokens,
    }
}

/// The part of a source that best matches a question (and its answer): a sentence, a line or a table row,
/// with its place in the source's text as character offsets (`start` inclusive, `end` exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The quoted text.
    pub text: String,
    /// Offset of its first character in the chunk text, in characters (Unicode scalar values).
    pub start: usize,
    /// Offset just past its last character, in characters.
    pub end: usize,
}

/// Words too common to show which sentence answers.
const QUOTE_STOPWORDS: &[&str] = &[
    "a", "an", "the", "of", "in", "on", "at", "to", "for", "and", "or", "is", "are", "was", "were",
    "be", "it", "its", "this", "that", "what", "which", "who", "whom", "when", "where", "why",
    "how", "do", "does", "did", "i", "you", "my", "me", "we", "with", "by", "from", "as", "can",
    "there", "their", "has", "have", "about", "tell", "please", "file", "document", "say", "says",
    "said",
];

fn quote_terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !QUOTE_STOPWORDS.contains(&w.as_str()))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Splits `text` into sentences and lines: `(start, end)` byte ranges, trimmed, non-empty.
fn spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next_is_space = chars.peek().is_none_or(|(_, n)| n.is_whitespace());
        let end = if c == '\n' {
            Some(i)
        } else if matches!(c, '.' | '?' | '!' | ';') && next_is_space {
            Some(i + c.len_utf8())
        } else {
            None
        };
        if let Some(end) = end {
            out.push((start, end));
            start = i + c.len_utf8();
        }
    }
    out.push((start, text.len()));
    out.into_iter()
        .filter_map(|(a, b)| {
            let piece = &text[a..b];
            let lead = piece.len() - piece.trim_start().len();
            let trimmed = piece.trim();
            (!trimmed.is_empty()).then(|| (a + lead, a + lead + trimmed.len()))
        })
        .collect()
}

/// The sentence (or line, or table row) of `text` sharing the most words with the question and the answer
/// (the answer's own words count most: they are the fact), ties to the earlier one; `None` for empty text.
pub fn best_quote(text: &str, question: &str, answer: &str) -> Option<Quote> {
    let q = quote_terms(question);
    let a = quote_terms(&strip_citations(answer));
    let mut best: Option<((usize, usize), usize)> = None;
    for (s, e) in spans(text) {
        let score = overlap(&text[s..e], &q, &a);
        if best.is_none_or(|(_, b)| score > b) {
            best = Some(((s, e), score));
        }
    }
    let ((s, e), _) = best?;
    let start = text[..s].chars().count();
    let quoted = &text[s..e];
    Some(Quote {
        text: quoted.to_owned(),
        start,
        end: start + quoted.chars().count(),
    })
}

/// How well `text` matches a question and its answer (the measure [`best_quote`] maximises).
pub fn quote_score(text: &str, question: &str, answer: &str) -> usize {
    overlap(
        text,
        &quote_terms(question),
        &quote_terms(&strip_citations(answer)),
    )
}

/// Words of the question count 1; words only the answer has count 3 (they are the fact it found). A text
/// made only of the question's words (a heading such as "Inventory Table" for "how many pears are in the
/// inventory table?") says nothing the question did not: it scores 0.
fn overlap(text: &str, q: &[String], a: &[String]) -> usize {
    let terms = quote_terms(text);
    if terms.iter().all(|w| q.contains(w)) {
        return 0;
    }
    terms
        .iter()
        .map(|w| {
            if q.contains(w) {
                1
            } else if a.contains(w) {
                3
            } else {
                0
            }
        })
        .sum()
}

/// The answer without its `[n]` markers.
pub fn strip_citations(answer: &str) -> String {
    let mut out = String::with_capacity(answer.len());
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if is_marker(&after[..close]) => rest = &after[close + 1..],
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// True for the inside of a citation marker: `1`, `1, 2`, `Source 3`.
pub fn is_marker(inside: &str) -> bool {
    let t = inside.trim();
    let t = t
        .strip_prefix("Source")
        .or_else(|| t.strip_prefix("source"))
        .unwrap_or(t);
    !t.trim().is_empty()
        && t.split([',', ';'])
            .all(|p| !p.trim().is_empty() && p.trim().chars().all(|c| c.is_ascii_digit()))
}

/// The source numbers an answer cites: `[1]`, `[1, 2]`, `[1][3]`, `[Source 2]`.
pub fn cited_numbers(answer: &str) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        let inside = &rest[..close];
        let inside = inside
            .trim()
            .strip_prefix("Source")
            .or_else(|| inside.trim().strip_prefix("source"))
            .unwrap_or(inside);
        let numbers: Vec<Option<usize>> = inside
            .split([',', ';'])
            .map(|p| p.trim().parse().ok())
            .collect();
        if numbers.iter().all(Option::is_some) {
            out.extend(numbers.into_iter().flatten());
        }
        rest = &rest[close..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cand(id: &str, text: &str, location: Value) -> Candidate {
        Candidate {
            chunk_id: format!("{id}#0"),
            file_id: id.into(),
            filename: format!("{id}.pdf"),
            location,
            text: text.into(),
            excerpt: None,
        }
    }

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn selection_respects_budget_and_count() {
        let c = vec![
            cand("a", "one two three", json!(null)),
            cand("b", &"x ".repeat(50), json!(null)),
            cand("c", "four five", json!(null)),
            cand("d", "six", json!(null)),
        ];
        let (chosen, used) = select(c.clone(), 20, 10, "", &words);
        let ids: Vec<_> = chosen.iter().map(|c| c.file_id.as_str()).collect();
        assert_eq!(
            ids,
            ["a", "c", "d"],
            "the long one is skipped for smaller ones"
        );
        assert!(used <= 20);
        let (chosen, _) = select(c, 1000, 2, "", &words);
        assert_eq!(chosen.len(), 2);
    }

    #[test]
    fn later_sources_are_excerpts_around_the_question_words() {
        let long = |id: &str, fact: &str| {
            let filler = "Nothing here is relevant to anything at all. ".repeat(20);
            cand(id, &format!("{filler}{fact} {filler}"), json!(null))
        };
        let c = vec![
            long("a", "The first chunk is given whole."),
            long("b", "The default left margin is 3,0 cm."),
            long("c", "The top margin is 2,5 cm."),
        ];
        let question = "What is the default left margin?";
        let (chosen, used) = select(c, 500, 8, question, &words);
        assert!(used <= 500);
        let ids: Vec<_> = chosen.iter().map(|c| c.file_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"], "one whole chunk and two excerpts fit");
        assert_eq!(chosen[0].excerpt, None);
        let b = &chosen[1];
        let shown = &b.text[b.excerpt.clone().expect("an excerpt")];
        assert!(
            shown.contains("The default left margin is 3,0 cm."),
            "{shown}"
        );
        assert!(words(shown) <= EXCERPT_TOKENS, "{shown}");
        let ask = [ChatMessage {
            role: Role::User,
            content: question.into(),
        }];
        let g = build(&ask, chosen, used, Family::Qwen, Style::Cited);
        let blocks = &g.messages.last().expect("a message").content;
        assert!(blocks.contains("[2] (b.pdf)\n... "), "{blocks}");
        // Candidates that fit whole together stay whole.
        let short = vec![
            cand("a", "one two", json!(null)),
            cand("b", "three", json!(null)),
        ];
        let (chosen, _) = select(short, 500, 8, question, &words);
        assert!(chosen.iter().all(|c| c.excerpt.is_none()));
    }

    #[test]
    fn prompt_numbers_sources_before_the_question() {
        let convo = vec![
            ChatMessage {
                role: Role::System,
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: Role::User,
                content: "When was it founded?".into(),
            },
        ];
        let g = build(
            &convo,
            vec![
                cand(
                    "a",
                    "Founded in 1901.",
                    json!({"type": "pages", "from": 2, "to": 2, "ocr": false}),
                ),
                cand(
                    "b",
                    "Sales doubled.",
                    json!({"type": "cells", "sheet": "S", "range": "A1:B2"}),
                ),
            ],
            10,
            Family::Generic,
            Style::Cited,
        );
        assert_eq!(g.messages.len(), 2);
        assert!(g.messages[0].content.ends_with("Be brief."));
        let user = &g.messages[1].content;
        assert!(
            user.contains("[1] (a.pdf, page 2)\nFounded in 1901."),
            "{user}"
        );
        assert!(user.contains("[2] (b.pdf, S!A1:B2)"), "{user}");
        assert!(user.ends_with("Question: When was it founded?"));
        assert_eq!(g.sources[1].number, 2);
    }

    #[test]
    fn families_get_their_own_wording() {
        assert_eq!(Family::of("qwen2.5-coder-0.5b-instruct"), Family::Qwen);
        assert_eq!(Family::of("SmolLM2-135M-Instruct"), Family::SmolLm);
        assert_eq!(Family::of("gpt-4o-mini"), Family::Generic);
        let convo = [ChatMessage {
            role: Role::User,
            content: "How long is it?".into(),
        }];
        let qwen = build(
            &convo,
            vec![cand("a", "It is 9 m.", json!(null))],
            5,
            Family::Qwen,
            Style::Cited,
        );
        assert!(
            qwen.messages[0]
                .content
                .contains("answer like this: The bridge is 120 metres long [2].")
        );
        assert!(
            qwen.messages[1].content.ends_with("then cite it like [1]."),
            "{}",
            qwen.messages[1].content
        );
        let plain = build(
            &convo,
            vec![cand("a", "It is 9 m.", json!(null))],
            5,
            Family::Qwen,
            Style::Plain,
        );
        assert!(!plain.messages[0].content.contains("square brackets"));
        assert!(
            plain.messages[1]
                .content
                .ends_with("Question: How long is it?")
        );
    }

    #[test]
    fn quote_is_the_best_matching_sentence_with_offsets() {
        let text = "Inventory Table\nApples: 3\nPears: 7\nPlums: 2";
        let q = best_quote(
            text,
            "How many pears are in the inventory table?",
            "The inventory table shows 7 pears [1].",
        )
        .expect("quote");
        assert_eq!(q.text, "Pears: 7");
        let chars: Vec<char> = text.chars().collect();
        assert_eq!(chars[q.start..q.end].iter().collect::<String>(), "Pears: 7");
        let t = "Ünïcode first. The key is blue! Then more.";
        let q = best_quote(t, "what colour is the key", "").expect("quote");
        assert_eq!(q.text, "The key is blue!");
        assert_eq!(
            t.chars()
                .skip(q.start)
                .take(q.end - q.start)
                .collect::<String>(),
            q.text
        );
        assert!(best_quote("  ", "x", "y").is_none());
    }

    #[test]
    fn markers_are_stripped() {
        assert_eq!(
            strip_citations("It is 7 [1] [2, 3]. See [a]."),
            "It is 7  . See [a]."
        );
        assert!(is_marker("1, 2") && is_marker("Source 3") && !is_marker("a") && !is_marker(""));
    }

    #[test]
    fn citations_are_read_back() {
        let n = cited_numbers("In 1901 [1]. Also [2, 3] and [Source 4][5]; not [a] or [1a].");
        assert_eq!(n.into_iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert!(cited_numbers("no brackets [").is_empty());
    }

    #[test]
    fn labels() {
        assert_eq!(
            location_label(&json!({"type": "pages", "from": 2, "to": 3, "ocr": false})),
            "pages 2-3"
        );
        assert_eq!(
            location_label(&json!({"type": "time", "start": 61.0, "end": 75.4})),
            "1:01-1:15"
        );
        assert_eq!(
            location_label(
                &json!({"type": "section", "heading_path": ["A", "B"], "blocks": {"from": 1, "to": 2}})
            ),
            "A > B"
        );
    }
}
