//! Unit tests of the chunker, one per kind of document, with a whitespace counter (1 token per word) and, in
//! one test, the real MiniLM tokenizer.

use std::path::PathBuf;

use super::*;
use crate::models::embed::{MODEL_DIR_NAME, TokenCounter};
use crate::types::{Location, Segment, SegmentKind};

/// One token per whitespace-separated word, no `[CLS]`/`[SEP]`.
pub(super) fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// `n` distinct words starting at `first`.
pub(super) fn text_of(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Collapses whitespace runs to one space, for comparisons "up to whitespace".
pub(super) fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn doc(segments: Vec<Segment>) -> Document {
    Document {
        segments,
        ..Document::default()
    }
}

fn cfg(max_tokens: usize, overlap_tokens: usize) -> ChunkConfig {
    ChunkConfig {
        max_tokens,
        overlap_tokens,
    }
}

fn chunk(doc: &Document, cfg: &ChunkConfig) -> Vec<Chunk> {
    chunk_document(doc, cfg, &words).expect("valid config")
}

/// The invariants every test shares: bounded, counted, numbered and lossless.
fn check(doc: &Document, cfg: &ChunkConfig, chunks: &[Chunk], count: &dyn Fn(&str) -> usize) {
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.ordinal as usize, i);
        assert_eq!(c.token_count as usize, count(&c.text));
        assert!(c.token_count as usize <= cfg.max_tokens, "{c:?}");
    }
    assert_eq!(squash(&reassemble(chunks)), squash(&doc.plain_text()));
}

fn page(page: u32, ocr: bool, text: String) -> Segment {
    Segment::new(SegmentKind::Paragraph, text, Location::Page { page, ocr })
}

#[test]
fn default_config_fits_the_embedder_and_bad_configs_are_refused() {
    let default = ChunkConfig::default();
    let window = crate::models::embed::MAX_TOKENS;
    assert_eq!(default.validate(window), Ok(()));
    assert!(default.max_tokens <= window);
    let err = |c: ChunkConfig| c.validate(window).expect_err("invalid").to_string();
    assert_eq!(
        err(cfg(300, 32)),
        "invalid chunk config: max_tokens is 300, but the embedder's window is 256 tokens"
    );
    assert_eq!(
        err(cfg(8, 2)),
        "invalid chunk config: max_tokens is 8, it must be at least 16"
    );
    assert_eq!(
        err(cfg(100, 51)),
        "invalid chunk config: overlap_tokens is 51, it must be at most half of max_tokens (100)"
    );
    assert!(chunk_document(&Document::default(), &cfg(100, 100), &words).is_err());
    assert_eq!(chunk(&Document::default(), &default), Vec::new());
}

#[test]
fn pdf_pages_pack_small_pages_together_and_split_big_ones() {
    let d = doc(vec![
        page(1, false, text_of(0, 5)),
        page(2, true, text_of(100, 5)),
        page(3, false, text_of(200, 30)),
        page(3, false, text_of(300, 30)),
        page(4, false, text_of(400, 10)),
    ]);
    let c = cfg(50, 5);
    let chunks = chunk(&d, &c);
    check(&d, &c, &chunks, &words);
    let locations: Vec<_> = chunks.iter().map(|c| c.location.clone()).collect();
    assert_eq!(
        locations,
        vec![
            // Pages 1 and 2 are small, so page 3 joins them until the budget runs out.
            ChunkLocation::Pages {
                from: 1,
                to: 3,
                ocr: true
            },
            // The second paragraph of page 3 continues page 3: it starts with an overlap.
            ChunkLocation::Pages {
                from: 3,
                to: 3,
                ocr: false
            },
            // Page 4 starts a new chunk because the one before is non-trivial; no overlap across pages.
            ChunkLocation::Pages {
                from: 4,
                to: 4,
                ocr: false
            },
        ]
    );
    assert_eq!(chunks[0].overlap_chars, 0);
    assert!(chunks[1].overlap_chars > 0);
    assert!(
        chunks[0]
            .content()
            .ends_with(chunks[1].text[..chunks[1].overlap_chars as usize].trim())
    );
    assert_eq!(chunks[1].content(), text_of(300, 30));
    assert_eq!(chunks[2].overlap_chars, 0);
    assert_eq!(chunks[2].text, text_of(400, 10));
}

#[test]
fn docx_headings_start_chunks_and_keep_their_heading_path() {
    let section = |kind, text: String, path: &[&str], block| Segment {
        kind,
        text,
        location: Location::Section {
            heading_path: path.iter().map(|s| (*s).to_owned()).collect(),
            block,
        },
    };
    let d = doc(vec![
        section(SegmentKind::Heading, "Intro".into(), &["Intro"], 1),
        section(SegmentKind::Paragraph, text_of(0, 5), &["Intro"], 2),
        // The chunk so far is trivial (6 of 40 tokens): the sub-heading joins it.
        section(SegmentKind::Heading, "Scope".into(), &["Intro", "Scope"], 3),
        section(
            SegmentKind::ListItem,
            text_of(10, 12),
            &["Intro", "Scope"],
            4,
        ),
        // Non-trivial now (19 tokens >= 10): the next heading starts a chunk.
        section(SegmentKind::Heading, "Method".into(), &["Method"], 5),
        section(SegmentKind::Paragraph, text_of(100, 20), &["Method"], 6),
        section(SegmentKind::Paragraph, text_of(200, 20), &["Method"], 7),
    ]);
    let c = cfg(40, 4);
    let chunks = chunk(&d, &c);
    check(&d, &c, &chunks, &words);
    let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let expected = [
        (path(&["Intro"]), 1, 4),
        (path(&["Method"]), 5, 6),
        (path(&["Method"]), 7, 7),
    ];
    assert_eq!(chunks.len(), expected.len());
    for (chunk, (heading_path, from, to)) in chunks.iter().zip(expected) {
        assert_eq!(
            chunk.location,
            ChunkLocation::Section {
                heading_path,
                blocks: BlockRange { from, to }
            }
        );
    }
    assert!(chunks[0].text.starts_with("Intro\nw0 w1"));
    assert!(chunks[1].text.starts_with("Method\n"));
    // The last chunk continues the "Method" section, so it repeats whole words of the one before.
    assert_eq!(
        chunks[2].text,
        format!("w116 w117 w118 w119\n{}", text_of(200, 20))
    );
    assert_eq!(
        chunks[2].overlap_chars as usize,
        "w116 w117 w118 w119\n".len()
    );
}

#[test]
fn slides_merge_while_small_and_headings_stay_with_their_text() {
    let slide = |kind, text: String, slide| Segment::new(kind, text, Location::Slide { slide });
    let d = doc(vec![
        slide(SegmentKind::Heading, "Title".into(), 1),
        slide(SegmentKind::Paragraph, text_of(0, 2), 1),
        // Slide 1 is trivial (3 of 32 tokens): slide 2 joins it.
        slide(SegmentKind::Heading, "Results".into(), 2),
        slide(SegmentKind::ListItem, text_of(10, 10), 2),
        // Notes are another kind of block and the chunk is non-trivial: new chunk, no overlap.
        slide(SegmentKind::Note, text_of(20, 5), 2),
        slide(SegmentKind::Heading, "Outlook".into(), 3),
        // Does not fit after "Outlook": the heading moves on with it instead of ending the chunk.
        slide(SegmentKind::Paragraph, text_of(30, 28), 3),
    ]);
    let c = cfg(32, 4);
    let chunks = chunk(&d, &c);
    check(&d, &c, &chunks, &words);
    let locations: Vec<_> = chunks.iter().map(|c| c.location.clone()).collect();
    assert_eq!(
        locations,
        vec![
            ChunkLocation::Slides { from: 1, to: 2 },
            ChunkLocation::Slides { from: 2, to: 2 },
            ChunkLocation::Slides { from: 3, to: 3 },
        ]
    );
    assert_eq!(chunks[1].text, text_of(20, 5));
    assert_eq!(chunks[2].text, format!("Outlook\n{}", text_of(30, 28)));
    assert!(chunks.iter().all(|c| c.overlap_chars == 0));
}

fn cells(kind: SegmentKind, sheet: &str, row: u32, text: String) -> Segment {
    Segment::new(
        kind,
        text,
        Location::Cells {
            sheet: sheet.to_owned(),
            range: format!("A{row}:D{row}"),
        },
    )
}

fn sheet(name: &str, rows: u32) -> Vec<Segment> {
    let mut segments = vec![cells(
        SegmentKind::TableHeader,
        name,
        1,
        "id name qty price".into(),
    )];
    segments.extend((2..=rows).map(|row| {
        cells(
            SegmentKind::TableRow,
            name,
            row,
            format!("{row} item{row} {row} 9.{row}"),
        )
    }));
    segments
}

#[test]
fn a_small_sheet_is_one_chunk_covering_a1_to_d40() {
    let d = doc(sheet("Sheet1", 40));
    let c = ChunkConfig::default();
    let chunks = chunk(&d, &c);
    check(&d, &c, &chunks, &words);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].header_chars, 0);
    assert_eq!(
        chunks[0].location,
        ChunkLocation::Cells {
            sheet: "Sheet1".into(),
            range: "A1:D40".into()
        }
    );
}

#[test]
fn every_chunk_of_a_sheet_starts_with_its_header_and_sheets_never_mix() {
    let mut segments = sheet("Sales", 40);
    segments.extend(sheet("Stock", 3));
    let d = doc(segments);
    // A row is 4 words, the header 4: a chunk holds the header, an overlap of 2 rows and 7 new rows.
    let c = cfg(40, 8);
    let chunks = chunk(&d, &c);
    check(&d, &c, &chunks, &words);
    let header = "id name qty price\n";
    let (sales, stock): (Vec<_>, Vec<_>) = chunks.iter().partition(
        |c| matches!(&c.location, ChunkLocation::Cells { sheet, .. } if sheet == "Sales"),
    );
    assert!(sales.len() > 3);
    assert_eq!(stock.len(), 1);
    assert_eq!(
        sales[0].header_chars, 0,
        "the first chunk holds the header itself"
    );
    assert_eq!(
        sales[0].location,
        ChunkLocation::Cells {
            sheet: "Sales".into(),
            range: "A1:D10".into()
        }
    );
    for c in &sales[1..] {
        assert!(c.text.starts_with(header), "{c:?}");
        assert_eq!(c.header_chars as usize, header.len());
        // The overlap is whole rows: the content after it starts on a row.
        let after_header = &c.text[header.len()..];
        assert!(
            after_header
                .split('\n')
                .all(|row| row.split_whitespace().count() == 4),
            "{c:?}"
        );
    }
    assert_eq!(
        sales[1].location,
        ChunkLocation::Cells {
            sheet: "Sales".into(),
            range: "A11:D17".into()
        }
    );
    let last = sales.last().expect("several chunks");
    assert!(
        matches!(&last.location, ChunkLocation::Cells { range, .. } if range.ends_with(":D40"))
    );
    assert_eq!(
        stock[0].location,
        ChunkLocation::Cells {
            sheet: "Stock".into(),
            range: "A1:D3".into()
        }
    );
    assert_eq!(stock[0].header_chars, 0);
    assert_eq!(stock[0].overlap_chars, 0);
}

fn transcript(start: f64, end: f64, text: String) -> Segment {
    Segment::new(SegmentKind::Transcript, text, Location::Time { start, end })
}

#[test]
fn transcripts_break_only_between_segments_unless_one_is_too_long() {
    let mut segments: Vec<Segment> = (0..20)
        .map(|i| {
            transcript(
                f64::from(i) * 2.0,
                f64::from(i) * 2.0 + 2.0,
                text_of(i as usize * 10, 6),
            )
        })
        .collect();
    segments.push(transcript(40.0, 95.5, text_of(1000, 100)));
    let d = doc(segments);
    let c = cfg(30, 6);
    let chunks = chunk(&d, &c);
    check(&d, &c, &chunks, &words);
    let texts: Vec<&str> = d.segments.iter().map(|s| s.text.as_str()).collect();
    let long = texts.len() - 1;
    for c in &chunks {
        let ChunkLocation::Time { start, end } = c.location else {
            panic!("time location expected: {c:?}");
        };
        if start >= 40.0 {
            // A piece of the long segment keeps the segment's time range.
            assert_eq!((start, end), (40.0, 95.5));
            continue;
        }
        // Otherwise the chunk is whole segments, overlap included, and its range is theirs.
        assert!(
            c.text.split('\n').all(|line| texts[..long].contains(&line)),
            "{c:?}"
        );
        let first = (start / 2.0) as usize;
        let last = (end / 2.0) as usize - 1;
        assert_eq!(c.content(), texts[first..=last].join("\n"));
    }
    assert!(
        chunks
            .iter()
            .filter(|c| c.location
                == ChunkLocation::Time {
                    start: 40.0,
                    end: 95.5
                })
            .count()
            >= 4
    );
}

#[test]
fn a_ten_thousand_word_paragraph_is_split_into_bounded_overlapping_chunks() {
    let d = doc(vec![Segment::new(
        SegmentKind::Paragraph,
        text_of(0, 10_000),
        Location::Lines { start: 1, end: 1 },
    )]);
    let c = cfg(100, 10);
    let chunks = chunk(&d, &c);
    check(&d, &c, &chunks, &words);
    assert!(chunks.len() >= 100, "{} chunks", chunks.len());
    for pair in chunks.windows(2) {
        let overlap = &pair[1].text[..pair[1].overlap_chars as usize];
        assert!(words(overlap) > 0 && words(overlap) <= c.overlap_tokens);
        assert!(pair[0].content().ends_with(overlap.trim_end()));
        assert_eq!(pair[1].location, ChunkLocation::Lines { start: 1, end: 1 });
    }
    // The overlap-free contents are exactly the words, in order, each once.
    let contents: Vec<&str> = chunks.iter().map(Chunk::content).collect();
    assert_eq!(contents.join(" "), text_of(0, 10_000));
}

#[test]
fn a_heading_tops_up_with_the_start_of_a_long_paragraph() {
    let d = doc(vec![
        Segment::new(
            SegmentKind::Heading,
            "Summary",
            Location::Lines { start: 1, end: 1 },
        ),
        Segment::new(
            SegmentKind::Paragraph,
            text_of(0, 100),
            Location::Lines { start: 3, end: 9 },
        ),
    ]);
    let c = cfg(40, 5);
    let chunks = chunk(&d, &c);
    check(&d, &c, &chunks, &words);
    assert!(chunks[0].text.starts_with("Summary\nw0 "));
    assert_eq!(
        chunks[0].location,
        ChunkLocation::Lines { start: 1, end: 9 }
    );
    assert_eq!(chunks[0].token_count, 40);
}

#[test]
fn punctuation_cuts_lose_no_text() {
    let sentence = "Dr. Smith's cat, named \"Tiger\", ate 3.5 fish; then (surprisingly) slept! ";
    let d = doc(vec![Segment::new(
        SegmentKind::Paragraph,
        sentence.repeat(60),
        Location::Image,
    )]);
    let by_chars = |t: &str| t.chars().count().div_ceil(4) + 2;
    let c = cfg(20, 6);
    let chunks = chunk_document(&d, &c, &by_chars).expect("valid config");
    for c in &chunks {
        assert!(c.token_count <= 20 && c.token_count as usize == by_chars(&c.text));
        assert_eq!(c.location, ChunkLocation::Image);
    }
    let strip = |t: &str| t.split_whitespace().collect::<String>();
    assert_eq!(strip(&reassemble(&chunks)), strip(&d.plain_text()));
}

/// The MiniLM tokenizer from `DOCPIPE_MODELS_DIR` (default `<crate>/models`), if its files are there.
fn minilm() -> Option<TokenCounter> {
    let base = std::env::var_os("DOCPIPE_MODELS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"),
        PathBuf::from,
    );
    let dir = base.join(MODEL_DIR_NAME);
    if !dir.join("tokenizer.json").is_file() {
        eprintln!(
            "note: skipping tokenizer test, no model in {} (run `make models`)",
            dir.display()
        );
        return None;
    }
    Some(TokenCounter::from_model_dir(&dir).expect("tokenizer loads"))
}

#[test]
fn no_chunk_exceeds_the_minilm_window_with_the_real_tokenizer() {
    let Some(counter) = minilm() else {
        return;
    };
    let count = |t: &str| counter.count(t);
    let prose = "Die Überprüfung der Straßenbahn-Infrastruktur (2019–2024) ergab 1.234 Mängel; \
                 naïve café owners réclament 35 % d'indemnités. 東京の地下鉄は非常に便利です。 \
                 Antidisestablishmentarianism, pneumonoultramicroscopicsilicovolcanoconiosis! ";
    let mut segments = Vec::new();
    for s in 0..6u32 {
        let heading = format!("Chapter {s}: {}", "Findings and recommendations ".repeat(3));
        segments.push(Segment::new(
            SegmentKind::Heading,
            heading,
            Location::Section {
                heading_path: vec![format!("Chapter {s}")],
                block: s * 10,
            },
        ));
        for b in 1..4u32 {
            let repeat = 1 + (s as usize * 7 + b as usize * 13) % 40;
            segments.push(Segment::new(
                SegmentKind::Paragraph,
                prose.repeat(repeat),
                Location::Section {
                    heading_path: vec![format!("Chapter {s}")],
                    block: s * 10 + b,
                },
            ));
        }
    }
    segments.push(Segment::new(
        SegmentKind::Code,
        "x".repeat(5000),
        Location::Section {
            heading_path: Vec::new(),
            block: 99,
        },
    ));
    let d = doc(segments);
    let config = ChunkConfig::default();
    let chunks = chunk_document(&d, &config, &count).expect("valid config");
    check(&d, &config, &chunks, &count);
    assert!(chunks.len() > 20);
    for c in &chunks {
        assert!(counter.count(&c.text) <= crate::models::embed::MAX_TOKENS);
    }
    // Chunks are well filled: the budget is used, not wasted on tiny pieces.
    let full = chunks
        .iter()
        .filter(|c| c.token_count as usize > config.max_tokens / 2)
        .count();
    assert!(
        full * 2 > chunks.len(),
        "{full} of {} chunks over half full",
        chunks.len()
    );
}
