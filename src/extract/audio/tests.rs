//! Audio probe tests over the JFK fixtures.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::extract::Limits;

/// Allowed difference from the source length (AAC priming adds 0.064 s).
const DURATION_TOLERANCE: f64 = 0.1;

fn run_with(bytes: &[u8], format: Format, limits: &Limits) -> Result<Document, ExtractError> {
    let progress = |_: u64, _: u64, _: &'static str| {};
    let ctx = Context {
        limits,
        deadline: Instant::now() + Duration::from_secs(60),
        progress: &progress,
    };
    AudioExtractor.extract(&Input { bytes, format }, &ctx)
}

/// (name, bytes, expected.json, format)
const CASES: &[(&str, &[u8], &str, Format)] = &[
    (
        "jfk.wav",
        include_bytes!("../../../fixtures/audio/jfk.wav"),
        include_str!("../../../fixtures/audio/jfk.wav.expected.json"),
        Format::Wav,
    ),
    (
        "jfk.mp3",
        include_bytes!("../../../fixtures/audio/jfk.mp3"),
        include_str!("../../../fixtures/audio/jfk.mp3.expected.json"),
        Format::Mp3,
    ),
    (
        "jfk.flac",
        include_bytes!("../../../fixtures/audio/jfk.flac"),
        include_str!("../../../fixtures/audio/jfk.flac.expected.json"),
        Format::Flac,
    ),
    (
        "jfk.ogg",
        include_bytes!("../../../fixtures/audio/jfk.ogg"),
        include_str!("../../../fixtures/audio/jfk.ogg.expected.json"),
        Format::Ogg,
    ),
    (
        "jfk.m4a",
        include_bytes!("../../../fixtures/audio/jfk.m4a"),
        include_str!("../../../fixtures/audio/jfk.m4a.expected.json"),
        Format::M4a,
    ),
    (
        "jfk.aac",
        include_bytes!("../../../fixtures/audio/jfk.aac"),
        include_str!("../../../fixtures/audio/jfk.aac.expected.json"),
        Format::Aac,
    ),
];

#[test]
fn probes_every_container() {
    // The probe adds no text: the transcript comes from the pipeline's `transcribe` step (checked through the
    // server by tests/integration/audio.rs, against a word error rate).
    for (name, bytes, json, format) in CASES {
        let expected: Value = serde_json::from_str(json).expect("expected json");
        let doc = run_with(bytes, *format, &Limits::default()).expect(name);
        assert!(doc.segments.is_empty(), "{name}");
        for key in ["container", "codec", "sample_rate", "channels"] {
            assert_eq!(doc.metadata[key], expected[key], "{name}: {key}");
        }
        let got = doc.metadata["duration_seconds"].as_f64().expect("duration");
        let want = expected["duration_seconds"].as_f64().expect("duration");
        assert!(
            (got - want).abs() <= DURATION_TOLERANCE,
            "{name}: {got} vs {want}"
        );
        let decoded = doc.metadata["decoded_seconds"].as_f64().expect("decoded");
        assert!(
            (decoded - want).abs() <= DURATION_TOLERANCE,
            "{name}: decoded {decoded}"
        );
        assert_eq!(doc.metadata["decode_errors"], 0, "{name}");
    }
}

#[test]
fn damaged_files_are_corrupt() {
    let cases: [(&[u8], &str, Format, &str); 3] = [
        (
            include_bytes!("../../../fixtures/audio/jfk-truncated.wav"),
            include_str!("../../../fixtures/audio/jfk-truncated.wav.expected.json"),
            Format::Wav,
            "truncated audio",
        ),
        (
            include_bytes!("../../../fixtures/audio/jfk-truncated.mp3"),
            include_str!("../../../fixtures/audio/jfk-truncated.mp3.expected.json"),
            Format::Mp3,
            "truncated audio",
        ),
        (
            include_bytes!("../../../fixtures/audio/garbage.wav"),
            include_str!("../../../fixtures/audio/garbage.wav.expected.json"),
            Format::Wav,
            "not a readable audio file",
        ),
    ];
    for (bytes, json, format, reason) in cases {
        let expected: Value = serde_json::from_str(json).expect("expected json");
        let err = run_with(bytes, format, &Limits::default()).expect_err(reason);
        assert_eq!(err.code(), expected["error"], "{err}");
        assert!(err.to_string().contains(reason), "{err}");
    }
    let err = run_with(b"not audio at all", Format::Mp3, &Limits::default()).expect_err("junk");
    assert_eq!(err.code(), "corrupt_file");
}

#[test]
fn length_limit_and_progress() {
    let limits = Limits {
        max_audio_seconds: 5.0,
        ..Limits::default()
    };
    for (name, bytes, _, format) in CASES {
        let err = run_with(bytes, *format, &limits).expect_err(name);
        assert_eq!(err.code(), "limit_exceeded", "{name}");
    }

    let seen = Mutex::new(Vec::new());
    let progress = |done: u64, total: u64, unit: &'static str| {
        seen.lock().expect("lock").push((done, total, unit));
    };
    let limits = Limits::default();
    let ctx = Context {
        limits: &limits,
        deadline: Instant::now() + Duration::from_secs(60),
        progress: &progress,
    };
    let input = Input {
        bytes: CASES[0].1,
        format: Format::Wav,
    };
    AudioExtractor.extract(&input, &ctx).expect("extract");
    assert_eq!(
        seen.lock().expect("lock").last(),
        Some(&(11, 11, "seconds"))
    );

    let past = Context {
        limits: &limits,
        deadline: Instant::now(),
        progress: &progress,
    };
    let err = AudioExtractor.extract(&input, &past).expect_err("timeout");
    assert_eq!(err.code(), "extraction_timeout");
}
