//! Declarative pipeline definitions, one TOML file per category in `pipelines/`: the steps a file of that
//! category goes through and their limits. Loaded and validated at start; a bad file stops start-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::chunk::ChunkConfig;
use crate::extract::{Limits, OcrMode};
use crate::types::Category;

/// The definitions shipped in the repository, built into the binary.
const BUILT_IN: [(&str, &str); 6] = [
    ("pdf.toml", include_str!("../../pipelines/pdf.toml")),
    ("office.toml", include_str!("../../pipelines/office.toml")),
    ("sheet.toml", include_str!("../../pipelines/sheet.toml")),
    ("text.toml", include_str!("../../pipelines/text.toml")),
    ("image.toml", include_str!("../../pipelines/image.toml")),
    ("audio.toml", include_str!("../../pipelines/audio.toml")),
];

/// Smallest memory limit of an extraction worker (the process itself needs some).
const MIN_WORKER_MEMORY_MB: u64 = 64;

/// A processing step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Read the file's own text (always first).
    Extract,
    /// OCR images and text-less pages (PDF and image pipelines only).
    Ocr,
    /// Transcribe speech into timed transcript segments (audio pipeline only).
    Transcribe,
    /// Split the text into token-bounded chunks along its structure.
    Chunk,
    /// Embed the chunks and index them (BM25 and vectors).
    Embed,
}

/// One category's pipeline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineDef {
    /// The category this definition is for; must match the file name.
    pub category: Category,
    /// What the pipeline does, for people.
    pub description: String,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Limits and settings of the steps.
    #[serde(default)]
    pub limits: Limits,
    /// Chunk sizes (`[chunking]`, used by the `chunk` step).
    #[serde(default)]
    pub chunking: ChunkConfig,
}

impl PipelineDef {
    /// True when files of this pipeline are transcribed (speech to text).
    pub fn transcribes(&self) -> bool {
        self.steps.contains(&Step::Transcribe)
    }

    /// True when files of this pipeline are chunked, embedded and indexed.
    pub fn indexes(&self) -> bool {
        self.steps.contains(&Step::Embed)
    }
}

/// Every category's pipeline.
#[derive(Debug, Clone)]
pub struct Pipelines {
    defs: BTreeMap<Category, PipelineDef>,
}

/// A definition that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("pipeline definition {file}: {reason}")]
pub struct DefinitionError {
    pub file: PathBuf,
    pub reason: String,
}

impl Pipelines {
    /// Loads the definitions from `dir`, or the built-in ones when `dir` is `None`.
    pub fn load(dir: Option<&Path>) -> Result<Pipelines, DefinitionError> {
        let mut sources = Vec::new();
        match dir {
            None => {
                for (name, text) in BUILT_IN {
                    sources.push((PathBuf::from("pipelines").join(name), text.to_owned()));
                }
            }
            Some(dir) => {
                for c in Category::ALL {
                    let file = dir.join(format!("{}.toml", c.as_str()));
                    let text = std::fs::read_to_string(&file).map_err(|e| DefinitionError {
                        file: file.clone(),
                        reason: format!("cannot read: {e}"),
                    })?;
                    sources.push((file, text));
                }
            }
        }
        let mut defs = BTreeMap::new();
        for (file, text) in sources {
            let def = parse(&file, &text)?;
            defs.insert(def.category, def);
        }
        Ok(Pipelines { defs })
    }

    /// The definition for a category. Every category has one after a successful [`load`](Self::load).
    pub fn get(&self, category: Category) -> &PipelineDef {
        self.defs
            .get(&category)
            .expect("load() checks that every category has a definition. This is a bug.")
    }

    /// All definitions.
    pub fn all(&self) -> impl Iterator<Item = &PipelineDef> {
        self.defs.values()
    }
}

/// Parses and validates one definition; `file` names it in errors and must be `<category>.toml`.
pub fn parse(file: &Path, text: &str) -> Result<PipelineDef, DefinitionError> {
    let fail = |reason: String| DefinitionError {
        file: file.to_owned(),
        reason,
    };
    let mut def: PipelineDef = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem != def.category.as_str() {
        return Err(fail(format!(
            "category `{}` does not match the file name (expected {}.toml)",
            def.category.as_str(),
            def.category.as_str()
        )));
    }
    if def.steps.first() != Some(&Step::Extract) {
        return Err(fail("the first step must be `extract`".into()));
    }
    let ocr_step = def.steps.contains(&Step::Ocr);
    if ocr_step && !matches!(def.category, Category::Pdf | Category::Image) {
        return Err(fail(
            "the `ocr` step only applies to the pdf and image pipelines".into(),
        ));
    }
    if def.steps.contains(&Step::Transcribe) && def.category != Category::Audio {
        return Err(fail(
            "the `transcribe` step only applies to the audio pipeline".into(),
        ));
    }
    let l = &def.limits;
    if l.timeout_secs == 0
        || l.max_pages == 0
        || l.max_inflated_bytes == 0
        || l.max_inflate_ratio == 0
    {
        return Err(fail(
            "timeout_secs, max_pages, max_inflated_bytes and max_inflate_ratio must be > 0".into(),
        ));
    }
    if l.max_cells == 0 || l.max_image_dimension == 0 || l.max_image_alloc_bytes == 0 {
        return Err(fail(
            "max_cells, max_image_dimension and max_image_alloc_bytes must be > 0".into(),
        ));
    }
    if l.max_worker_memory_mb < MIN_WORKER_MEMORY_MB {
        return Err(fail(format!(
            "max_worker_memory_mb must be at least {MIN_WORKER_MEMORY_MB}"
        )));
    }
    if l.max_segments == 0
        || l.max_text_bytes == 0
        || l.max_stream_bytes == 0
        || l.max_cmap_codes == 0
        || l.max_columns == 0
        || l.max_image_pixels == 0
        || l.max_chunks == 0
    {
        return Err(fail(
            "max_segments, max_text_bytes, max_stream_bytes, max_cmap_codes, max_columns, \
             max_image_pixels and max_chunks must be > 0"
                .into(),
        ));
    }
    if l.max_audio_seconds.is_nan() || l.max_audio_seconds <= 0.0 {
        return Err(fail("max_audio_seconds must be > 0".into()));
    }
    if !(72..=600).contains(&l.ocr_dpi) {
        return Err(fail("ocr_dpi must be between 72 and 600".into()));
    }
    if l.ocr_language.is_empty()
        || !l
            .ocr_language
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '_')
    {
        return Err(fail(
            "ocr_language must be Tesseract language codes such as `eng` or `eng+deu`".into(),
        ));
    }
    let has = |step| def.steps.contains(&step);
    if has(Step::Embed) && !has(Step::Chunk) {
        return Err(fail("the `embed` step needs the `chunk` step".into()));
    }
    def.chunking
        .validate(crate::models::embed::MAX_TOKENS)
        .map_err(|e| fail(format!("[chunking]: {e}")))?;
    // Without the ocr step, OCR is off whatever the limits say.
    if !ocr_step {
        def.limits.ocr = OcrMode::Off;
    }
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_definition_loads() {
        let p = Pipelines::load(None).expect("built-in definitions are valid");
        assert_eq!(p.all().count(), Category::ALL.len());
        assert_eq!(p.get(Category::Pdf).limits.ocr, OcrMode::Auto);
        assert_eq!(p.get(Category::Image).limits.ocr, OcrMode::On);
        assert_eq!(p.get(Category::Office).limits.ocr, OcrMode::Off);
        assert_eq!(p.get(Category::Sheet).limits.max_cells, 2_000_000);
        assert_eq!(p.get(Category::Audio).limits.max_audio_seconds, 7200.0);
        assert!(p.get(Category::Audio).transcribes());
        assert!(!p.get(Category::Pdf).transcribes());
        assert_eq!(p.get(Category::Text).limits.timeout_secs, 60);
        // The repository directory loads the same as the built-in copies.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
        let from_dir = Pipelines::load(Some(&dir)).expect("pipelines/ is valid");
        for c in Category::ALL {
            assert_eq!(from_dir.get(c), p.get(c));
        }
    }

    #[test]
    fn bad_definitions_are_refused_with_a_reason() {
        let cases = [
            (
                "pdf.toml",
                "category = \"pdf\"\ndescription = \"x\"\nsteps = [\"ocr\"]",
                "first step",
            ),
            (
                "text.toml",
                "category = \"pdf\"\ndescription = \"x\"\nsteps = [\"extract\"]",
                "file name",
            ),
            (
                "text.toml",
                "category = \"text\"\ndescription = \"x\"\nsteps = [\"extract\", \"ocr\"]",
                "only applies",
            ),
            (
                "pdf.toml",
                "category = \"pdf\"\ndescription = \"x\"\nsteps = [\"extract\", \"transcribe\"]",
                "audio pipeline",
            ),
            (
                "pdf.toml",
                "category = \"pdf\"\ndescription = \"x\"\nsteps = [\"extract\", \"teleport\"]",
                "unknown variant",
            ),
            (
                "pdf.toml",
                "category = \"pdf\"\ndescription = \"x\"\nsteps = [\"extract\"]\n[limits]\nmax_pagez = 3",
                "unknown field",
            ),
            (
                "pdf.toml",
                "category = \"pdf\"\ndescription = \"x\"\nsteps = [\"extract\"]\n[limits]\ntimeout_secs = 0",
                "> 0",
            ),
            (
                "pdf.toml",
                "category = \"pdf\"\ndescription = \"x\"\nsteps = [\"extract\"]\n[limits]\nocr_language = \"../x\"",
                "language",
            ),
        ];
        for (file, text, expected) in cases {
            let err = parse(Path::new(file), text).expect_err(text).to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
    }

    #[test]
    fn a_missing_directory_stops_loading() {
        let err =
            Pipelines::load(Some(Path::new("/nonexistent/pipelines"))).expect_err("missing dir");
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
