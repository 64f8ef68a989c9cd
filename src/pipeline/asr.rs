//! The transcription step: audio bytes -> 16 kHz mono blocks -> the ASR engine -> timed transcript segments.
//!
//! What runs where: this runs on the caller's blocking thread (an extraction thread, or `spawn_blocking` for
//! the OpenAI endpoint) and waits on the ASR engine's queue (see `models::asr`). Audio is decoded and
//! transcribed block by block ([`BLOCK_SECS`]), so memory stays bounded for long files; each block ends at
//! the quietest moment of its last seconds, so words are rarely cut, and the end of the previous block's text
//! is given to the next as its prompt, so the decoder keeps its context.

use super::{FileOpError, Ingest};
use crate::extract::audio::decode::{Pcm16k, SAMPLE_RATE};
use crate::extract::{Context, DetectError, ExtractError, Format};
use crate::models::asr::{self, AsrError, AsrHandle, Segment, TranscribeOptions};
use crate::types::{Category, Document, FileRecord, Location, SegmentKind};

/// Audio transcribed per engine call.
pub const BLOCK_SECS: usize = 300;
/// A block is cut at the quietest frame within this many seconds of its end.
const CUT_WINDOW_SECS: usize = 4;
/// Frame length for the quiet-cut search: 20 ms.
const CUT_FRAME: usize = SAMPLE_RATE as usize / 50;
/// Characters of the previous block's text given as the next block's prompt.
const PROMPT_CHARS: usize = 200;
/// Progress unit.
const UNIT: &str = "seconds";

/// A transcript of a whole file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FileTranscript {
    /// Segments in time order, in seconds from the start of the file.
    pub segments: Vec<Segment>,
    /// Length of the decoded audio in seconds.
    pub duration: f64,
}

impl FileTranscript {
    /// The segments' texts joined by spaces.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self.segments.iter().map(|s| s.text.as_str()).collect();
        parts.join(" ")
    }
}

/// Why transcription failed.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    /// The audio cannot be decoded or is too long.
    #[error(transparent)]
    Audio(#[from] ExtractError),
    /// The engine failed.
    #[error(transparent)]
    Asr(#[from] AsrError),
}

impl From<TranscribeError> for ExtractError {
    fn from(e: TranscribeError) -> ExtractError {
        match e {
            TranscribeError::Audio(e) => e,
            TranscribeError::Asr(AsrError::Timeout) => ExtractError::Timeout,
            TranscribeError::Asr(e) => ExtractError::Transcription(e.to_string()),
        }
    }
}

/// Transcribes a whole file. `progress` gets (seconds done, seconds in all; 0 while unknown). With
/// `fail_fast`, a full engine queue fails the first block with [`AsrError::Overloaded`] instead of waiting.
pub fn transcribe_bytes(
    asr: &AsrHandle,
    bytes: &[u8],
    format: Option<Format>,
    max_secs: f64,
    options: &TranscribeOptions,
    progress: &(dyn Fn(f64, f64) + Sync),
    fail_fast: bool,
) -> Result<FileTranscript, TranscribeError> {
    let mut pcm = Pcm16k::open(bytes, format, max_secs)?;
    let total = pcm.declared_secs().unwrap_or(0.0);
    let block = BLOCK_SECS * SAMPLE_RATE as usize;
    let mut carry: Vec<f32> = Vec::new();
    let mut offset = 0usize;
    let mut segments: Vec<Segment> = Vec::new();
    loop {
        let mut samples = std::mem::take(&mut carry);
        let fresh = pcm.read(block - samples.len())?;
        let at_end = samples.len() + fresh.len() < block;
        samples.extend_from_slice(&fresh);
        if samples.is_empty() {
            break;
        }
        if !at_end {
            let cut = quiet_cut(&samples);
            carry = samples.split_off(cut);
        }
        let len = samples.len();
        let start = offset as f64 / f64::from(SAMPLE_RATE);
        let block_secs = len as f64 / f64::from(SAMPLE_RATE);
        let mut opts = options.clone();
        if let Some(previous) = segments.last() {
            opts.prompt = Some(tail(&previous_text(&segments, previous), PROMPT_CHARS));
        }
        let report = move |pct: i32| {
            let done = start + block_secs * f64::from(pct.clamp(0, 100)) / 100.0;
            (done, total.max(done))
        };
        // The engine thread calls this; a scoped thread hands the numbers on to `progress`, which need not be
        // `Send + 'static`. whisper-rs never drops the callback it is given, so the end is a `None` message
        // rather than the channel closing.
        let (tx, rx) = std::sync::mpsc::channel::<Option<(f64, f64)>>();
        let done = tx.clone();
        let callback: asr::ProgressFn = Box::new(move |pct| {
            let _ = tx.send(Some(report(pct)));
        });
        let result = std::thread::scope(|s| {
            let forward = s.spawn(move || {
                while let Ok(Some((done, all))) = rx.recv() {
                    progress(done, all);
                }
            });
            let wait = !fail_fast || offset > 0;
            let r = asr.transcribe_blocking(samples, opts, Some(callback), wait);
            let _ = done.send(None);
            let _ = forward.join();
            r
        })?;
        let block_end = start + block_secs;
        for seg in result.segments {
            let mut seg = seg.shifted(start);
            let floor = segments.last().map_or(0.0, |p: &Segment| p.start);
            seg.start = seg.start.clamp(floor, block_end);
            seg.end = seg.end.clamp(seg.start, block_end);
            if !seg.text.is_empty() {
                segments.push(seg);
            }
        }
        offset += len;
        progress(block_end, total.max(block_end));
        if at_end && carry.is_empty() {
            break;
        }
    }
    let duration = offset as f64 / f64::from(SAMPLE_RATE);
    crate::telemetry::metrics::audio_seconds_transcribed(duration);
    Ok(FileTranscript { segments, duration })
}

fn previous_text(segments: &[Segment], last: &Segment) -> String {
    // The last few segments are enough context; joining them all would be wasted work.
    let from = segments.len().saturating_sub(4);
    let mut text: Vec<&str> = segments[from..].iter().map(|s| s.text.as_str()).collect();
    if text.is_empty() {
        text.push(&last.text);
    }
    text.join(" ")
}

/// The last `n` characters of `text`, starting at a word.
fn tail(text: &str, n: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    let from = chars.len().saturating_sub(n);
    let s: String = chars[from..].iter().collect();
    let mid_word = from > 0 && chars[from - 1] != ' ';
    match s.find(' ') {
        Some(i) if mid_word => s[i + 1..].to_owned(),
        _ => s,
    }
}

/// Where to end a full block: the start of the quietest 20 ms frame in its last [`CUT_WINDOW_SECS`].
fn quiet_cut(samples: &[f32]) -> usize {
    let window = CUT_WINDOW_SECS * SAMPLE_RATE as usize;
    let from = samples.len().saturating_sub(window);
    let mut best = (f32::INFINITY, samples.len());
    let mut at = from;
    while at + CUT_FRAME <= samples.len() {
        let energy: f32 = samples[at..at + CUT_FRAME].iter().map(|x| x * x).sum();
        if energy < best.0 {
            best = (energy, at + CUT_FRAME / 2);
        }
        at += CUT_FRAME;
    }
    best.1
}

/// Adds the transcript of an audio file to its probed document: one [`SegmentKind::Transcript`] segment per
/// transcript segment, located by its time range. Progress is reported in seconds of audio.
pub fn add_transcript(
    mut doc: Document,
    asr: &AsrHandle,
    bytes: &[u8],
    format: Format,
    ctx: &Context<'_>,
) -> Result<Document, ExtractError> {
    let options = TranscribeOptions {
        deadline: Some(ctx.deadline),
        ..TranscribeOptions::default()
    };
    let progress = |done: f64, total: f64| ctx.report(done as u64, total.ceil() as u64, UNIT);
    let transcript = transcribe_bytes(
        asr,
        bytes,
        Some(format),
        ctx.limits.max_audio_seconds,
        &options,
        &progress,
        false,
    )?;
    doc.segments = transcript
        .segments
        .iter()
        .map(|s| {
            crate::types::Segment::new(
                SegmentKind::Transcript,
                s.text.clone(),
                Location::Time {
                    start: round_ms(s.start),
                    end: round_ms(s.end),
                },
            )
        })
        .collect();
    doc.set_meta("transcription_model", asr::MODEL_NAME);
    doc.set_meta("language", asr::LANGUAGE);
    doc.set_meta("transcribed_seconds", round_ms(transcript.duration));
    Ok(doc)
}

fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// The stored transcript of an uploaded audio file.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTranscript {
    /// The file.
    pub file: FileRecord,
    /// Timed segments: (start, end, text).
    pub segments: Vec<(f64, f64, String)>,
    /// Length of the audio in seconds.
    pub duration: f64,
    /// Language of the transcript.
    pub language: String,
}

impl StoredTranscript {
    /// The segments' texts joined by spaces.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self.segments.iter().map(|s| s.2.as_str()).collect();
        parts.join(" ")
    }
}

/// Why a stored transcript cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The file is not audio.
    #[error("file {id} is {category}, not audio")]
    NotAudio { id: String, category: &'static str },
    #[error(transparent)]
    File(#[from] FileOpError),
}

/// Why an uploaded clip cannot be transcribed.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// The bytes are not a supported file at all.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// A supported file, but not audio.
    #[error("the file is {0}, not audio (MP3, WAV, M4A/AAC, OGG or FLAC)")]
    NotAudio(&'static str),
    #[error(transparent)]
    Transcribe(#[from] TranscribeError),
    /// No engine was loaded.
    #[error("no speech recognition engine is loaded")]
    NoEngine,
}

impl Ingest {
    /// The transcript of an uploaded audio file, from its stored extraction.
    pub async fn transcript(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<StoredTranscript, TranscriptError> {
        let file = self.file(tenant, id).await?;
        if file.category != Category::Audio {
            return Err(TranscriptError::NotAudio {
                id: id.to_owned(),
                category: file.category.as_str(),
            });
        }
        let (file, doc) = self.document(tenant, id).await?;
        let segments = doc
            .segments
            .iter()
            .filter_map(|s| match s.location {
                Location::Time { start, end } => Some((start, end, s.text.clone())),
                _ => None,
            })
            .collect();
        let meta = |key: &str| doc.metadata.get(key).and_then(serde_json::Value::as_f64);
        Ok(StoredTranscript {
            file,
            segments,
            duration: meta("duration_seconds")
                .or_else(|| meta("transcribed_seconds"))
                .unwrap_or_default(),
            language: doc
                .metadata
                .get("language")
                .and_then(|v| v.as_str())
                .unwrap_or(asr::LANGUAGE)
                .to_owned(),
        })
    }

    /// Transcribes an audio clip given in a request (not stored). Fails fast when the engine is busy.
    pub async fn transcribe_clip(
        &self,
        bytes: Vec<u8>,
        filename: String,
        options: TranscribeOptions,
    ) -> Result<FileTranscript, ClipError> {
        let asr = self.asr().cloned().ok_or(ClipError::NoEngine)?;
        let max_secs = self
            .pipelines()
            .get(Category::Audio)
            .limits
            .max_audio_seconds;
        tokio::task::spawn_blocking(move || {
            let format = crate::extract::detect(&bytes, &filename)?;
            if format.category() != Category::Audio {
                return Err(ClipError::NotAudio(format.name()));
            }
            let no_progress = |_: f64, _: f64| {};
            Ok(transcribe_bytes(
                &asr,
                &bytes,
                Some(format),
                max_secs,
                &options,
                &no_progress,
                true,
            )?)
        })
        .await
        .map_err(|e| {
            ClipError::Transcribe(TranscribeError::Asr(AsrError::Inference(e.to_string())))
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_blocks_in_the_quietest_frame_near_the_end() {
        let rate = SAMPLE_RATE as usize;
        let mut s: Vec<f32> = (0..10 * rate)
            .map(|i| ((i % 50) as f32 / 50.0) - 0.5)
            .collect();
        // Silence from 8.0 s to 8.1 s.
        for x in &mut s[8 * rate..8 * rate + rate / 10] {
            *x = 0.0;
        }
        let cut = quiet_cut(&s);
        assert!((8 * rate..8 * rate + rate / 10).contains(&cut), "{cut}");
    }

    #[test]
    fn prompt_tail_starts_at_a_word() {
        assert_eq!(tail("ask not what your country", 12), "your country");
        assert_eq!(tail("ask not what your country", 10), "country");
        assert_eq!(tail("short", 200), "short");
    }
}
