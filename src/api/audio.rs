//! Audio endpoints: the stored transcript of an uploaded file, and OpenAI's `/v1/audio/transcriptions`
//! (multipart; `json`, `text`, `srt`, `vtt` and `verbose_json`), so the official SDKs work unchanged.

mod subtitles;

use std::time::{Duration, Instant};

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::types::multipart::Upload;
use poem_openapi::{ApiResponse, Multipart, Object, OpenApi, ResponseContent};

use super::ApiTags;
use super::auth::Caller;
use super::error::{ApiError, ErrorCode};
use crate::app::App;
use crate::app::transcription::{FileTranscript, MODEL_NAME, TranscribeOptions};

/// Longest a `/v1/audio/transcriptions` request may compute.
const CLIP_DEADLINE: Duration = Duration::from_secs(1800);
/// OpenAI's name for the language in `verbose_json`.
const VERBOSE_LANGUAGE: &str = "english";

/// One timed piece of a transcript.
#[derive(Debug, Clone, Object)]
pub struct TimedSegment {
    /// Position in the transcript, from 0.
    pub id: u32,
    /// Start, seconds from the beginning of the audio.
    pub start: f64,
    /// End, seconds from the beginning of the audio.
    pub end: f64,
    /// What was said.
    pub text: String,
}

/// The transcript of an uploaded audio file.
#[derive(Debug, Clone, Object)]
pub struct FileTranscriptDto {
    /// The file.
    pub file_id: String,
    /// The whole transcript.
    pub transcription: String,
    /// ISO-639-1 code of the language (`en`).
    pub language: String,
    /// Length of the audio in seconds.
    pub duration: f64,
    /// The model that transcribed it.
    pub model: String,
    /// Timed segments in order.
    pub segments: Vec<TimedSegment>,
}

/// OpenAI's transcription form.
#[derive(Debug, Multipart)]
pub struct TranscriptionForm {
    /// The audio: MP3, WAV, M4A/AAC, OGG/Vorbis or FLAC.
    pub file: Upload,
    /// `whisper-1` or `whisper-tiny.en` (any `whisper*` name uses the local tiny.en model).
    pub model: String,
    /// ISO-639-1 language of the audio; only `en` is supported.
    pub language: Option<String>,
    /// Text to guide the model's style or spelling (names, jargon).
    pub prompt: Option<String>,
    /// `json` (default), `text`, `srt`, `vtt` or `verbose_json`.
    #[oai(validator(pattern = "^(json|text|srt|vtt|verbose_json)$"))]
    pub response_format: Option<String>,
    /// Sampling temperature between 0 and 1 (0 = deterministic).
    #[oai(validator(minimum(value = "0"), maximum(value = "1")))]
    pub temperature: Option<f64>,
    /// With `verbose_json`: `segment` (default) and/or `word` timestamps.
    #[oai(
        rename = "timestamp_granularities[]",
        validator(pattern = "^(segment|word)$")
    )]
    pub timestamp_granularities: Vec<String>,
}

/// A word with its timing.
#[derive(Debug, Clone, Object)]
pub struct TranscriptionWord {
    pub word: String,
    pub start: f64,
    pub end: f64,
}

/// A segment of `verbose_json`.
#[derive(Debug, Clone, Object)]
pub struct TranscriptionSegment {
    pub id: u32,
    /// Seek offset of the segment's window, in mel frames (10 ms).
    pub seek: u32,
    pub start: f64,
    pub end: f64,
    pub text: String,
    /// Token ids of the text.
    pub tokens: Vec<i32>,
    pub temperature: f64,
    /// Mean log-probability of the tokens.
    pub avg_logprob: f64,
    /// Text bytes over gzip-compressed bytes (not computed: 0).
    pub compression_ratio: f64,
    /// Probability that the window holds no speech.
    pub no_speech_prob: f64,
}

/// The JSON answer: `{text}` for `json`; with task, language, duration, segments (and words) for
/// `verbose_json`.
#[derive(Debug, Clone, Object)]
pub struct Transcription {
    /// The whole transcript.
    pub text: String,
    /// Always `transcribe` (verbose_json only).
    #[oai(skip_serializing_if_is_none)]
    pub task: Option<String>,
    /// The language, e.g. `english` (verbose_json only).
    #[oai(skip_serializing_if_is_none)]
    pub language: Option<String>,
    /// Length of the audio in seconds (verbose_json only).
    #[oai(skip_serializing_if_is_none)]
    pub duration: Option<f64>,
    /// Timed segments (verbose_json only).
    #[oai(skip_serializing_if_is_none)]
    pub segments: Option<Vec<TranscriptionSegment>>,
    /// Timed words (verbose_json with the `word` granularity only).
    #[oai(skip_serializing_if_is_none)]
    pub words: Option<Vec<TranscriptionWord>>,
}

/// The body in the requested format.
#[derive(Debug, ResponseContent)]
pub enum TranscriptionBody {
    /// `json` and `verbose_json`.
    Json(Json<Transcription>),
    /// `text`, `srt` and `vtt`.
    Text(PlainText<String>),
}

/// Answer of `/v1/audio/transcriptions`.
#[derive(Debug, ApiResponse)]
pub enum TranscriptionResponse {
    /// The transcript.
    #[oai(status = 200)]
    Ok(TranscriptionBody),
}

/// Output formats of `/v1/audio/transcriptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

impl Format {
    fn parse(s: Option<&str>) -> Result<Format, ApiError> {
        Ok(match s.unwrap_or("json") {
            "json" => Format::Json,
            "text" => Format::Text,
            "srt" => Format::Srt,
            "vtt" => Format::Vtt,
            "verbose_json" => Format::VerboseJson,
            other => {
                return Err(ApiError::with_param(
                    ErrorCode::InvalidRequest,
                    format!(
                        "response_format {other:?} is not one of json, text, srt, vtt, verbose_json"
                    ),
                    Some("response_format"),
                ));
            }
        })
    }
}

/// The audio endpoints.
pub struct AudioApi {
    pub app: App,
}

#[OpenApi]
impl AudioApi {
    /// Transcript of an uploaded audio file
    ///
    /// Audio uploads are transcribed by the pipeline; this returns the stored transcript with timed
    /// segments. A file still queued or processing is waited for (`wait_timeout` seconds, default 120, 0 to
    /// not wait); after that 409 with `Retry-After` and its progress. 409 without `Retry-After` when it
    /// failed, 422 for a file that is not audio, 404 for an unknown id.
    #[oai(
        path = "/api/v1/transcribe/:file_id",
        method = "post",
        tag = "ApiTags::Files"
    )]
    async fn transcribe_file(
        &self,
        caller: Caller,
        file_id: Path<String>,
        /// Seconds to wait for a file still being transcribed (default 120, at most 600).
        #[oai(validator(minimum(value = "0"), maximum(value = "600")))]
        wait_timeout: Query<Option<f64>>,
    ) -> Result<Json<FileTranscriptDto>, ApiError> {
        let wait = super::chat_wire::wait_of(wait_timeout.0)?;
        let t = self
            .app
            .transcript(&caller.tenant, &file_id.0, wait)
            .await?;
        Ok(Json(FileTranscriptDto {
            file_id: t.file.id.clone(),
            transcription: t.text(),
            language: t.language.clone(),
            duration: t.duration,
            model: MODEL_NAME.to_owned(),
            segments: t
                .segments
                .into_iter()
                .enumerate()
                .map(|(i, (start, end, text))| TimedSegment {
                    id: i as u32,
                    start,
                    end,
                    text,
                })
                .collect(),
        }))
    }

    /// Create a transcription (OpenAI)
    ///
    /// Transcribes the uploaded audio with the local Whisper tiny.en model and answers in the requested
    /// `response_format`. The clip is not stored. 503 with `Retry-After` when the engine's queue is full.
    #[oai(
        path = "/v1/audio/transcriptions",
        method = "post",
        tag = "ApiTags::OpenAi"
    )]
    async fn create_transcription(
        &self,
        _caller: Caller,
        form: TranscriptionForm,
    ) -> Result<TranscriptionResponse, ApiError> {
        let format = Format::parse(form.response_format.as_deref())?;
        if !form.model.starts_with("whisper") {
            return Err(ApiError::with_param(
                ErrorCode::ModelNotFound,
                format!(
                    "model {:?} does not exist; use whisper-1 or {}",
                    form.model, MODEL_NAME
                ),
                Some("model"),
            ));
        }
        let temperature = form.temperature.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&temperature) {
            return Err(ApiError::with_param(
                ErrorCode::InvalidRequest,
                "temperature must be between 0 and 1",
                Some("temperature"),
            ));
        }
        let words = form.timestamp_granularities.iter().any(|g| g == "word");
        if let Some(bad) = form
            .timestamp_granularities
            .iter()
            .find(|g| *g != "word" && *g != "segment")
        {
            return Err(ApiError::with_param(
                ErrorCode::InvalidRequest,
                format!("timestamp granularity {bad:?} is not one of segment, word"),
                Some("timestamp_granularities[]"),
            ));
        }
        let options = TranscribeOptions {
            language: form.language.clone(),
            prompt: form.prompt.clone(),
            temperature: temperature as f32,
            beam_size: None,
            word_timestamps: words && format == Format::VerboseJson,
            deadline: Some(Instant::now() + CLIP_DEADLINE),
        };
        let filename = form.file.file_name().unwrap_or("audio").to_owned();
        let bytes = form.file.into_vec().await.map_err(|e| {
            ApiError::with_param(ErrorCode::InvalidRequest, e.to_string(), Some("file"))
        })?;
        let t = self.app.transcribe_clip(bytes, filename, options).await?;
        Ok(TranscriptionResponse::Ok(render(
            format,
            &t,
            temperature,
            words,
        )))
    }
}

fn render(format: Format, t: &FileTranscript, temperature: f64, words: bool) -> TranscriptionBody {
    let text = t.text();
    match format {
        Format::Json => TranscriptionBody::Json(Json(Transcription {
            text,
            task: None,
            language: None,
            duration: None,
            segments: None,
            words: None,
        })),
        Format::Text => TranscriptionBody::Text(PlainText(text + "\n")),
        Format::Srt => TranscriptionBody::Text(PlainText(subtitles::srt(&t.segments))),
        Format::Vtt => TranscriptionBody::Text(PlainText(subtitles::vtt(&t.segments))),
        Format::VerboseJson => TranscriptionBody::Json(Json(Transcription {
            text,
            task: Some("transcribe".into()),
            language: Some(VERBOSE_LANGUAGE.into()),
            duration: Some(t.duration),
            segments: Some(
                t.segments
                    .iter()
                    .enumerate()
                    .map(|(i, s)| TranscriptionSegment {
                        id: i as u32,
                        seek: (s.start * 100.0) as u32,
                        start: s.start,
                        end: s.end,
                        text: s.text.clone(),
                        tokens: s.tokens.clone(),
                        temperature,
                        avg_logprob: s.avg_logprob,
                        compression_ratio: 0.0,
                        no_speech_prob: s.no_speech_prob,
                    })
                    .collect(),
            ),
            words: words.then(|| {
                t.segments
                    .iter()
                    .flat_map(|s| &s.words)
                    .map(|w| TranscriptionWord {
                        word: w.word.clone(),
                        start: w.start,
                        end: w.end,
                    })
                    .collect()
            }),
        })),
    }
}
