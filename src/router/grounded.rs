//! Grounded prompts for chat with files: numbered sources chosen within a token budget, the instructions
//! to cite them, and reading the citations back out of the answer. Pure functions.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::chunk::ChunkLocation;
use crate::models::chat::{ChatMessage, Role};

/// The instructions; plain and short, which small models follow best.
const INSTRUCTIONS: &str = "Answer the question using only the numbered sources below. \
Cite the source of each fact with its number in square brackets, like [1]. \
If the sources do not contain the answer, say that you do not know.";

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

/// Takes candidates in order while they fit `budget` tokens (a candidate that does not fit is skipped for
/// smaller ones after it), at most `max_sources` of them.
pub fn select(
    candidates: Vec<Candidate>,
    budget: usize,
    max_sources: usize,
    count: &dyn Fn(&str) -> usize,
) -> (Vec<Candidate>, usize) {
    let mut used = 0;
    let mut out = Vec::new();
    for c in candidates {
        if out.len() == max_sources {
            break;
        }
        let n = count(&source_block(out.len() + 1, &c));
        if used + n <= budget {
            used += n;
            out.push(c);
        }
    }
    (out, used)
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
    format!("[{number}] ({place})\n{}\n", c.text.trim())
}

/// Builds the prompt: the instructions (plus the client's own system messages) as the system message,
/// earlier turns unchanged, and the sources before the last user message.
pub fn build(
    conversation: &[ChatMessage],
    chosen: Vec<Candidate>,
    context_tokens: usize,
) -> Grounded {
    let sources: Vec<Source> = chosen
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| Source {
            number: i + 1,
            chunk,
        })
        .collect();
    let mut system = INSTRUCTIONS.to_owned();
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
            messages.push(ChatMessage {
                role: Role::User,
                content: format!("Sources:\n\n{blocks}\nQuestion: {}", m.content.trim()),
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
        let (chosen, used) = select(c.clone(), 20, 10, &words);
        let ids: Vec<_> = chosen.iter().map(|c| c.file_id.as_str()).collect();
        assert_eq!(
            ids,
            ["a", "c", "d"],
            "the long one is skipped for smaller ones"
        );
        assert!(used <= 20);
        let (chosen, _) = select(c, 1000, 2, &words);
        assert_eq!(chosen.len(), 2);
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
