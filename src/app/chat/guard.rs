//! The answer guard of chat with files: a grounded answer that is only citation markers (`[1] [1] [1]`),
//! empty, or cut off mid-citation never reaches the client. It sits between the model's stream and the
//! client's: it holds the start of the answer until it says something in words, drops a source header the
//! model echoed, holds a `[` until its marker closes, drops a marker that repeats the one just before it or
//! cites no source, and drops a marker cut off by `max_tokens`. An answer with no words at all is asked again
//! with the plain (citation-free) prompt and the server cites the source that best matches it (as it does for
//! an answer in words that cites nothing); when even that has no words, the answer quotes the best matching
//! evidence. Every repair is counted in `docpipe_answers_repaired_total`.

use crate::models::chat::{
    ChatError, FinishReason, GenerationEvent, GenerationRequest, GenerationStream,
    SharedChatBackend, Usage,
};
use crate::telemetry::metrics::answer_repaired;

use super::grounded::{Quote, Source, best_quote, cited_numbers, is_marker, strip_citations};

/// Letters or digits (outside markers) an answer needs before its start is released to the client.
const RELEASE_AFTER: usize = 6;
/// Longest unclosed `[...` held back waiting for its `]`.
const MAX_HELD_MARKER: usize = 16;
/// Events buffered towards the client.
const BUFFER: usize = 64;

/// What the guard needs to repair an answer without words.
pub struct Repair {
    /// The model that answered.
    pub backend: SharedChatBackend,
    /// The same question with the plain prompt.
    pub request: GenerationRequest,
    /// The sources of the prompt.
    pub sources: Vec<Source>,
    /// The user's question.
    pub question: String,
}

/// Wraps `inner` in the guard; the returned stream is what the client reads. Dropping it cancels `inner`.
pub fn guard(inner: GenerationStream, repair: Repair) -> GenerationStream {
    let (tx, rx) = tokio::sync::mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let task = run(inner, repair, &tx);
        tokio::select! {
            () = tx.closed() => {},
            () = task => {},
        }
    });
    rx
}

type Sender = tokio::sync::mpsc::Sender<Result<GenerationEvent, ChatError>>;

async fn run(mut inner: GenerationStream, repair: Repair, tx: &Sender) {
    let quotes = repair
        .sources
        .iter()
        .map(|s| {
            best_quote(&s.chunk.text, &repair.question, "").map_or_else(String::new, |q| q.text)
        })
        .collect();
    let mut answer = Answer::with_quotes(quotes);
    while let Some(event) = inner.recv().await {
        match event {
            Ok(GenerationEvent::Delta(d)) => {
                let out = answer.push(&d);
                if !out.is_empty() && tx.send(Ok(GenerationEvent::Delta(out))).await.is_err() {
                    return;
                }
            }
            Ok(GenerationEvent::Done {
                finish_reason,
                usage,
                model,
            }) => {
                let (out, problems) = answer.finish();
                for p in &problems {
                    answer_repaired(p);
                }
                if let Some(mut out) = out {
                    // An answer in words that cites nothing gets the source that best matches it.
                    if !answer.had_markers
                        && let Some(n) =
                            best_source(&repair.sources, &repair.question, &answer.emitted)
                    {
                        out.push_str(&format!(" [{n}]"));
                        answer_repaired("uncited");
                    }
                    if !out.is_empty() {
                        let _ = tx.send(Ok(GenerationEvent::Delta(out))).await;
                    }
                    let _ = tx
                        .send(Ok(GenerationEvent::Done {
                            finish_reason,
                            usage,
                            model,
                        }))
                        .await;
                    return;
                }
                let problem = if answer.had_markers {
                    "citations_only"
                } else {
                    "empty"
                };
                answer_repaired(problem);
                tracing::info!(problem, "grounded answer had no words; asking again");
                let (text, finish, retry_usage) =
                    retry(repair.backend.clone(), repair.request).await;
                let fixed = repaired_answer(&repair.sources, &repair.question, &text);
                let _ = tx.send(Ok(GenerationEvent::Delta(fixed))).await;
                let _ = tx
                    .send(Ok(GenerationEvent::Done {
                        finish_reason: finish.unwrap_or(finish_reason),
                        usage: Usage {
                            prompt_tokens: usage.prompt_tokens + retry_usage.prompt_tokens,
                            completion_tokens: usage.completion_tokens
                                + retry_usage.completion_tokens,
                        },
                        model,
                    }))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// Runs the plain prompt to the end: its text, finish reason and usage (empty on failure: the repair then
/// quotes the evidence).
async fn retry(
    backend: SharedChatBackend,
    request: GenerationRequest,
) -> (String, Option<FinishReason>, Usage) {
    let mut text = String::new();
    let Ok(mut stream) = backend.generate(request) else {
        return (text, None, Usage::default());
    };
    while let Some(event) = stream.recv().await {
        match event {
            Ok(GenerationEvent::Delta(d)) => text.push_str(&d),
            Ok(GenerationEvent::Done {
                finish_reason,
                usage,
                ..
            }) => return (text, Some(finish_reason), usage),
            Err(e) => {
                tracing::warn!(error = %e, "repair generation failed");
                break;
            }
        }
    }
    (text, None, Usage::default())
}

/// The number of the source whose best quote matches the answer (and question) best, when one matches at all.
fn best_source(sources: &[Source], question: &str, answer: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for s in sources {
        if let Some((_, score)) = scored_quote(&s.chunk.text, question, answer)
            && score > 0
            && best.is_none_or(|(_, b)| score > b)
        {
            best = Some((s.number, score));
        }
    }
    best.map(|(n, _)| n)
}

/// The answer a client gets when the model's had no words: the retry's words citing the source that best
/// matches them, or else the best matching evidence quoted.
pub fn repaired_answer(sources: &[Source], question: &str, retry_text: &str) -> String {
    let words = strip_citations(retry_text).trim().to_owned();
    let best = |answer: &str| -> Option<(usize, Quote)> {
        let mut best: Option<(usize, Quote, usize)> = None;
        for s in sources {
            if let Some((q, score)) = scored_quote(&s.chunk.text, question, answer)
                && best.as_ref().is_none_or(|(_, _, b)| score > *b)
            {
                best = Some((s.number, q, score));
            }
        }
        best.map(|(n, q, _)| (n, q))
    };
    if alnum(&words) >= RELEASE_AFTER.min(2) {
        return match best(&words) {
            Some((n, _)) => format!("{words} [{n}]"),
            None => words,
        };
    }
    match best("") {
        Some((n, q)) => format!(
            "The closest evidence in the sources is [{n}]: \"{}\"",
            q.text
        ),
        None => "I do not know: the sources do not contain the answer.".to_owned(),
    }
}

/// The best quote of `text` with its match score.
fn scored_quote(text: &str, question: &str, answer: &str) -> Option<(Quote, usize)> {
    let q = best_quote(text, question, answer)?;
    let score = super::grounded::quote_score(&q.text, question, answer);
    Some((q, score))
}

fn alnum(s: &str) -> usize {
    s.chars().filter(|c| c.is_alphanumeric()).count()
}

/// Longest echo of a source header (`[1] (report.pdf, page 2)`) dropped from the start of an answer.
const MAX_ECHO: usize = 200;

/// The answer as streamed so far.
#[derive(Debug, Default)]
struct Answer {
    /// Sources in the prompt: a marker citing a higher number cites nothing and is dropped.
    sources: usize,
    /// The best quote of each source for the question (index = number - 1): what a marker standing where
    /// the fact belongs (`the command is [2].`) is followed by.
    quotes: Vec<String>,
    /// A marker stood in for the fact and got its quote.
    filled: bool,
    /// Released to the client.
    emitted: String,
    /// Received, not yet released.
    held: String,
    /// The answer contained a marker (for the repair's reason).
    had_markers: bool,
    /// A repeated marker, or one citing no source, was dropped.
    deduped: bool,
    /// The answer began by repeating a source's header.
    echoed: bool,
}

impl Answer {
    /// An answer over `sources` sources without quotes (the tests' shorthand).
    #[cfg(test)]
    fn new(sources: usize) -> Answer {
        Answer {
            sources,
            ..Answer::default()
        }
    }

    fn with_quotes(quotes: Vec<String>) -> Answer {
        Answer {
            sources: quotes.len(),
            quotes,
            ..Answer::default()
        }
    }

    /// Takes the next piece; returns what may go to the client now.
    fn push(&mut self, delta: &str) -> String {
        self.held.push_str(delta);
        if self.held.contains(']') {
            self.had_markers = true;
        }
        if self.emitted.is_empty() {
            match strip_header_echoes(&self.held) {
                Echo::Open => return String::new(),
                Echo::Stripped(rest) => {
                    if rest.len() < self.held.len() {
                        self.echoed = true;
                    }
                    self.held = rest;
                }
            }
        }
        if alnum(&strip_citations(&format!("{}{}", self.emitted, self.held))) < RELEASE_AFTER {
            return String::new();
        }
        // An open marker is held with the spaces before it, so a marker cut off at the end leaves no
        // trailing space behind.
        let cut = open_marker(&self.held)
            .filter(|&i| self.held.len() - i <= MAX_HELD_MARKER)
            .map_or(self.held.len(), |i| self.held[..i].trim_end().len());
        // A closed marker at the end is held until what follows shows whether it stands for the fact.
        let cut = match trailing_marker(&self.held) {
            Some(i) => cut.min(self.held[..i].trim_end().len()),
            None => cut,
        };
        let piece: String = self.held.drain(..cut).collect();
        self.release(&piece, false)
    }

    /// The end: what is left to release (`None` when the answer had no words) and the problems fixed.
    fn finish(&mut self) -> (Option<String>, Vec<&'static str>) {
        let mut problems = Vec::new();
        let mut rest = std::mem::take(&mut self.held);
        if self.emitted.is_empty()
            && let Echo::Stripped(r) = strip_header_echoes(&rest)
        {
            self.echoed |= r.len() < rest.len();
            rest = r;
        }
        if self.echoed {
            problems.push("echoed_source_header");
        }
        if let Some(i) = open_marker(&rest) {
            let tail = rest[i + 1..].trim();
            let looks_cut = tail.is_empty()
                || tail
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == ',' || c == ' ' || c.is_alphabetic())
                    && tail.len() <= MAX_HELD_MARKER;
            if looks_cut {
                rest.truncate(i);
                let trimmed = rest.trim_end().len();
                rest.truncate(trimmed);
                problems.push("cut_citation");
            }
        }
        let whole = format!("{}{rest}", self.emitted);
        if alnum(&strip_citations(&whole)) == 0 {
            return (None, problems);
        }
        let out = self.release(&rest, true);
        if self.deduped {
            problems.push("repeated_citations");
        }
        if self.filled {
            problems.push("citation_for_fact");
        }
        (Some(out), problems)
    }

    /// Releases `piece` after the emitted text, without markers that repeat the one just before them.
    fn release(&mut self, piece: &str, last: bool) -> String {
        let piece = if self.emitted.is_empty() {
            piece.trim_start()
        } else {
            piece
        };
        let filled = fill_dangling(&self.emitted, piece, last, &self.quotes);
        self.filled |= filled.len() != piece.len();
        let piece = filled.as_str();
        let combined = dedupe_markers(&format!("{}{piece}", self.emitted), self.sources);
        let out = match combined.strip_prefix(self.emitted.as_str()) {
            Some(rest) => rest.to_owned(),
            None => piece.to_owned(),
        };
        if out.len() < piece.len() {
            self.deduped = true;
        }
        self.emitted.push_str(&out);
        out
    }
}

/// Words after which a marker stands where the fact belongs: `the manual is held by [1].`
const DANGLING: &[&str] = &[
    "is",
    "are",
    "was",
    "were",
    "be",
    "by",
    "to",
    "at",
    "of",
    "in",
    "on",
    "from",
    "with",
    "as",
    "the",
    "a",
    "an",
    "called",
    "named",
    "describes",
    "describe",
    "uses",
    "use",
];
/// Longest quote appended after such a marker, in characters.
const MAX_FILL: usize = 240;

/// Byte offset of the `[` of a marker that ends `s` (spaces after it allowed).
fn trailing_marker(s: &str) -> Option<usize> {
    let t = s.trim_end();
    let inner = t.strip_suffix(']')?;
    let i = inner.rfind('[')?;
    is_marker(&inner[i + 1..]).then_some(i)
}

/// `piece` with the quote of its source after every marker that stands for the fact: right after a
/// [`DANGLING`] word (in `before` + `piece`) and before the sentence's end (`.`, `!`, `?`, `(`, or the end
/// of the answer when `last`).
fn fill_dangling(before: &str, piece: &str, last: bool, quotes: &[String]) -> String {
    let mut out = String::with_capacity(piece.len());
    let mut rest = piece;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else { break };
        let inside = &after[..close];
        out.push_str(&rest[..open + 1]);
        out.push_str(inside);
        out.push(']');
        rest = &after[close + 1..];
        if !is_marker(inside) {
            continue;
        }
        let context = format!("{before}{out}");
        let context = context[..context.len() - inside.len() - 2].trim_end();
        let prev = context
            .rsplit(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_lowercase();
        let next = rest.trim_start().chars().next();
        let ends = match next {
            None => last,
            Some(c) => matches!(c, '.' | '!' | '?' | '('),
        };
        let quote = cited_numbers(&format!("[{inside}]"))
            .into_iter()
            .next()
            .and_then(|n| quotes.get(n.wrapping_sub(1)))
            .filter(|q| !q.is_empty());
        if let Some(q) = quote
            && ends
            && DANGLING.contains(&prev.as_str())
        {
            let one_line = q.split_whitespace().collect::<Vec<_>>().join(" ");
            let mut short: String = one_line.chars().take(MAX_FILL).collect();
            if short.len() < one_line.len() {
                short.push('…');
            }
            out.push_str(&format!(": \"{short}\""));
        }
    }
    out.push_str(rest);
    out
}

/// Byte offset of a `[` not yet closed by a `]`.
fn open_marker(s: &str) -> Option<usize> {
    let i = s.rfind('[')?;
    (!s[i..].contains(']')).then_some(i)
}

/// The start of an answer without the source headers it repeats (`[1] (report.pdf, pages 1-3) ...`), or
/// `Open` while such a header may still be arriving.
enum Echo {
    Open,
    Stripped(String),
}

fn strip_header_echoes(text: &str) -> Echo {
    let mut rest = text.trim_start();
    while let Some(after) = rest.strip_prefix('[') {
        let Some(close) = after.find(']') else {
            return if after.len() <= MAX_HELD_MARKER {
                Echo::Open
            } else {
                Echo::Stripped(rest.to_owned())
            };
        };
        if !is_marker(&after[..close]) {
            break;
        }
        let tail = after[close + 1..].trim_start();
        if tail.is_empty() {
            return Echo::Open;
        }
        let Some(inside) = tail.strip_prefix('(') else {
            break;
        };
        match inside.find(')') {
            Some(end) if end <= MAX_ECHO => rest = inside[end + 1..].trim_start(),
            Some(_) => break,
            None if inside.len() <= MAX_ECHO => return Echo::Open,
            None => break,
        }
    }
    Echo::Stripped(rest.to_owned())
}

/// Drops every marker that repeats the marker just before it with only spaces or punctuation between, and
/// every marker citing a number above `sources` (a source the prompt did not have).
fn dedupe_markers(text: &str, sources: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last: Option<(usize, String)> = None; // (end offset in `out`, inside)
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let before = &rest[..open];
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else { break };
        let inside = after[..close].trim();
        if !is_marker(inside) {
            out.push_str(&rest[..open + 1]);
            rest = after;
            continue;
        }
        let unknown = cited_numbers(&format!("[{inside}]"))
            .iter()
            .any(|&n| n == 0 || n > sources);
        let repeats = last.as_ref().is_some_and(|(end, prev)| {
            *end == out.len()
                && prev == inside
                && before.chars().all(|c| c.is_whitespace() || c == ',')
        });
        if unknown {
            out.push_str(before.trim_end());
        } else if !repeats {
            out.push_str(before);
            out.push('[');
            out.push_str(&after[..close]);
            out.push(']');
            last = Some((out.len(), inside.to_owned()));
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(pieces: &[&str]) -> (String, Vec<&'static str>, Vec<String>) {
        let mut a = Answer::new(3);
        let mut deltas = Vec::new();
        let mut all = String::new();
        for p in pieces {
            let out = a.push(p);
            if !out.is_empty() {
                deltas.push(out.clone());
            }
            all.push_str(&out);
        }
        let (out, problems) = a.finish();
        all.push_str(&out.unwrap_or_default());
        (all, problems, deltas)
    }

    #[test]
    fn a_good_answer_passes_unchanged() {
        let (all, problems, deltas) =
            stream(&["The", " total", " is", " 7", " pears", " [", "1", "]."]);
        assert_eq!(all, "The total is 7 pears [1].");
        assert!(problems.is_empty());
        // Everything released before the end is still an answer with words.
        let mut a = Answer::new(3);
        assert_eq!(a.push("Seven pears [1]."), "Seven pears [1].");
        assert_eq!(a.finish().0.as_deref(), Some(""));
        // The start is held only until it has words.
        assert_eq!(deltas[0], "The total");
    }

    #[test]
    fn citations_only_has_no_words() {
        let (all, _, deltas) = stream(&["[", "1", "]", " [1]", " [1]"]);
        assert_eq!(all, "");
        assert!(deltas.is_empty());
        let mut a = Answer::new(3);
        a.push("[1] [1]");
        assert_eq!(a.finish().0, None);
        assert!(a.had_markers);
    }

    #[test]
    fn repeats_and_cut_markers_are_dropped() {
        let (all, problems, _) = stream(&["Pears: 7 [1] [1] [1]", " and plums [2] [", "2"]);
        assert_eq!(all, "Pears: 7 [1] and plums [2]");
        assert_eq!(problems, ["cut_citation", "repeated_citations"]);
        // A bracket that is not a marker is released.
        let (all, _, _) = stream(&["Use the option [draft] here"]);
        assert_eq!(all, "Use the option [draft] here");
    }

    #[test]
    fn echoed_headers_and_unknown_numbers_are_dropped() {
        let (all, problems, _) = stream(&[
            "[1] (text-3page.pdf,",
            " pages 1-3) [2] (b.csv, Sheet1!A1:B2)",
            " There are 7 pears [1] [9].",
        ]);
        assert_eq!(all, "There are 7 pears [1].");
        assert_eq!(problems, ["echoed_source_header", "repeated_citations"]);
        // A marker then words is an answer, not an echo.
        let (all, problems, _) = stream(&["[1] says 7 pears."]);
        assert_eq!(all, "[1] says 7 pears.");
        assert!(problems.is_empty());
        // Only an echo: no words.
        let mut a = Answer::new(3);
        a.push("[1] (a.pdf, page 1)");
        assert_eq!(a.finish().0, None);
    }

    #[test]
    fn a_marker_standing_for_the_fact_gets_its_quote() {
        let mut a = Answer::with_quotes(vec![
            "Apples: 3".into(),
            "Run gpgconf --kill gpg-agent.".into(),
        ]);
        let mut all = String::new();
        for p in ["The command", " is", " [", "2", "]", "."] {
            all.push_str(&a.push(p));
        }
        all.push_str(&a.finish().0.unwrap_or_default());
        assert_eq!(
            all,
            "The command is [2]: \"Run gpgconf --kill gpg-agent.\"."
        );
        // At the very end of the answer too; a marker after the fact is left alone.
        let mut a = Answer::with_quotes(vec!["Søren Roug".into()]);
        let mut all = a.push("The manual is held by [1]");
        let (rest, problems) = a.finish();
        all.push_str(&rest.unwrap_or_default());
        assert_eq!(all, "The manual is held by [1]: \"Søren Roug\"");
        assert_eq!(problems, ["citation_for_fact"]);
        let (all, problems, _) = stream(&["There are 7 pears [1]."]);
        assert_eq!(all, "There are 7 pears [1].");
        assert!(problems.is_empty());
    }

    #[test]
    fn repair_cites_the_best_source_or_quotes_it() {
        use super::super::grounded::Candidate;
        let src = |n: usize, text: &str| Source {
            number: n,
            chunk: Candidate {
                chunk_id: format!("f#{n}"),
                file_id: "f".into(),
                filename: "f.txt".into(),
                location: serde_json::Value::Null,
                text: text.into(),
                excerpt: None,
            },
        };
        let sources = [src(1, "Apples: 3\nPlums: 2"), src(2, "Fruit.\nPears: 7")];
        assert_eq!(
            repaired_answer(&sources, "How many pears?", "There are 7 pears."),
            "There are 7 pears. [2]"
        );
        assert_eq!(
            best_source(&sources, "How many pears?", "There are 7 pears."),
            Some(2)
        );
        assert_eq!(
            best_source(&sources, "Who wrote it?", "Nobody knows."),
            None
        );
        assert_eq!(
            repaired_answer(&sources, "How many pears?", "[1]"),
            "The closest evidence in the sources is [2]: \"Pears: 7\""
        );
    }
}
