//! Audio probe (MP3, WAV, M4A, AAC/ADTS, Ogg Vorbis, FLAC): symphonia identifies the container and codec, then
//! every packet of the default audio track is decoded, to prove the file is playable and to measure its true
//! length. Decoded samples are dropped as soon as they are counted, so memory stays bounded.
//!
//! The document has no segments yet: transcription is a later pipeline step (ASR), which adds
//! [`SegmentKind::Transcript`](crate::types::SegmentKind::Transcript) segments located by
//! [`Location::Time`](crate::types::Location::Time). Metadata: `container`, `codec`, `sample_rate`, `channels`,
//! `duration_seconds` (as declared by the container when it declares one, else as decoded), `decoded_seconds`.
//!
//! Damage policy: a file whose container declares a length but of which less decodes (header says 11 s, 4 s of
//! samples are present) is [`ExtractError::Corrupt`], as is a file where no packet decodes or more than
//! [`MAX_DECODE_ERROR_RATIO`] of the packets fail. A last packet cut off by the end of the file is tolerated when
//! the decoded length still matches the declared one (within [`TRUNCATION_TOLERANCE`]).

pub mod decode;

use std::io::Cursor;

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

use super::{Context, ExtractError, Extractor, Format, Input};
use crate::types::Document;

/// Largest share of packets that may fail to decode before the file is called corrupt.
pub const MAX_DECODE_ERROR_RATIO: f64 = 0.05;
/// How much shorter than declared (as a share of the declared length) the decoded audio may be; encoder delay
/// and padding make small differences normal.
pub const TRUNCATION_TOLERANCE: f64 = 0.05;
/// The deadline is checked and progress reported every this many packets.
const PACKETS_PER_CHECK: u64 = 256;
/// Progress unit.
const UNIT: &str = "seconds";
/// Precision of reported durations: milliseconds.
const MS_PER_SECOND: f64 = 1000.0;

/// Extractor for [`Format::Mp3`], [`Format::Wav`], [`Format::M4a`], [`Format::Aac`], [`Format::Ogg`] and
/// [`Format::Flac`].
pub struct AudioExtractor;

impl Extractor for AudioExtractor {
    fn extract(&self, input: &Input<'_>, ctx: &Context<'_>) -> Result<Document, ExtractError> {
        ctx.check_deadline()?;
        let OpenAudio {
            mut reader,
            mut decoder,
            track_id,
            sample_rate,
            declared_secs: declared,
            channels,
        } = open_audio(input.bytes, Some(input.format))?;
        let container = reader.format_info().short_name;
        let codec = decoder.codec_info().short_name;
        if let Some(secs) = declared {
            check_length(secs, ctx)?;
        }
        let total_secs = declared.map_or(0, |s| s.ceil() as u64);

        let mut stats = Stats::default();
        let mut channels = channels;
        loop {
            let packet = match reader.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                // The file ends inside a packet, or the stream needs a reset we do not support: stop here and let
                // the length check below judge whether too much is missing.
                Err(SymError::IoError(_) | SymError::ResetRequired) => {
                    stats.cut_off = true;
                    break;
                }
                Err(e) => {
                    return Err(ExtractError::Corrupt(format!(
                        "cannot read audio packets: {e}"
                    )));
                }
            };
            if packet.track_id != track_id {
                continue;
            }
            stats.packets += 1;
            match decoder.decode(&packet) {
                Ok(buffer) => {
                    stats.frames += buffer.frames() as u64;
                    channels = channels.or(Some(buffer.spec().channels().count()));
                }
                Err(SymError::DecodeError(_) | SymError::IoError(_)) => stats.errors += 1,
                Err(e) => return Err(ExtractError::Corrupt(format!("cannot decode audio: {e}"))),
            }
            if stats.packets.is_multiple_of(PACKETS_PER_CHECK) {
                ctx.check_deadline()?;
                let secs = stats.seconds(sample_rate);
                check_length(secs, ctx)?;
                ctx.report(secs as u64, total_secs.max(secs as u64), UNIT);
            }
        }
        let decoded = stats.seconds(sample_rate);
        stats.judge(declared, decoded)?;
        check_length(decoded, ctx)?;
        ctx.report(decoded as u64, decoded as u64, UNIT);

        let mut doc = Document::default();
        doc.set_meta("container", container);
        doc.set_meta("codec", codec);
        doc.set_meta("sample_rate", sample_rate);
        if let Some(channels) = channels {
            doc.set_meta("channels", channels);
        }
        doc.set_meta("duration_seconds", round_ms(declared.unwrap_or(decoded)));
        doc.set_meta("decoded_seconds", round_ms(decoded));
        doc.set_meta("packets", stats.packets);
        doc.set_meta("decode_errors", stats.errors);
        Ok(doc)
    }
}

/// What decoding saw.
#[derive(Default)]
struct Stats {
    packets: u64,
    frames: u64,
    errors: u64,
    /// The file ended inside a packet.
    cut_off: bool,
}

impl Stats {
    fn seconds(&self, sample_rate: u32) -> f64 {
        self.frames as f64 / f64::from(sample_rate)
    }

    /// Applies the damage policy of the module documentation.
    fn judge(&self, declared: Option<f64>, decoded: f64) -> Result<(), ExtractError> {
        if self.frames == 0 {
            return Err(ExtractError::Corrupt(format!(
                "no audio could be decoded ({} packets, {} failed)",
                self.packets, self.errors
            )));
        }
        if self.errors as f64 > self.packets as f64 * MAX_DECODE_ERROR_RATIO {
            return Err(ExtractError::Corrupt(format!(
                "{} of {} audio packets failed to decode",
                self.errors, self.packets
            )));
        }
        if let Some(declared) = declared
            && decoded < declared * (1.0 - TRUNCATION_TOLERANCE)
        {
            let how = if self.cut_off {
                "the file ends early"
            } else {
                "samples are missing"
            };
            return Err(ExtractError::Corrupt(format!(
                "truncated audio: the container declares {declared:.1} s but only {decoded:.1} s decode ({how})"
            )));
        }
        Ok(())
    }
}

/// An audio file opened for decoding: its reader and the decoder of its default audio track.
pub(crate) struct OpenAudio<'a> {
    pub reader: Box<dyn FormatReader + 'a>,
    pub decoder: Box<dyn AudioDecoder>,
    pub track_id: u32,
    pub sample_rate: u32,
    /// Length the container declares, when it does.
    pub declared_secs: Option<f64>,
    /// Channels the codec parameters declare, when they do.
    pub channels: Option<usize>,
}

/// Probes `bytes` (of `format`; `None` lets symphonia guess the container) and opens a decoder for its first
/// audio track with a known codec (else its first audio track).
pub(crate) fn open_audio(
    bytes: &[u8],
    format: Option<Format>,
) -> Result<OpenAudio<'_>, ExtractError> {
    let mss = MediaSourceStream::new(
        Box::new(Cursor::new(bytes)),
        MediaSourceStreamOptions::default(),
    );
    let mut hint = Hint::new();
    if let Some(f) = format {
        hint.with_extension(extension(f));
    }
    let reader = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| ExtractError::Corrupt(format!("not a readable audio file: {e}")))?;
    let track = reader
        .first_track_known_codec(TrackType::Audio)
        .or_else(|| reader.first_track(TrackType::Audio))
        .ok_or_else(|| ExtractError::Corrupt("the file has no audio track".into()))?;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| ExtractError::Corrupt("the audio track has no codec parameters".into()))?;
    let decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| ExtractError::Corrupt(format!("unsupported or damaged audio codec: {e}")))?;
    let sample_rate = params
        .sample_rate
        .ok_or_else(|| ExtractError::Corrupt("the audio track declares no sample rate".into()))?;
    Ok(OpenAudio {
        track_id: track.id,
        sample_rate,
        declared_secs: track.num_frames.map(|n| n as f64 / f64::from(sample_rate)),
        channels: params.channels.as_ref().map(|c| c.count()),
        decoder,
        reader,
    })
}

fn extension(format: Format) -> &'static str {
    match format {
        Format::Mp3 => "mp3",
        Format::Wav => "wav",
        Format::M4a => "m4a",
        Format::Aac => "aac",
        Format::Ogg => "ogg",
        Format::Flac => "flac",
        _ => "",
    }
}

fn check_length(secs: f64, ctx: &Context<'_>) -> Result<(), ExtractError> {
    if secs > ctx.limits.max_audio_seconds {
        return Err(ExtractError::LimitExceeded(format!(
            "audio longer than {} s ({secs:.1} s)",
            ctx.limits.max_audio_seconds
        )));
    }
    Ok(())
}

fn round_ms(secs: f64) -> f64 {
    (secs * MS_PER_SECOND).round() / MS_PER_SECOND
}

#[cfg(test)]
mod tests;
