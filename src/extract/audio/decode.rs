//! Streaming decode of any supported audio file to 16 kHz mono `f32`, the input of speech recognition.
//!
//! symphonia decodes packet by packet; channels are averaged to mono; rubato's FFT resampler converts the
//! rate in fixed input chunks. [`Pcm16k::read`] hands out blocks of a requested size, so a caller that
//! processes block by block holds at most one block (plus one packet and one resampler chunk) in memory,
//! whatever the file's length. Decoding stops with [`ExtractError::LimitExceeded`] past the duration limit.

use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Fft, FixedSync, Resampler};
use symphonia::core::codecs::audio::AudioDecoder;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatReader;

use super::super::{ExtractError, Format};

/// Output sample rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// Input frames per resampler call.
const RESAMPLE_CHUNK: usize = 4096;
/// Chunks of silence fed at the end at most, to flush the resampler's delay.
const MAX_FLUSH_CHUNKS: usize = 4;

/// A decoder producing 16 kHz mono samples on demand.
pub struct Pcm16k<'a> {
    reader: Box<dyn FormatReader + 'a>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    source_rate: u32,
    declared_secs: Option<f64>,
    max_secs: f64,
    resampler: Option<Fft<f32>>,
    /// Mono samples at the source rate, waiting for a full resampler chunk.
    pending: Vec<f32>,
    /// Output samples not handed out yet.
    ready: Vec<f32>,
    interleaved: Vec<f32>,
    /// Output samples still to drop: the resampler's delay.
    skip: usize,
    source_frames: u64,
    emitted: u64,
    packets: u64,
    errors: u64,
    finished: bool,
}

impl<'a> Pcm16k<'a> {
    /// Opens `bytes` (of the detected `format`; `None` lets symphonia probe the container).
    pub fn open(
        bytes: &'a [u8],
        format: Option<Format>,
        max_secs: f64,
    ) -> Result<Pcm16k<'a>, ExtractError> {
        let super::OpenAudio {
            reader,
            decoder,
            track_id,
            sample_rate: source_rate,
            declared_secs,
            ..
        } = super::open_audio(bytes, format)?;
        if let Some(secs) = declared_secs
            && secs > max_secs
        {
            return Err(too_long(max_secs, secs));
        }
        let resampler = if source_rate == SAMPLE_RATE {
            None
        } else {
            Some(
                Fft::<f32>::new(
                    source_rate as usize,
                    SAMPLE_RATE as usize,
                    RESAMPLE_CHUNK,
                    1,
                    FixedSync::Input,
                )
                .map_err(|e| {
                    ExtractError::Corrupt(format!("cannot resample {source_rate} Hz: {e}"))
                })?,
            )
        };
        let skip = resampler.as_ref().map_or(0, |r| r.output_delay());
        Ok(Pcm16k {
            reader,
            decoder,
            track_id,
            source_rate,
            declared_secs,
            max_secs,
            resampler,
            pending: Vec::new(),
            ready: Vec::new(),
            interleaved: Vec::new(),
            skip,
            source_frames: 0,
            emitted: 0,
            packets: 0,
            errors: 0,
            finished: false,
        })
    }

    /// The length the container declares, in seconds, when it declares one.
    pub fn declared_secs(&self) -> Option<f64> {
        self.declared_secs
    }

    /// Seconds decoded so far (at the source rate).
    pub fn decoded_secs(&self) -> f64 {
        self.source_frames as f64 / f64::from(self.source_rate)
    }

    /// Up to `n` samples; fewer only at the end of the audio, an empty vector after it.
    pub fn read(&mut self, n: usize) -> Result<Vec<f32>, ExtractError> {
        while self.ready.len() < n && !self.finished {
            self.pump()?;
        }
        let take = n.min(self.ready.len());
        let rest = self.ready.split_off(take);
        let out = std::mem::replace(&mut self.ready, rest);
        self.emitted += out.len() as u64;
        Ok(out)
    }

    /// Decodes everything (for short clips: the OpenAI endpoint).
    pub fn read_all(&mut self) -> Result<Vec<f32>, ExtractError> {
        let mut all = Vec::new();
        loop {
            let block = self.read(SAMPLE_RATE as usize * 60)?;
            if block.is_empty() {
                return Ok(all);
            }
            all.extend_from_slice(&block);
        }
    }

    /// Decodes one packet (or finishes the stream) and moves what it can through the resampler.
    fn pump(&mut self) -> Result<(), ExtractError> {
        let packet = match self.reader.next_packet() {
            Ok(Some(p)) => Some(p),
            // End of stream, or a file cut inside a packet: what decoded so far is kept.
            Ok(None) | Err(SymError::IoError(_) | SymError::ResetRequired) => None,
            Err(e) => {
                return Err(ExtractError::Corrupt(format!(
                    "cannot read audio packets: {e}"
                )));
            }
        };
        let Some(packet) = packet else {
            self.finish()?;
            return Ok(());
        };
        if packet.track_id != self.track_id {
            return Ok(());
        }
        self.packets += 1;
        match self.decoder.decode(&packet) {
            Ok(buffer) => {
                let channels = buffer.spec().channels().count().max(1);
                buffer.copy_to_vec_interleaved(&mut self.interleaved);
                let frames = self.interleaved.len() / channels;
                self.source_frames += frames as u64;
                let scale = 1.0 / channels as f32;
                self.pending.extend(
                    self.interleaved
                        .chunks_exact(channels)
                        .map(|frame| frame.iter().sum::<f32>() * scale),
                );
            }
            // A damaged packet is skipped; the probe step judges how much damage is acceptable.
            Err(SymError::DecodeError(_) | SymError::IoError(_)) => self.errors += 1,
            Err(e) => return Err(ExtractError::Corrupt(format!("cannot decode audio: {e}"))),
        }
        let secs = self.decoded_secs();
        if secs > self.max_secs {
            return Err(too_long(self.max_secs, secs));
        }
        self.resample(false)
    }

    fn finish(&mut self) -> Result<(), ExtractError> {
        self.finished = true;
        if self.source_frames == 0 {
            return Err(ExtractError::Corrupt(format!(
                "no audio could be decoded ({} packets, {} failed)",
                self.packets, self.errors
            )));
        }
        self.resample(true)
    }

    /// Resamples whole chunks of `pending`; at the end also the zero-padded remainder and enough silence to
    /// flush the resampler's delay, then trims the output to the exact length.
    fn resample(&mut self, last: bool) -> Result<(), ExtractError> {
        let Some(resampler) = self.resampler.as_mut() else {
            self.ready.append(&mut self.pending);
            return Ok(());
        };
        let expected = (self.source_frames as f64 * f64::from(SAMPLE_RATE)
            / f64::from(self.source_rate))
        .round() as u64;
        let mut out = vec![vec![0f32; resampler.output_frames_max()]];
        let mut consumed = 0;
        let mut flushes = 0;
        loop {
            let left = self.pending.len() - consumed;
            let produced_all = self.emitted + self.ready.len() as u64 >= expected;
            let flush = last && left == 0 && !produced_all && flushes < MAX_FLUSH_CHUNKS;
            if !(left >= RESAMPLE_CHUNK || (last && left > 0) || flush) {
                break;
            }
            flushes += usize::from(flush);
            let end = (consumed + RESAMPLE_CHUNK).min(self.pending.len());
            let mut chunk = self.pending[consumed..end].to_vec();
            chunk.resize(RESAMPLE_CHUNK, 0.0);
            consumed = end;
            let input = [chunk];
            let failed = |e: &dyn std::fmt::Display| {
                ExtractError::Corrupt(format!("resampling failed: {e}"))
            };
            let adapter_in =
                SequentialSliceOfVecs::new(&input, 1, RESAMPLE_CHUNK).map_err(|e| failed(&e))?;
            let max_out = out[0].len();
            let mut adapter_out =
                SequentialSliceOfVecs::new_mut(&mut out, 1, max_out).map_err(|e| failed(&e))?;
            let (_, produced) = resampler
                .process_into_buffer(&adapter_in, &mut adapter_out, None)
                .map_err(|e| failed(&e))?;
            let skip = self.skip.min(produced);
            self.skip -= skip;
            self.ready.extend_from_slice(&out[0][skip..produced]);
        }
        self.pending.drain(..consumed);
        if last {
            let have = self.emitted + self.ready.len() as u64;
            if have > expected {
                let extra = (have - expected) as usize;
                self.ready.truncate(self.ready.len().saturating_sub(extra));
            }
        }
        Ok(())
    }
}

fn too_long(max: f64, secs: f64) -> ExtractError {
    ExtractError::LimitExceeded(format!("audio longer than {max} s ({secs:.1} s)"))
}
