//! Audio through the real server and the real Whisper model: uploads become timed transcripts that are
//! searchable, `/api/v1/transcribe/{id}` serves them, `/v1/audio/transcriptions` answers in every OpenAI
//! format (the official client included), and bad input gets clear errors.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Server, assert_bad_request, assert_error, fixture, json_of};

/// What JFK says in `fixtures/audio/jfk.*` (see `fixtures/audio/PROVENANCE.md`).
const JFK: &str = "And so my fellow Americans, ask not what your country can do for you, \
    ask what you can do for your country.";
/// Word error rate allowed on natural speech.
const MAX_WER_NATURAL: f64 = 0.15;
/// Word error rate allowed on espeak-ng speech.
const MAX_WER_SYNTHETIC: f64 = 0.25;

/// Lowercase words without punctuation (apostrophes kept).
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Word error rate: word-level edit distance over the reference length.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (words(reference), words(hypothesis));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

fn transcript_of(name: &str) -> String {
    String::from_utf8(fixture(&format!("audio/{name}.transcript.txt"))).expect("utf-8")
}

/// Segments are ordered, non-empty and inside the audio.
fn assert_timed(segments: &Value, duration: f64, what: &str) {
    let segs = segments.as_array().expect("segments");
    assert!(!segs.is_empty(), "{what}: no segments");
    let mut last_start = 0.0;
    for s in segs {
        let (start, end) = (
            s["start"].as_f64().expect("start"),
            s["end"].as_f64().expect("end"),
        );
        assert!(start >= last_start && start <= end, "{what}: {s}");
        assert!(end <= duration + 0.05, "{what}: {s} ends after {duration}");
        assert!(
            !s["text"].as_str().unwrap_or_default().trim().is_empty(),
            "{what}: {s}"
        );
        last_start = start;
    }
}

async fn transcribe_file(server: &Server, id: &str) -> (StatusCode, Value) {
    let resp = server
        .http
        .post(server.url(&format!("/api/v1/transcribe/{id}")))
        .send()
        .await
        .expect("transcribe");
    json_of(resp).await
}

#[tokio::test]
async fn audio_uploads_become_timed_searchable_transcripts() {
    let server = Server::start().await;

    // Natural speech.
    let jfk = server
        .upload_and_wait("jfk.wav", fixture("audio/jfk.wav"))
        .await;
    assert_eq!(jfk["status"], "ready", "{jfk}");
    let id = jfk["id"].as_str().expect("id");
    let (status, t) = transcribe_file(&server, id).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["language"], "en");
    assert_eq!(t["file_id"], id);
    let duration = t["duration"].as_f64().expect("duration");
    assert!((duration - 11.0).abs() < 0.1, "{t}");
    let text = t["transcription"].as_str().expect("text");
    assert!(
        wer(JFK, text) <= MAX_WER_NATURAL,
        "WER {} on {text:?}",
        wer(JFK, text)
    );
    assert_timed(&t["segments"], duration, "jfk.wav");

    // Synthetic speech in every container, and a longer read.
    let reference = transcript_of("lighthouse");
    let mut lighthouse_ids = Vec::new();
    for ext in ["wav", "mp3", "m4a", "ogg", "flac"] {
        let name = format!("lighthouse.{ext}");
        let r = server
            .upload_and_wait(&name, fixture(&format!("audio/{name}")))
            .await;
        assert_eq!(r["status"], "ready", "{r}");
        let id = r["id"].as_str().expect("id").to_owned();
        let (status, t) = transcribe_file(&server, &id).await;
        assert_eq!(status, StatusCode::OK, "{t}");
        let text = t["transcription"].as_str().expect("text");
        let e = wer(&reference, text);
        assert!(e <= MAX_WER_SYNTHETIC, "{name}: WER {e} on {text:?}");
        assert_timed(
            &t["segments"],
            t["duration"].as_f64().expect("duration"),
            &name,
        );
        lighthouse_ids.push(id);
    }
    let harbor = server
        .upload_and_wait("harbor.flac", fixture("audio/harbor.flac"))
        .await;
    let (_, t) = transcribe_file(&server, harbor["id"].as_str().expect("id")).await;
    let text = t["transcription"].as_str().expect("text");
    let e = wer(&transcript_of("harbor"), text);
    assert!(e <= MAX_WER_SYNTHETIC, "harbor: WER {e} on {text:?}");
    assert_timed(
        &t["segments"],
        t["duration"].as_f64().expect("duration"),
        "harbor",
    );

    // The transcript is the file's text, with time-range locations, chunked and searchable.
    let (_, doc) = server.get(&format!("/api/v1/files/{id}/text")).await;
    assert_eq!(doc["segments"][0]["kind"], "transcript", "{doc}");
    assert_eq!(doc["segments"][0]["location"]["type"], "time", "{doc}");
    let resp = server
        .http
        .post(server.url("/api/v1/search"))
        .json(&json!({"query": "where does the keeper feed the cats?", "top_k": 3}))
        .send()
        .await
        .expect("search");
    let (status, found) = json_of(resp).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let top = &found["results"][0];
    assert!(
        lighthouse_ids.iter().any(|i| top["file_id"] == i.as_str()),
        "{found}"
    );
    assert_eq!(top["location"]["type"], "time", "{top}");
    assert!(
        top["text"]
            .as_str()
            .is_some_and(|t| t.to_lowercase().contains("cats")),
        "{top}"
    );

    // Errors: another kind of file, an unknown id, a file still being transcribed.
    let note = server
        .upload_and_wait("note.txt", b"not audio".to_vec())
        .await;
    let (status, body) = transcribe_file(&server, note["id"].as_str().expect("id")).await;
    assert_error(
        status,
        &body,
        422,
        "not_audio",
        "invalid_request_error",
        Some("file_id"),
        "not audio",
    );
    let (status, body) = transcribe_file(&server, "file-doesnotexist").await;
    assert_error(
        status,
        &body,
        404,
        "file_not_found",
        "not_found_error",
        Some("file_id"),
        "no file",
    );
    let mut long = fixture("audio/harbor.flac");
    // Different bytes (a trailing pad the decoder ignores), so the stored transcript is not reused.
    long.extend_from_slice(&[0u8; 16]);
    let (status, queued) = server.upload("harbor-copy.flac", long).await;
    assert_eq!(status, StatusCode::CREATED, "{queued}");
    let id = queued["id"].as_str().expect("id");
    // Without waiting: 409 with Retry-After and the file's state.
    let resp = server
        .http
        .post(server.url(&format!("/api/v1/transcribe/{id}?wait_timeout=0")))
        .send()
        .await
        .expect("transcribe");
    assert!(
        resp.headers().contains_key("retry-after"),
        "{:?}",
        resp.headers()
    );
    let (status, body) = json_of(resp).await;
    assert_error(
        status,
        &body,
        409,
        "file_not_ready",
        "invalid_request_error",
        Some("file_id"),
        "retry later",
    );
    // By default the request waits for the transcript and answers it.
    let (status, body) = transcribe_file(&server, id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["transcription"]
            .as_str()
            .is_some_and(|t| !t.trim().is_empty()),
        "{body}"
    );
}

async fn openai_transcribe(
    server: &Server,
    name: &str,
    bytes: Vec<u8>,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
    );
    for (k, v) in fields {
        form = form.text((*k).to_owned(), (*v).to_owned());
    }
    let resp = server
        .http
        .post(server.url("/v1/audio/transcriptions"))
        .multipart(form)
        .send()
        .await
        .expect("transcriptions");
    (resp.status(), resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn openai_transcriptions_answer_in_every_format() {
    let server = Server::start().await;
    let jfk = || fixture("audio/jfk.mp3");
    let model = ("model", "whisper-1");

    let (status, body) = openai_transcribe(&server, "jfk.mp3", jfk(), &[model]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert!(
        wer(JFK, v["text"].as_str().expect("text")) <= MAX_WER_NATURAL,
        "{v}"
    );
    assert_eq!(
        v.as_object().map(serde_json::Map::len),
        Some(1),
        "only text: {v}"
    );

    let (_, text) = openai_transcribe(
        &server,
        "jfk.mp3",
        jfk(),
        &[model, ("response_format", "text")],
    )
    .await;
    assert!(wer(JFK, &text) <= MAX_WER_NATURAL, "{text}");

    let (_, srt) = openai_transcribe(
        &server,
        "jfk.mp3",
        jfk(),
        &[model, ("response_format", "srt")],
    )
    .await;
    let cue = regex_like_srt(&srt);
    assert!(cue, "not SubRip: {srt:?}");

    let (_, vtt) = openai_transcribe(
        &server,
        "jfk.mp3",
        jfk(),
        &[model, ("response_format", "vtt")],
    )
    .await;
    assert!(vtt.starts_with("WEBVTT\n\n"), "{vtt:?}");
    let first = vtt.lines().nth(2).unwrap_or_default();
    assert!(is_cue_line(first, '.'), "{vtt:?}");

    let (status, body) = openai_transcribe(
        &server,
        "jfk.mp3",
        jfk(),
        &[
            model,
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "word"),
            ("timestamp_granularities[]", "segment"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["task"], "transcribe");
    assert_eq!(v["language"], "english");
    let duration = v["duration"].as_f64().expect("duration");
    assert!((duration - 11.0).abs() < 0.2, "{v}");
    assert_timed(&v["segments"], duration, "verbose_json");
    let words = v["words"].as_array().expect("words");
    assert!(words.len() >= 15, "{v}");
    assert!(words.iter().any(|w| {
        w["word"]
            .as_str()
            .is_some_and(|t| t.to_lowercase().contains("country"))
    }));

    // Errors.
    let (status, body) = openai_transcribe(
        &server,
        "jfk.mp3",
        jfk(),
        &[model, ("response_format", "xml")],
    )
    .await;
    let b: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_bad_request(status, &b, Some("response_format"), "verbose_json");
    let (status, body) = openai_transcribe(&server, "jfk.mp3", jfk(), &[("model", "gpt-4o")]).await;
    let b: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_error(
        status,
        &b,
        404,
        "model_not_found",
        "invalid_request_error",
        Some("model"),
        "gpt-4o",
    );
    let (status, body) =
        openai_transcribe(&server, "jfk.mp3", jfk(), &[model, ("language", "fr")]).await;
    let b: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_bad_request(status, &b, Some("language"), "English only");
    let (status, body) = openai_transcribe(&server, "note.txt", b"hello".to_vec(), &[model]).await;
    let b: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_error(
        status,
        &b,
        422,
        "not_audio",
        "invalid_request_error",
        Some("file"),
        "not audio",
    );
    let (status, body) = openai_transcribe(
        &server,
        "garbage.wav",
        fixture("audio/garbage.wav"),
        &[model],
    )
    .await;
    let b: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_error(
        status,
        &b,
        422,
        "invalid_audio",
        "invalid_request_error",
        Some("file"),
        "audio",
    );
    // Still healthy.
    let (status, _) = server.get("/health").await;
    assert_eq!(status, StatusCode::OK);
}

/// `HH:MM:SS<sep>mmm --> HH:MM:SS<sep>mmm`.
fn is_cue_line(line: &str, sep: char) -> bool {
    let Some((a, b)) = line.split_once(" --> ") else {
        return false;
    };
    let ok = |t: &str| {
        let c: Vec<char> = t.chars().collect();
        c.len() == 12
            && c[2] == ':'
            && c[5] == ':'
            && c[8] == sep
            && c.iter()
                .enumerate()
                .all(|(i, ch)| [2, 5, 8].contains(&i) || ch.is_ascii_digit())
    };
    ok(a) && ok(b)
}

/// Numbered cues from 1, a timing line, text, a blank line.
fn regex_like_srt(srt: &str) -> bool {
    let blocks: Vec<&str> = srt.trim_end().split("\n\n").collect();
    !blocks.is_empty()
        && blocks.iter().enumerate().all(|(i, b)| {
            let lines: Vec<&str> = b.lines().collect();
            lines.len() >= 3 && lines[0] == (i + 1).to_string() && is_cue_line(lines[1], ',')
        })
}

#[tokio::test]
async fn the_official_openai_client_transcribes_in_every_format() {
    let server = Server::start().await;
    let script = r#"
import os
from openai import OpenAI
c = OpenAI(base_url=os.environ["BASE"] + "/v1", api_key="unused")
path = os.environ["AUDIO"]
def run(**kw):
    with open(path, "rb") as f:
        return c.audio.transcriptions.create(model="whisper-1", file=f, **kw)
r = run()
assert "ask not what your country" in r.text.lower(), r
r = run(response_format="text")
assert isinstance(r, str) and "country" in r.lower(), r
r = run(response_format="srt")
assert isinstance(r, str) and r.startswith("1\n00:00:"), r
r = run(response_format="vtt")
assert isinstance(r, str) and r.startswith("WEBVTT"), r
r = run(response_format="verbose_json", timestamp_granularities=["word", "segment"], language="en",
        prompt="Kennedy inaugural address", temperature=0)
assert r.language == "english" and 10.5 < r.duration < 11.5, r
assert r.segments and r.segments[0].start >= 0 and r.segments[-1].end <= r.duration + 0.05, r
assert r.words and any("country" in w.word.lower() for w in r.words), r
print("ok")
"#;
    let audio = crate::common::fixtures_dir().join("audio/jfk.wav");
    crate::common::run_openai_python(
        &server,
        &["-c".as_ref(), script.as_ref()],
        &[("AUDIO", audio.as_os_str())],
    )
    .await;
}

#[test]
fn word_error_rate_counts_edits_over_reference_words() {
    assert_eq!(wer("ask not what", "Ask not, what!"), 0.0);
    assert!((wer("a b c d", "a x c") - 0.5).abs() < 1e-9);
}

/// Three seconds of digital silence as a 16 kHz mono 16-bit WAV.
fn silent_wav() -> Vec<u8> {
    let samples = 16_000 * 3;
    let data_len = samples * 2;
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&16_000u32.to_le_bytes());
    wav.extend_from_slice(&32_000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data_len as u32).to_le_bytes());
    wav.resize(wav.len() + data_len, 0);
    wav
}

#[tokio::test]
async fn silence_is_transcribed_as_no_text() {
    let server = Server::start().await;
    let (status, body) = openai_transcribe(
        &server,
        "silence.wav",
        silent_wav(),
        &[("model", "whisper-1")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    let text = v["text"].as_str().expect("text");
    assert!(
        !text.contains("BLANK_AUDIO") && text.trim().is_empty(),
        "silence gave {text:?}"
    );
    let record = server.upload_and_wait("silence.wav", silent_wav()).await;
    let id = record["id"].as_str().expect("id");
    let (_, chunks) = server.get(&format!("/api/v1/files/{id}/chunks")).await;
    let texts: Vec<&str> = chunks["data"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["text"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        texts.iter().all(|t| !t.contains("BLANK_AUDIO")),
        "indexed {texts:?}: {record}"
    );
}
