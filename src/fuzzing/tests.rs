//! The fuzz smoke run of `make test`: every target on every matching fixture (its seed corpus, as
//! `fuzz/run.sh` builds it) and on deterministic mutations of each (bit flips, truncations, insertions,
//! overwrites, duplications and splices with another seed), plus the regression inputs under
//! `fixtures/fuzz/TARGET/` that cargo fuzz found.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::*;

/// Mutations of a seed of at most [`SMALL_SEED`] bytes; larger seeds get proportionally fewer.
const MUTATIONS: usize = 300;
/// Seeds up to this size get all [`MUTATIONS`].
const SMALL_SEED: usize = 32 * 1024;
/// Fewest mutations of any seed.
const MIN_MUTATIONS: usize = 12;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .collect();
    out.sort();
    out
}

/// The seed corpus of a target: the fixtures with one of its extensions (not the `.expected.` files),
/// then its regression inputs under `fixtures/fuzz/NAME/`.
fn seeds(target: &Target) -> Vec<(PathBuf, Vec<u8>)> {
    let regressions = fixtures().join("fuzz");
    let mut paths: Vec<PathBuf> = files_under(&fixtures())
        .into_iter()
        .filter(|p| !p.starts_with(&regressions))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
            !name.contains(".expected.")
                && target.seeds.contains(&ext.to_ascii_lowercase().as_str())
        })
        .collect();
    paths.extend(files_under(&regressions.join(target.name)));
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// splitmix64: a tiny deterministic PRNG, so every run mutates the same way.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Values that often sit on a parser's edge cases.
const INTERESTING: &[&[u8]] = &[
    &[0x00],
    &[0xFF],
    &[0x7F],
    &[0x80],
    &[0xFF, 0xFF, 0xFF, 0xFF],
    &[0x00, 0x00, 0x00, 0x00],
    &[0x7F, 0xFF, 0xFF, 0xFF],
    &[0xFF, 0xFF, 0xFF, 0x7F],
    b"999999999",
    b"-1",
    b"<",
    b"\"",
    b"\r\n",
];

/// One to four stacked mutations of `seed`, with `others` (the target's other seeds) for splices.
fn mutate(rng: &mut Rng, seed: &[u8], others: &[&[u8]]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 => data.truncate(rng.below(len + 1)),
            2 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let at = rng.below(len);
                let end = (at + value.len()).min(len);
                data[at..end].copy_from_slice(&value[..end - at]);
            }
            4 if len > 0 => {
                // Duplicate a slice in place (repeated records, nested structures).
                let from = rng.below(len);
                let to = (from + 1 + rng.below(256)).min(len);
                let copy = data[from..to].to_vec();
                data.splice(to..to, copy);
            }
            5 if !others.is_empty() => {
                // Splice: our head with another seed's tail.
                let other = others[rng.below(others.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ if len > 0 => {
                let at = rng.below(len);
                data[at] = rng.next() as u8;
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

/// Runs `target` on its seeds and their mutations; returns how many inputs it ran.
fn smoke(target: &Target) -> usize {
    let seeds = seeds(target);
    assert!(
        !seeds.is_empty(),
        "fuzz target {} has no seed under fixtures/",
        target.name
    );
    let start = Instant::now();
    let mut runs = 0;
    let mut rng = Rng(0x00D0_C919_E000 ^ target.name.len() as u64);
    for (i, (path, seed)) in seeds.iter().enumerate() {
        (target.run)(seed);
        runs += 1;
        let others: Vec<&[u8]> = seeds
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (_, b))| b.as_slice())
            .collect();
        let count = (MUTATIONS * SMALL_SEED / seed.len().max(1)).clamp(MIN_MUTATIONS, MUTATIONS);
        for m in 0..count {
            let input = mutate(&mut rng, seed, &others);
            let one = Instant::now();
            (target.run)(&input);
            runs += 1;
            let took = one.elapsed();
            assert!(
                took < DEADLINE * 2,
                "{}: mutation {m} of {} took {took:?}",
                target.name,
                path.display()
            );
        }
    }
    eprintln!(
        "fuzz smoke {}: {} seeds, {runs} inputs in {:?}",
        target.name,
        seeds.len(),
        start.elapsed()
    );
    runs
}

fn target(name: &str) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}

macro_rules! smoke_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                assert!(smoke(target(stringify!($name))) > 1);
            }
        )*
    };
}

smoke_tests!(
    pdf, docx, pptx, odt, xlsx, xls, ods, csv, html, text, image, audio, chunk, multipart
);

/// The multipart target's seeds really parse as the upload routes' form, so its mutations explore the
/// parser rather than only its first refusal; a body cut short is refused.
#[test]
fn multipart_seeds_parse_as_the_upload_form() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let seed = std::fs::read(fixtures().join("multipart/one-file.multipart")).expect("seed");
    let parse = |body: Vec<u8>| {
        rt.block_on(crate::api::parse_upload_form(
            body,
            super::MULTIPART_BOUNDARY,
        ))
    };
    assert_eq!(
        parse(seed.clone()),
        Ok("The inventory holds seven pears.\n".len())
    );
    assert!(parse(seed[..seed.len() / 2].to_vec()).is_err());
}

/// Every target has a smoke test above, a cargo-fuzz binary and a `[[bin]]` entry, and nothing more.
#[test]
fn targets_match_the_fuzz_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut on_disk: Vec<String> = files_under(&root.join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_owned))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|t| t.name.to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    for t in TARGETS {
        let source = std::fs::read_to_string(root.join(format!("fuzz_targets/{}.rs", t.name)))
            .expect("target source");
        assert!(
            source.contains(&format!("docpipe::fuzzing::{}(data)", t.name)),
            "fuzz_targets/{}.rs calls docpipe::fuzzing::{}",
            t.name,
            t.name
        );
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{}.rs\"", t.name)),
            "fuzz/Cargo.toml has a [[bin]] for {}",
            t.name
        );
    }
}

/// Every regression input sits under the name of an existing target.
#[test]
fn regressions_belong_to_targets() {
    let dir = fixtures().join("fuzz");
    for path in files_under(&dir) {
        let rel = path.strip_prefix(&dir).expect("under fixtures/fuzz");
        if rel.components().count() == 1 {
            continue; // README / PROVENANCE
        }
        let first = rel.components().next().expect("a component");
        let name = first.as_os_str().to_str().expect("UTF-8 name");
        assert!(
            TARGETS.iter().any(|t| t.name == name),
            "{} is not under a fuzz target's name",
            path.display()
        );
    }
}

/// The chunk target's document builder yields one segment per NUL-separated part, with the documented
/// location kind, so the chunker is really exercised on every shape.
#[test]
fn chunk_documents_have_every_shape() {
    let mut kinds = std::collections::BTreeSet::new();
    for shape in 0u8..7 {
        let doc = document_from_bytes(&[shape, 1, b'a', 0, 2, b'b', 0, 3]);
        assert_eq!(doc.segments.len(), 3);
        assert_eq!(doc.segments[0].text, "a");
        let tag = serde_json::to_value(&doc.segments[0].location).expect("serialises")["type"]
            .as_str()
            .expect("a tag")
            .to_owned();
        kinds.insert(tag);
    }
    assert_eq!(kinds.len(), 7, "{kinds:?}");
}

/// The chunk target's checks do fire: a long document is cut into several chunks that pass them.
#[test]
fn chunk_target_checks_a_real_chunking() {
    let mut data = vec![3u8];
    for i in 0..40 {
        data.push(if i % 10 == 0 { 1 } else { 11 });
        data.extend(std::iter::repeat_n(b"word ".as_slice(), 30).flatten());
        data.push(0);
    }
    let doc = document_from_bytes(&data);
    let chunks = chunk_document(&doc, &ChunkConfig::default(), &words).expect("chunks");
    assert!(chunks.len() > 3, "{} chunks", chunks.len());
    super::chunk(&data);
}

/// Every regression input under `fixtures/fuzz/` with the format its target extracts and the error code
/// it must now end in (`fixtures/fuzz/README.md` says what each one did before its fix).
const REGRESSIONS: &[(&str, Format, &str)] = &[
    ("xls/biff_short_record.xls", Format::Xls, "corrupt_file"),
    ("xls/cfb_fat_index.xls", Format::Xls, "corrupt_file"),
    ("xls/cfb_sector_past_end.xls", Format::Xls, "corrupt_file"),
    ("xls/cfb_short_fat_sector.xls", Format::Xls, "corrupt_file"),
    ("xls/cfb_directory_loop_a.xls", Format::Xls, "corrupt_file"),
    ("xls/cfb_directory_loop_b.xls", Format::Xls, "corrupt_file"),
];

/// Each regression input fails cleanly, with its recorded code, in well under the deadline, without a
/// panic escaping the extractor (nothing here catches one).
#[test]
fn regressions_fail_cleanly() {
    let dir = fixtures().join("fuzz");
    let mut found = Vec::new();
    for path in files_under(&dir) {
        let rel = path.strip_prefix(&dir).expect("under fixtures/fuzz");
        if rel.components().count() == 1 {
            continue; // README
        }
        let rel = rel.to_str().expect("UTF-8 path").to_owned();
        let Some(&(_, format, code)) = REGRESSIONS.iter().find(|r| r.0 == rel) else {
            panic!("{rel} is not listed in REGRESSIONS");
        };
        let bytes = std::fs::read(&path).expect("read the regression input");
        let start = Instant::now();
        let err = run_extractor(format, &bytes).expect_err("a regression input fails");
        assert_eq!(err.code(), code, "{rel}: {err}");
        assert!(
            start.elapsed() < DEADLINE,
            "{rel} took {:?}",
            start.elapsed()
        );
        found.push(rel);
    }
    found.sort();
    let mut listed: Vec<String> = REGRESSIONS.iter().map(|r| r.0.to_owned()).collect();
    listed.sort();
    assert_eq!(found, listed, "REGRESSIONS lists files that are not there");
}
