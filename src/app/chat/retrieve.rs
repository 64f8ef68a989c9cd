//! Which chunks of the chosen files become candidate sources, best first: the chunks a question points at
//! by position (`page 3`, `slide 2`, `the first row`, `row 12`), the search's best hit, the chunks whose
//! heading it names, the next hit, the neighbours of the best one, the other hits, then (for files that fit the
//! largest budget) the rest in document order. Pure functions over the files' chunks.

use crate::chunk::ChunkLocation;

use super::grounded::Candidate;

/// Chunks a question's position or structure cues may add, at most.
const MAX_STRUCTURAL: usize = 3;
/// Hits whose neighbours come right after the first hits.
const NEIGHBOURS_OF: usize = 1;
/// Hits placed before the neighbours of the best one.
const HITS_BEFORE_NEIGHBOURS: usize = 2;

/// Nouns that make `first`/`last` (or an ordinal) point at a place in a file. Not `line`, `word` or
/// `sentence`: "the last line of a paragraph" is about typesetting, not the end of the file.
const PLACE_NOUNS: &[&str] = &[
    "row",
    "rows",
    "record",
    "records",
    "entry",
    "entries",
    "item",
    "items",
    "sample",
    "samples",
    "page",
    "pages",
    "slide",
    "slides",
    "observation",
    "observations",
    "instance",
    "instances",
    "chapter",
];

/// Ordinal words, from `first` (1).
const ORDINALS: &[&str] = &[
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
];

/// Where a question points.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cues {
    /// Pages named (`page 3`, `the second page`).
    pub pages: Vec<u32>,
    /// Slides named.
    pub slides: Vec<u32>,
    /// Data rows or lines named by number (`row 4`, `the third row`), 1-based.
    pub rows: Vec<u32>,
    /// The start of the file (`the first row`, `the first sample`).
    pub first: bool,
    /// The end of the file (`the last row`, `the final page`).
    pub last: bool,
    /// `the first <anything>` (`the first house listed`): the start of a table, though not of a text, where
    /// "the first time" is no place.
    pub first_in_table: bool,
    /// `the last <anything>`, the same for the end.
    pub last_in_table: bool,
    /// The question, lower-cased, for heading matches.
    lower: String,
}

impl Cues {
    /// Reads the cues of a question.
    pub fn of(question: &str) -> Cues {
        let lower = question.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let mut cues = Cues {
            lower: lower.clone(),
            ..Cues::default()
        };
        let near_noun = |i: usize| -> Option<&str> {
            words
                .iter()
                .skip(i + 1)
                .take(3)
                .copied()
                .find(|w| PLACE_NOUNS.contains(w))
        };
        for (i, w) in words.iter().enumerate() {
            let number = words.get(i + 1).and_then(|n| n.parse::<u32>().ok());
            match (*w, number) {
                ("page" | "p", Some(n)) => cues.pages.push(n),
                ("slide", Some(n)) => cues.slides.push(n),
                ("row" | "line" | "record" | "entry", Some(n)) => cues.rows.push(n),
                _ => {}
            }
            let last_word = matches!(*w, "last" | "final" | "bottom");
            let ordinal = ORDINALS.iter().position(|o| o == w).map(|p| p as u32 + 1);
            if i > 0 && words[i - 1] == "the" && words.get(i + 1).is_some() {
                cues.first_in_table |= ordinal == Some(1) || *w == "top";
                cues.last_in_table |= last_word;
            }
            if let Some(noun) = near_noun(i) {
                if last_word {
                    cues.last = true;
                }
                if let Some(n) = ordinal {
                    match noun {
                        "page" | "pages" => cues.pages.push(n),
                        "slide" | "slides" => cues.slides.push(n),
                        _ if n == 1 => cues.first = true,
                        _ => cues.rows.push(n),
                    }
                }
            }
        }
        cues
    }

    /// True when the question names a heading of this chunk (a heading of at least two words or five
    /// letters, found whole in the question).
    fn names_heading(&self, heading_path: &[String]) -> bool {
        heading_path.iter().any(|h| {
            let h = h.trim().to_lowercase();
            let long_enough = h.split_whitespace().count() >= 2 || h.chars().count() >= 5;
            long_enough && self.lower.contains(&h)
        })
    }
}

/// One file's chunks in document order.
pub struct FileChunks<'a> {
    /// The chunks.
    pub chunks: &'a [Candidate],
}

/// The chunks a question's cues point at, at most [`MAX_STRUCTURAL`] in all.
#[derive(Debug, Default)]
pub struct Pointed {
    /// By position (`page 3`, `slide 2`, `row 12`, `the first row`, `the last page`), in file then
    /// document order. Precise: they go before the search's best hit.
    pub by_position: Vec<Candidate>,
    /// By a heading the question names. A name can be a coincidence: they go after the best hit.
    pub by_heading: Vec<Candidate>,
}

/// The chunks the cues point at.
pub fn structural(cues: &Cues, files: &[FileChunks<'_>]) -> Pointed {
    let mut out = Pointed::default();
    let add = |c: &Candidate, heading: bool, out: &mut Pointed| {
        let taken = out.by_position.len() + out.by_heading.len();
        let seen = out
            .by_position
            .iter()
            .chain(&out.by_heading)
            .any(|o| o.chunk_id == c.chunk_id);
        if taken < MAX_STRUCTURAL && !seen {
            if heading {
                out.by_heading.push(c.clone());
            } else {
                out.by_position.push(c.clone());
            }
        }
    };
    for f in files {
        for c in f.chunks {
            let loc = location(c);
            let by_position = match &loc {
                Some(ChunkLocation::Pages { from, to, .. }) => {
                    cues.pages.iter().any(|p| (from..=to).contains(&p))
                }
                Some(ChunkLocation::Slides { from, to }) => {
                    cues.slides.iter().any(|s| (from..=to).contains(&s))
                }
                Some(ChunkLocation::Cells { range, .. }) => rows_of(range).is_some_and(|(a, b)| {
                    // Data row n is sheet row n + 1 under a header row; either reading may be meant.
                    cues.rows
                        .iter()
                        .any(|&r| (a..=b).contains(&r) || (a..=b).contains(&(r + 1)))
                }),
                Some(ChunkLocation::Lines { start, end }) => {
                    cues.rows.iter().any(|r| (start..=end).contains(&r))
                }
                Some(
                    ChunkLocation::Section { .. }
                    | ChunkLocation::Time { .. }
                    | ChunkLocation::Image,
                )
                | None => false,
            };
            let by_heading = matches!(&loc, Some(ChunkLocation::Section { heading_path, .. })
                if cues.names_heading(heading_path));
            if by_position {
                add(c, false, &mut out);
            } else if by_heading {
                add(c, true, &mut out);
            }
        }
        let is_sheet = |c: &Candidate| sheet_of(c).is_some();
        if cues.first || cues.first_in_table {
            for c in firsts(f.chunks) {
                if cues.first || is_sheet(c) {
                    add(c, false, &mut out);
                }
            }
        }
        if let Some(c) = f.chunks.last()
            && (cues.last || (cues.last_in_table && is_sheet(c)))
        {
            add(c, false, &mut out);
        }
    }
    out
}

/// A chunk's location, when it has a known shape.
fn location(c: &Candidate) -> Option<ChunkLocation> {
    serde_json::from_value(c.location.clone()).ok()
}

/// The sheet a chunk of a spreadsheet is on; `None` for any other chunk.
fn sheet_of(c: &Candidate) -> Option<String> {
    match location(c)? {
        ChunkLocation::Cells { sheet, .. } => Some(sheet),
        _ => None,
    }
}

/// The first chunk of a file, and of each of its sheets.
fn firsts(chunks: &[Candidate]) -> Vec<&Candidate> {
    let mut out: Vec<&Candidate> = Vec::new();
    let mut sheets: Vec<String> = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        match sheet_of(c) {
            Some(s) if !sheets.contains(&s) => {
                sheets.push(s);
                out.push(c);
            }
            None if i == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The rows of an A1 range (`A1:D9` -> 1..=9).
fn rows_of(range: &str) -> Option<(u32, u32)> {
    let row = |cell: &str| {
        cell.trim_start_matches(|c: char| c.is_ascii_alphabetic() || c == '$')
            .parse::<u32>()
            .ok()
    };
    let (a, b) = range.split_once(':').unwrap_or((range, range));
    Some((row(a)?, row(b)?))
}

/// The candidate list: the chunks the question points at by position, the best hit, the chunks it points
/// at by heading, the next hit, the best hit's neighbours, the other hits, and then (`rest` true) every
/// other chunk in document order. No chunk twice. A heading cue comes after the best hit because a name
/// can be a coincidence ("the Python section" of a file whose heading is "Python"), while search is rarely
/// wrong twice; a position cue ("row 12", "page 3", "the first sample") is precise.
pub fn rank(
    pointed: Pointed,
    hits: Vec<Candidate>,
    files: &[FileChunks<'_>],
    rest: bool,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let push = |c: Candidate, out: &mut Vec<Candidate>| {
        if !out.iter().any(|o| o.chunk_id == c.chunk_id) {
            out.push(c);
        }
    };
    let neighbours: Vec<Candidate> = hits
        .iter()
        .take(NEIGHBOURS_OF)
        .flat_map(|h| neighbours_of(h, files))
        .collect();
    let mut hits = hits.into_iter();
    for c in pointed.by_position {
        push(c, &mut out);
    }
    for c in hits.by_ref().take(1) {
        push(c, &mut out);
    }
    for c in pointed.by_heading {
        push(c, &mut out);
    }
    for c in hits.by_ref().take(HITS_BEFORE_NEIGHBOURS - 1) {
        push(c, &mut out);
    }
    for c in neighbours {
        push(c, &mut out);
    }
    for c in hits {
        push(c, &mut out);
    }
    if rest {
        for f in files {
            for c in f.chunks {
                push(c.clone(), &mut out);
            }
        }
    }
    out
}

/// The chunks right after and right before a hit in its file.
fn neighbours_of(hit: &Candidate, files: &[FileChunks<'_>]) -> Vec<Candidate> {
    for f in files {
        if let Some(i) = f.chunks.iter().position(|c| c.chunk_id == hit.chunk_id) {
            let mut out = Vec::new();
            if let Some(next) = f.chunks.get(i + 1) {
                out.push(next.clone());
            }
            if let Some(prev) = i.checked_sub(1).and_then(|p| f.chunks.get(p)) {
                out.push(prev.clone());
            }
            return out;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunk(n: usize, location: serde_json::Value) -> Candidate {
        Candidate {
            chunk_id: format!("f#{n}"),
            file_id: "f".into(),
            filename: "f".into(),
            location,
            text: format!("chunk {n}"),
            excerpt: None,
        }
    }

    fn ids(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.chunk_id.as_str()).collect()
    }

    #[test]
    fn cues_of_questions() {
        let c = Cues::of("What is the proline value of the first wine sample in the table?");
        assert!(c.first && !c.last);
        assert_eq!(Cues::of("What does page 3 say?").pages, [3]);
        assert_eq!(Cues::of("Summarise the second slide").slides, [2]);
        assert_eq!(Cues::of("What is in row 12?").rows, [12]);
        assert_eq!(Cues::of("the third row of the sheet").rows, [3]);
        assert!(Cues::of("What is in the last row?").last);
        assert!(!Cues::of("the space at the end of a paragraph's last line").last);
        // `first` without a place noun is not a position.
        let none = Cues::of("Who first described the method?");
        assert!(!none.first && none.rows.is_empty() && !none.first_in_table);
        // `the first <anything>` is the start of a table only.
        let house = Cues::of("What is the TAX value of the first house listed?");
        assert!(!house.first && house.first_in_table && !house.last_in_table);
        assert!(Cues::of("Which is the last flower in the file?").last_in_table);
    }

    #[test]
    fn structure_points_at_chunks() {
        let sheet = |n: usize, range: &str| {
            chunk(n, json!({"type": "cells", "sheet": "S", "range": range}))
        };
        let rows = [sheet(0, "A1:N20"), sheet(1, "A21:N40"), sheet(2, "A41:N60")];
        let files = [FileChunks { chunks: &rows }];
        assert_eq!(
            ids(&structural(&Cues::of("the first sample's value"), &files).by_position),
            ["f#0"]
        );
        assert_eq!(
            ids(&structural(&Cues::of("the last row"), &files).by_position),
            ["f#2"]
        );
        assert_eq!(
            ids(&structural(&Cues::of("what is in row 25?"), &files).by_position),
            ["f#1"]
        );
        assert_eq!(
            ids(&structural(&Cues::of("the TAX of the first house listed"), &files).by_position),
            ["f#0"]
        );
        let pages = [
            chunk(
                0,
                json!({"type": "pages", "from": 1, "to": 2, "ocr": false}),
            ),
            chunk(
                1,
                json!({"type": "pages", "from": 3, "to": 3, "ocr": false}),
            ),
        ];
        let files = [FileChunks { chunks: &pages }];
        assert_eq!(
            ids(&structural(&Cues::of("what is on page 3"), &files).by_position),
            ["f#1"]
        );
        assert!(
            structural(&Cues::of("the first time it was released"), &files)
                .by_position
                .is_empty()
        );
        let sections = [
            chunk(
                0,
                json!({"type": "section", "heading_path": ["Intro"], "blocks": {"from": 1, "to": 2}}),
            ),
            chunk(
                1,
                json!({"type": "section", "heading_path": ["Installation"], "blocks": {"from": 3, "to": 4}}),
            ),
        ];
        let files = [FileChunks { chunks: &sections }];
        assert_eq!(
            ids(
                &structural(&Cues::of("What does the Installation section say?"), &files)
                    .by_heading
            ),
            ["f#1"]
        );
    }

    #[test]
    fn ranking_puts_neighbours_after_the_first_hits() {
        let all: Vec<Candidate> = (0..6).map(|n| chunk(n, serde_json::Value::Null)).collect();
        let files = [FileChunks { chunks: &all }];
        let hits = vec![all[3].clone(), all[0].clone(), all[5].clone()];
        let heading = Pointed {
            by_position: Vec::new(),
            by_heading: vec![all[1].clone()],
        };
        let r = rank(heading, hits.clone(), &files, false);
        assert_eq!(ids(&r), ["f#3", "f#1", "f#0", "f#4", "f#2", "f#5"]);
        let position = Pointed {
            by_position: vec![all[1].clone()],
            by_heading: Vec::new(),
        };
        let r = rank(position, hits.clone(), &files, false);
        assert_eq!(ids(&r), ["f#1", "f#3", "f#0", "f#4", "f#2", "f#5"]);
        let r = rank(Pointed::default(), hits, &files, true);
        assert_eq!(ids(&r), ["f#3", "f#0", "f#4", "f#2", "f#5", "f#1"]);
    }
}
