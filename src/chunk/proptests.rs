//! Property tests of the chunker's invariants over random documents of every location kind:
//! 1. no chunk counts more than `max_tokens`, and `token_count` is the counter's count of the text;
//! 2. no text is lost: the chunks' contents (text less the repeated header and overlap) joined by `"\n"` equal
//!    the segments joined by `"\n"`, up to whitespace (runs of whitespace compared as one space);
//! 3. ordinals are 0..n;
//! 4. every prefix is what it claims: the overlap ends the previous chunk's content, the header is a table
//!    header of the document.

use proptest::prelude::*;

use super::tests::{squash, words};
use super::*;
use crate::fuzzing::subwords;
use crate::types::{Location, Segment, SegmentKind};

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}",
        "[0-9]{1,4}",
        "[àéîõüßø]{1,3}",
        Just("東京".to_owned()),
    ]
}

/// Words joined by spaces, newlines and the odd blank line: 0 to 120 words.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            word(),
            prop_oneof![4 => Just(" "), 1 => Just("\n"), 1 => Just("\n\n  ")],
        ),
        0..120,
    )
    .prop_map(|parts| {
        parts
            .into_iter()
            .map(|(w, sep)| format!("{w}{sep}"))
            .collect::<String>()
            .trim()
            .to_owned()
    })
}

fn kind() -> impl Strategy<Value = SegmentKind> {
    prop_oneof![
        3 => Just(SegmentKind::Paragraph),
        1 => Just(SegmentKind::Heading),
        1 => Just(SegmentKind::ListItem),
        1 => Just(SegmentKind::Note),
        1 => Just(SegmentKind::Footer),
        1 => Just(SegmentKind::Code),
    ]
}

/// A run of segments of one location kind, with small steps between pages, slides, rows and blocks.
fn run(kind_of_location: u8) -> impl Strategy<Value = Vec<Segment>> {
    prop::collection::vec((kind(), text(), 0u32..3), 1..12).prop_map(move |parts| {
        let mut at = 1u32;
        let mut segments = Vec::new();
        for (i, (kind, text, step)) in parts.into_iter().enumerate() {
            at += step;
            let (kind, location) = match kind_of_location {
                0 => (
                    kind,
                    Location::Page {
                        page: at,
                        ocr: step == 2,
                    },
                ),
                1 => (kind, Location::Slide { slide: at }),
                2 => {
                    let kind = if i == 0 {
                        SegmentKind::TableHeader
                    } else {
                        SegmentKind::TableRow
                    };
                    let range = format!("A{at}:C{at}");
                    (
                        kind,
                        Location::Cells {
                            sheet: format!("S{}", at / 10),
                            range,
                        },
                    )
                }
                3 => {
                    let heading_path = vec![format!("H{}", at / 3)];
                    (
                        kind,
                        Location::Section {
                            heading_path,
                            block: at,
                        },
                    )
                }
                4 => (
                    kind,
                    Location::Lines {
                        start: at,
                        end: at + step,
                    },
                ),
                5 => {
                    let start = f64::from(at);
                    (
                        SegmentKind::Transcript,
                        Location::Time {
                            start,
                            end: start + 1.5,
                        },
                    )
                }
                _ => (kind, Location::Image),
            };
            segments.push(Segment::new(kind, text, location));
        }
        segments
    })
}

fn document() -> impl Strategy<Value = Document> {
    prop::collection::vec((0u8..7).prop_flat_map(run), 1..4).prop_map(|runs| Document {
        segments: runs.into_iter().flatten().collect(),
        ..Document::default()
    })
}

fn config() -> impl Strategy<Value = ChunkConfig> {
    (MIN_MAX_TOKENS..80).prop_flat_map(|max_tokens| {
        (0..=max_tokens / 2).prop_map(move |overlap_tokens| ChunkConfig {
            max_tokens,
            overlap_tokens,
        })
    })
}

fn check_invariants(
    doc: &Document,
    cfg: &ChunkConfig,
    count: &dyn Fn(&str) -> usize,
) -> Result<(), TestCaseError> {
    let chunks = chunk_document(doc, cfg, count).expect("valid config");
    let headers: Vec<&str> = doc
        .segments
        .iter()
        .filter(|s| s.kind == SegmentKind::TableHeader)
        .map(|s| s.text.as_str())
        .collect();
    for (i, chunk) in chunks.iter().enumerate() {
        prop_assert_eq!(chunk.ordinal as usize, i);
        prop_assert!(chunk.token_count as usize <= cfg.max_tokens, "{:?}", chunk);
        prop_assert_eq!(chunk.token_count as usize, count(&chunk.text));
        prop_assert!(!chunk.content().trim().is_empty(), "{:?}", chunk);
        let header: String = chunk
            .text
            .chars()
            .take(chunk.header_chars as usize)
            .collect();
        if !header.is_empty() {
            prop_assert!(
                headers.contains(&header.trim_end_matches('\n')),
                "{:?}",
                chunk
            );
        }
        if chunk.overlap_chars > 0 {
            prop_assert!(i > 0);
            let overlap: String = chunk
                .text
                .chars()
                .skip(chunk.header_chars as usize)
                .take(chunk.overlap_chars as usize)
                .collect();
            prop_assert!(
                count(overlap.trim()) <= cfg.overlap_tokens.max(count("")),
                "{:?}",
                chunk
            );
            prop_assert!(
                chunks[i - 1].content().ends_with(overlap.trim_end()),
                "{:?}",
                chunk
            );
        }
    }
    prop_assert_eq!(squash(&reassemble(&chunks)), squash(&doc.plain_text()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn chunks_are_bounded_numbered_and_lossless_by_words(doc in document(), cfg in config()) {
        check_invariants(&doc, &cfg, &words)?;
    }

    #[test]
    fn chunks_are_bounded_numbered_and_lossless_by_subwords(doc in document(), cfg in config()) {
        check_invariants(&doc, &cfg, &subwords)?;
    }
}
