//! Explainable complexity scoring: a score in [0, 1] that is the sum of named factors, each with its own
//! ceiling (the ceilings add up to 1). Pure functions, no models: token counts come in already counted.

use crate::types::Category;

/// Ceiling of the prompt-length factor.
const PROMPT_WEIGHT: f32 = 0.15;
/// Prompt tokens at which the prompt factor saturates.
const PROMPT_SATURATION: f32 = 2000.0;
/// Ceiling of the file-context factor.
const CONTEXT_WEIGHT: f32 = 0.20;
/// Context tokens at which the context factor saturates.
const CONTEXT_SATURATION: f32 = 3000.0;
/// Ceiling of the number-and-kinds-of-files factor.
const FILES_WEIGHT: f32 = 0.10;
/// Files at which the file-count part saturates.
const FILES_SATURATION: f32 = 5.0;
/// Ceiling of the task factor.
const TASK_WEIGHT: f32 = 0.35;
/// Ceiling of the requested-output factor.
const OUTPUT_WEIGHT: f32 = 0.20;
/// Completion tokens at which the output-length part saturates.
const OUTPUT_SATURATION: f32 = 1500.0;
/// Scores below this are `low`.
pub const MEDIUM_FROM: f32 = 0.3;
/// Scores from this on are `high`.
pub const HIGH_FROM: f32 = 0.6;

/// What the request asks for, from its last user message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Write, fix or explain code.
    Code,
    /// Compare or contrast several things.
    Compare,
    /// Analyse, evaluate, reason about causes.
    Analyse,
    /// Pull out fields, lists, tables.
    Extract,
    /// Summarise.
    Summarise,
    /// A direct question.
    Question,
    /// Small talk or an instruction with none of the above.
    Chat,
}

impl TaskKind {
    /// Lower-case name used in analyses.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Code => "code",
            TaskKind::Compare => "compare",
            TaskKind::Analyse => "analyse",
            TaskKind::Extract => "extract",
            TaskKind::Summarise => "summarise",
            TaskKind::Question => "question",
            TaskKind::Chat => "chat",
        }
    }

    /// Share of the task factor's ceiling.
    fn weight(self) -> f32 {
        match self {
            TaskKind::Code => 1.0,
            TaskKind::Compare => 0.9,
            TaskKind::Analyse => 0.8,
            TaskKind::Extract => 0.45,
            TaskKind::Summarise => 0.4,
            TaskKind::Question => 0.1,
            TaskKind::Chat => 0.0,
        }
    }

    /// Cue words, matched on word starts of the lower-cased text.
    fn cues(self) -> &'static [&'static str] {
        match self {
            TaskKind::Code => &[
                "code",
                "function",
                "implement",
                "program",
                "script",
                "sql",
                "regex",
                "debug",
                "refactor",
                "compile",
                "python",
                "rust",
                "javascript",
                "typescript",
                "```",
            ],
            TaskKind::Compare => &[
                "compare",
                "comparison",
                "contrast",
                "difference",
                "differ",
                "versus",
                "vs",
                "similarities",
            ],
            TaskKind::Analyse => &[
                "analyse",
                "analyze",
                "analysis",
                "evaluate",
                "assess",
                "implication",
                "trade-off",
                "tradeoff",
                "pros and cons",
                "critique",
                "why does",
                "why is",
                "reason",
            ],
            TaskKind::Extract => &[
                "extract",
                "list all",
                "list every",
                "find all",
                "enumerate",
                "pull out",
                "table of",
            ],
            TaskKind::Summarise => &[
                "summarise",
                "summarize",
                "summary",
                "overview",
                "tl;dr",
                "key points",
                "main points",
                "outline",
            ],
            TaskKind::Question | TaskKind::Chat => &[],
        }
    }

    /// The most demanding task the text asks for.
    pub fn detect(text: &str) -> TaskKind {
        let lower = text.to_lowercase();
        for kind in [
            TaskKind::Code,
            TaskKind::Compare,
            TaskKind::Analyse,
            TaskKind::Extract,
            TaskKind::Summarise,
        ] {
            if kind.cues().iter().any(|cue| has_cue(&lower, cue)) {
                return kind;
            }
        }
        let first = lower.split_whitespace().next().unwrap_or_default();
        let asks = [
            "what", "who", "when", "where", "which", "how", "why", "is", "are", "does", "do", "can",
        ];
        if lower.contains('?') || asks.contains(&first) {
            TaskKind::Question
        } else {
            TaskKind::Chat
        }
    }
}

/// Words of small talk: a message made only of these (and at most a few words) is chit-chat.
const CHIT_CHAT: &[&str] = &[
    "hi",
    "hello",
    "hey",
    "yo",
    "thanks",
    "thank",
    "you",
    "thx",
    "ok",
    "okay",
    "bye",
    "goodbye",
    "cool",
    "great",
    "nice",
    "good",
    "morning",
    "afternoon",
    "evening",
    "cheers",
    "awesome",
    "perfect",
    "got",
    "it",
    "sounds",
    "so",
    "much",
    "very",
    "lot",
    "a",
    "there",
    "all",
    "right",
    "alright",
    "yes",
    "no",
    "sure",
];

/// True for small talk ("thanks!", "hello there"), which needs no sources and no strong model.
pub fn is_chit_chat(text: &str) -> bool {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .collect();
    !words.is_empty() && words.len() <= 6 && words.iter().all(|w| CHIT_CHAT.contains(w))
}

/// Cue at a word start (so `rust` does not match `trust`, `vs` not `canvas`).
fn has_cue(text: &str, cue: &str) -> bool {
    text.match_indices(cue).any(|(i, _)| {
        i == 0
            || text[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric())
    })
}

/// Words asking for a long or careful answer.
const DETAIL_CUES: &[&str] = &[
    "in detail",
    "detailed",
    "step by step",
    "step-by-step",
    "thorough",
    "comprehensive",
    "essay",
    "report",
    "explain",
];

/// The answer's requested format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Free text.
    #[default]
    Text,
    /// `response_format: {"type": "json_object"}` or a JSON schema.
    Json,
}

/// What the score is computed from.
#[derive(Debug, Clone, Default)]
pub struct ComplexityInput {
    /// The last user message (the task is read from it).
    pub last_user_message: String,
    /// Tokens of the conversation.
    pub prompt_tokens: usize,
    /// Tokens of the attached files' text (what reading them whole needs).
    pub context_tokens: usize,
    /// Category of each attached file.
    pub files: Vec<Category>,
    /// `max_tokens`, when given.
    pub max_tokens: Option<usize>,
    /// Requested format.
    pub format: OutputFormat,
}

/// One named part of the score.
#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    /// `prompt_tokens`, `context_tokens`, `files`, `task`, `output`.
    pub name: &'static str,
    /// What was measured, in words.
    pub detail: String,
    /// Its share of the score.
    pub contribution: f32,
    /// The most it can contribute.
    pub max: f32,
}

/// Coarse level of a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Below [`MEDIUM_FROM`].
    Low,
    /// Below [`HIGH_FROM`].
    Medium,
    /// The rest.
    High,
}

impl Level {
    /// Of a score.
    pub fn of(score: f32) -> Level {
        if score < MEDIUM_FROM {
            Level::Low
        } else if score < HIGH_FROM {
            Level::Medium
        } else {
            Level::High
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
        }
    }
}

/// The analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct Complexity {
    /// Sum of the contributions, in [0, 1].
    pub score: f32,
    /// Its level.
    pub level: Level,
    /// The detected task.
    pub task: TaskKind,
    /// Every factor, in a fixed order.
    pub factors: Vec<Factor>,
}

fn saturating(value: f32, at: f32) -> f32 {
    (value / at).clamp(0.0, 1.0)
}

/// Scores a request.
pub fn analyse(input: &ComplexityInput) -> Complexity {
    let task = TaskKind::detect(&input.last_user_message);
    let mut factors = Vec::with_capacity(5);
    factors.push(Factor {
        name: "prompt_tokens",
        detail: format!("{} tokens in the conversation", input.prompt_tokens),
        contribution: PROMPT_WEIGHT * saturating(input.prompt_tokens as f32, PROMPT_SATURATION),
        max: PROMPT_WEIGHT,
    });
    factors.push(Factor {
        name: "context_tokens",
        detail: format!("{} tokens of file text", input.context_tokens),
        contribution: CONTEXT_WEIGHT * saturating(input.context_tokens as f32, CONTEXT_SATURATION),
        max: CONTEXT_WEIGHT,
    });
    let mut kinds: Vec<&str> = input.files.iter().map(|c| c.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    // Text-like files are the easy case; sheets, images and audio need reading structure or transcripts.
    let hard_kinds = input
        .files
        .iter()
        .any(|c| matches!(c, Category::Sheet | Category::Image | Category::Audio));
    let kinds_part = if kinds.len() > 1 || hard_kinds {
        0.4
    } else {
        0.0
    };
    factors.push(Factor {
        name: "files",
        detail: if input.files.is_empty() {
            "no files".into()
        } else {
            format!("{} file(s): {}", input.files.len(), kinds.join(", "))
        },
        contribution: FILES_WEIGHT
            * (0.6 * saturating(input.files.len() as f32, FILES_SATURATION) + kinds_part),
        max: FILES_WEIGHT,
    });
    factors.push(Factor {
        name: "task",
        detail: task.as_str().into(),
        contribution: TASK_WEIGHT * task.weight(),
        max: TASK_WEIGHT,
    });
    let lower = input.last_user_message.to_lowercase();
    let detail_asked = DETAIL_CUES.iter().any(|c| has_cue(&lower, c));
    let length_part = input
        .max_tokens
        .map_or(0.0, |t| saturating(t as f32, OUTPUT_SATURATION));
    let mut output_detail = match input.max_tokens {
        Some(t) => format!("up to {t} tokens"),
        None => "default length".to_owned(),
    };
    if detail_asked {
        output_detail.push_str(", detailed answer asked");
    }
    if input.format == OutputFormat::Json {
        output_detail.push_str(", JSON format");
    }
    factors.push(Factor {
        name: "output",
        detail: output_detail,
        contribution: OUTPUT_WEIGHT
            * (0.5 * length_part
                + if detail_asked { 0.25 } else { 0.0 }
                + if input.format == OutputFormat::Json {
                    0.25
                } else {
                    0.0
                }),
        max: OUTPUT_WEIGHT,
    });
    for f in &mut factors {
        f.contribution = round3(f.contribution.min(f.max));
    }
    let score = round3(
        factors
            .iter()
            .map(|f| f.contribution)
            .sum::<f32>()
            .clamp(0.0, 1.0),
    );
    Complexity {
        score,
        level: Level::of(score),
        task,
        factors,
    }
}

/// Three decimals, so analyses read well and sums add up.
fn round3(x: f32) -> f32 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(text: &str) -> Complexity {
        analyse(&ComplexityInput {
            last_user_message: text.into(),
            prompt_tokens: text.len() / 4,
            ..ComplexityInput::default()
        })
    }

    #[test]
    fn tasks_are_detected_at_word_starts() {
        assert_eq!(TaskKind::detect("Hi there!"), TaskKind::Chat);
        assert_eq!(TaskKind::detect("What is 2+2?"), TaskKind::Question);
        assert_eq!(
            TaskKind::detect("Summarize the report"),
            TaskKind::Summarise
        );
        assert_eq!(
            TaskKind::detect("Compare the two contracts"),
            TaskKind::Compare
        );
        assert_eq!(TaskKind::detect("Write a Python function"), TaskKind::Code);
        assert_eq!(TaskKind::detect("I trust you"), TaskKind::Chat);
        assert_eq!(TaskKind::detect("draw on the canvas"), TaskKind::Chat);
        assert_eq!(TaskKind::detect("Extract every date"), TaskKind::Extract);
        assert_eq!(TaskKind::detect("Evaluate the risks"), TaskKind::Analyse);
    }

    #[test]
    fn trivial_is_low_and_complex_is_high() {
        let trivial = score("Hi!");
        assert_eq!(trivial.level, Level::Low);
        assert!(trivial.score < 0.05, "{trivial:?}");
        let complex = analyse(&ComplexityInput {
            last_user_message: "Compare the two reports in detail and analyse the differences"
                .into(),
            prompt_tokens: 40,
            context_tokens: 5000,
            files: vec![Category::Pdf, Category::Sheet],
            max_tokens: Some(1000),
            format: OutputFormat::Json,
        });
        assert_eq!(complex.level, Level::High, "{complex:?}");
        assert!(complex.score > trivial.score);
    }

    #[test]
    fn score_is_the_sum_of_bounded_factors() {
        let all = analyse(&ComplexityInput {
            last_user_message: "Write code step by step".into(),
            prompt_tokens: 100_000,
            context_tokens: 100_000,
            files: vec![Category::Audio; 20],
            max_tokens: Some(100_000),
            format: OutputFormat::Json,
        });
        assert!((all.score - 1.0).abs() < 1e-3, "{all:?}");
        let names: Vec<_> = all.factors.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            ["prompt_tokens", "context_tokens", "files", "task", "output"]
        );
        let sum: f32 = all.factors.iter().map(|f| f.max).sum();
        assert!((sum - 1.0).abs() < 1e-6);
        for f in &all.factors {
            assert!(f.contribution >= 0.0 && f.contribution <= f.max + 1e-6);
        }
    }

    #[test]
    fn more_context_never_lowers_the_score() {
        let mut last = 0.0;
        for ctx in [0, 100, 1000, 3000, 10_000] {
            let s = analyse(&ComplexityInput {
                last_user_message: "What does it say?".into(),
                context_tokens: ctx,
                files: vec![Category::Pdf],
                ..ComplexityInput::default()
            })
            .score;
            assert!(s >= last);
            last = s;
        }
    }
}
