//! SubRip (`srt`) and WebVTT (`vtt`) renderings of timed segments.

use crate::app::transcription::Segment;

/// `HH:MM:SS<sep>mmm`.
fn timestamp(secs: f64, sep: char) -> String {
    let ms = (secs.max(0.0) * 1000.0).round() as u64;
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}{sep}{ms:03}")
}

/// SubRip: numbered cues from 1, `00:00:01,000 --> 00:00:02,500`, a blank line after each.
pub fn srt(segments: &[Segment]) -> String {
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        out.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            timestamp(s.start, ','),
            timestamp(s.end, ','),
            s.text.trim()
        ));
    }
    out
}

/// WebVTT: the `WEBVTT` header, then `00:00:01.000 --> 00:00:02.500` cues.
pub fn vtt(segments: &[Segment]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for s in segments {
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            timestamp(s.start, '.'),
            timestamp(s.end, '.'),
            s.text.trim()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: f64, end: f64, text: &str) -> Segment {
        Segment {
            start,
            end,
            text: text.into(),
            tokens: vec![],
            avg_logprob: 0.0,
            no_speech_prob: 0.0,
            words: vec![],
        }
    }

    #[test]
    fn renders_srt_and_vtt_cues() {
        let s = [seg(0.0, 2.5, " Hello."), seg(3661.25, 3662.0, "World")];
        assert_eq!(
            srt(&s),
            "1\n00:00:00,000 --> 00:00:02,500\nHello.\n\n2\n01:01:01,250 --> 01:01:02,000\nWorld\n\n"
        );
        assert_eq!(
            vtt(&s),
            "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello.\n\n01:01:01.250 --> 01:01:02.000\nWorld\n\n"
        );
    }
}
