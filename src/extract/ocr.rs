//! OCR with the Tesseract CLI and PDF page rendering with poppler's `pdftoppm`.
//!
//! Both run as child processes fed through stdin and read from stdout, instead of through a binding
//! crate (`leptess`, `tesseract`): a crash in Tesseract or poppler on a crafted image then cannot take
//! the server down, every call has a hard timeout (the child is killed when it passes), and the build
//! needs no bindgen/libclang. The cost, a process start per page (a few ms), is small next to OCR itself.
//!
//! What may block: each call blocks its (worker) thread until the child exits or the timeout passes;
//! two helper threads per call feed stdin and drain stdout/stderr so a full pipe can never deadlock.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::ExtractError;

/// The Tesseract executable, looked up on `PATH`.
const TESSERACT: &str = "tesseract";
/// The poppler page renderer, looked up on `PATH`.
const PDFTOPPM: &str = "pdftoppm";
/// How often a running child is polled for exit.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Most bytes of a child's stderr kept for an error message.
const MAX_STDERR_IN_MESSAGE: usize = 500;

/// Runs Tesseract on a PNG (or any image format Leptonica reads) and returns the normalised text.
///
/// `language` is Tesseract's `-l` value (e.g. `eng`, `eng+deu`). The process is killed when `timeout`
/// passes ([`ExtractError::Timeout`]); any other failure is [`ExtractError::Ocr`].
///
/// Pages are read with Tesseract's orientation and script detection (`--psm 1`, Debian's
/// `tesseract-ocr-osd`). A page that still reads as fewer than [`MIN_UPRIGHT_WORDS`] words may be turned
/// (a scan fed sideways, a photo taken in landscape): orientation detection alone (`--psm 0`) is asked
/// then, and when it is confident the page is turned by 90, 180 or 270 degrees the image is turned upright
/// and read again; the reading with more words wins.
pub fn ocr_png(png: &[u8], language: &str, timeout: Duration) -> Result<String, ExtractError> {
    if !is_valid_language(language) {
        return Err(ExtractError::Ocr(format!(
            "invalid OCR language {language:?}"
        )));
    }
    let deadline = Instant::now() + timeout;
    // Page segmentation with orientation detection: an upside-down page is read upright (a third slower
    // than plain segmentation on a full page, 1.1 s against 0.8 s here).
    let text = tesseract(png, &["-l", language, "--psm", "1"], timeout)?;
    if word_count(&text) >= MIN_UPRIGHT_WORDS {
        return Ok(text);
    }
    let Some(turn) = orientation(png, deadline.saturating_duration_since(Instant::now()))? else {
        return Ok(text);
    };
    let upright = turned(png, turn)?;
    let again = tesseract(
        &upright,
        &["-l", language],
        deadline.saturating_duration_since(Instant::now()),
    )?;
    Ok(if word_count(&again) > word_count(&text) {
        again
    } else {
        text
    })
}

/// Below this many words a page is checked for being turned.
pub const MIN_UPRIGHT_WORDS: usize = 10;
/// Least orientation confidence Tesseract must report before a page is turned.
const MIN_ORIENTATION_CONFIDENCE: f64 = 1.0;

/// Runs Tesseract on an image with extra arguments and returns its normalised stdout.
fn tesseract(image: &[u8], args: &[&str], timeout: Duration) -> Result<String, ExtractError> {
    let mut cmd = Command::new(TESSERACT);
    cmd.args(["stdin", "stdout"])
        .args(args)
        // Tesseract's OpenMP threads oversubscribe the blocking worker pool; one thread per page is faster.
        .env("OMP_THREAD_LIMIT", "1");
    let out = run_with_timeout(cmd, image, timeout, TESSERACT)?;
    let text = String::from_utf8(out)
        .map_err(|_| ExtractError::Ocr("tesseract printed text that is not UTF-8".into()))?;
    Ok(normalize_ocr_text(&text))
}

/// Words of two or more letters or digits.
fn word_count(text: &str) -> usize {
    text.split_whitespace()
        .filter(|w| w.chars().filter(|c| c.is_alphanumeric()).count() >= 2)
        .count()
}

/// Degrees (90, 180, 270) to turn the image clockwise to make it upright, when Tesseract's orientation
/// detection is confident; `None` when upright, unsure, or the image has too little text to tell (which
/// Tesseract reports as a failure).
fn orientation(image: &[u8], timeout: Duration) -> Result<Option<u32>, ExtractError> {
    let osd = match tesseract(image, &["--psm", "0"], timeout) {
        Ok(osd) => osd,
        Err(ExtractError::Timeout) => return Err(ExtractError::Timeout),
        Err(_) => return Ok(None),
    };
    Ok(parse_orientation(&osd))
}

/// Reads `Rotate: N` and `Orientation confidence: X` from Tesseract's `--psm 0` report.
fn parse_orientation(osd: &str) -> Option<u32> {
    let field = |name: &str| {
        osd.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let rotate: u32 = field("Rotate:")?.parse().ok()?;
    let confidence: f64 = field("Orientation confidence:")?.parse().ok()?;
    (matches!(rotate, 90 | 180 | 270) && confidence >= MIN_ORIENTATION_CONFIDENCE).then_some(rotate)
}

/// The image turned clockwise by `degrees` (90, 180 or 270), as PNG.
fn turned(image: &[u8], degrees: u32) -> Result<Vec<u8>, ExtractError> {
    let img = image::load_from_memory(image)
        .map_err(|e| ExtractError::Ocr(format!("cannot turn the image upright: {e}")))?;
    let img = match degrees {
        90 => img.rotate90(),
        180 => img.rotate180(),
        _ => img.rotate270(),
    };
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| ExtractError::Ocr(format!("cannot turn the image upright: {e}")))?;
    Ok(out.into_inner())
}

/// Renders one page (1-based) of a PDF to a PNG at `dpi`, with `pdftoppm`, killed after `timeout`.
pub fn render_pdf_page(
    pdf: &[u8],
    page: u32,
    dpi: u32,
    timeout: Duration,
) -> Result<Vec<u8>, ExtractError> {
    let page = page.to_string();
    let dpi = dpi.to_string();
    let mut cmd = Command::new(PDFTOPPM);
    // With no output root, `-singlefile` writes the image to stdout; `-` reads the PDF from stdin.
    cmd.args([
        "-png",
        "-r",
        &dpi,
        "-f",
        &page,
        "-l",
        &page,
        "-singlefile",
        "-",
    ]);
    let png = run_with_timeout(cmd, pdf, timeout, PDFTOPPM)?;
    if png.is_empty() {
        return Err(ExtractError::Ocr(format!(
            "pdftoppm rendered nothing for page {page}"
        )));
    }
    Ok(png)
}

/// Tidies OCR output: no form feeds, no trailing spaces, at most one blank line in a row, trimmed.
pub fn normalize_ocr_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0usize;
    for line in text.replace('\u{c}', "\n").lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

/// Splits text into blank-line-separated blocks, each trimmed and non-empty.
pub fn split_paragraphs(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n").map(str::trim).filter(|p| !p.is_empty())
}

/// Tesseract language codes are letters, digits, `_` and `+` (for several); this keeps arguments sane.
fn is_valid_language(language: &str) -> bool {
    !language.is_empty()
        && language
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '+')
}

/// Runs `cmd` with `input` on stdin, returning its stdout; kills it once `timeout` has passed.
fn run_with_timeout(
    mut cmd: Command,
    input: &[u8],
    timeout: Duration,
    name: &str,
) -> Result<Vec<u8>, ExtractError> {
    let deadline = Instant::now() + timeout;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ExtractError::Ocr(format!("cannot start {name}: {e}")))?;

    // The input is copied so the feeding thread owns it; inputs are one page or image.
    let feeder = child.stdin.take().map(|mut stdin| {
        let input = input.to_vec();
        // A write error means the child exited early; its exit status tells why.
        thread::spawn(move || drop(stdin.write_all(&input)))
    });
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);

    let status = wait_until(&mut child, deadline);
    if let Some(feeder) = feeder {
        // Joining only fails if the thread panicked, which `write_all` does not.
        let _ = feeder.join();
    }
    let stdout = stdout.map(join_output).unwrap_or_default();
    let stderr = stderr.map(join_output).unwrap_or_default();

    match status {
        Err(e) => Err(ExtractError::Ocr(format!("waiting for {name} failed: {e}"))),
        Ok(None) => Err(ExtractError::Timeout),
        Ok(Some(status)) if status.success() => Ok(stdout),
        Ok(Some(status)) => {
            let msg = String::from_utf8_lossy(&stderr);
            let msg: String = msg.trim().chars().take(MAX_STDERR_IN_MESSAGE).collect();
            Err(ExtractError::Ocr(format!(
                "{name} failed ({status}): {msg}"
            )))
        }
    }
}

/// Polls `child` until it exits (`Some(status)`) or `deadline` passes (killed, `None`).
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // Kill fails only if it already exited; reap it either way so no zombie is left.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Reads a pipe to its end on a helper thread.
fn drain<R: Read + Send + 'static>(mut pipe: R) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error ends the output early; the exit status reports the failure.
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// The bytes a [`drain`] thread read (empty if it panicked, which `read_to_end` does not).
fn join_output(handle: JoinHandle<Vec<u8>>) -> Vec<u8> {
    handle.join().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(60);
    const SCANNED: &[u8] = include_bytes!("../../fixtures/pdf/scanned.pdf");
    const TEXT_PNG: &[u8] = include_bytes!("../../fixtures/image/text.png");

    #[test]
    fn normalizes_text() {
        let raw = "Hello  \nworld\n\n\n\nNext   \n\n\u{c}";
        assert_eq!(normalize_ocr_text(raw), "Hello\nworld\n\nNext");
        assert_eq!(normalize_ocr_text("  \n\u{c}"), "");
    }

    #[test]
    fn splits_paragraphs() {
        let paras: Vec<&str> = split_paragraphs("a\nb\n\nc\n\n").collect();
        assert_eq!(paras, ["a\nb", "c"]);
    }

    #[test]
    fn reads_rendered_text() {
        let text = ocr_png(TEXT_PNG, "eng", TIMEOUT).expect("ocr");
        assert_eq!(text, "Hello from docpipe\nImage text 2024");
    }

    #[test]
    fn renders_and_reads_a_scanned_page() {
        let png = render_pdf_page(SCANNED, 1, 150, TIMEOUT).expect("render");
        assert!(png.starts_with(b"\x89PNG"));
        let text = ocr_png(&png, "eng", TIMEOUT).expect("ocr");
        assert_eq!(text, "Scanned page text\n\nInvoice number 4711");
    }

    #[test]
    fn orientation_reports_are_read() {
        let osd = "Page number: 0\nOrientation in degrees: 270\nRotate: 90\nOrientation confidence: 7.3\n";
        assert_eq!(parse_orientation(osd), Some(90));
        let unsure = "Rotate: 90\nOrientation confidence: 0.4\n";
        assert_eq!(parse_orientation(unsure), None);
        assert_eq!(
            parse_orientation("Rotate: 0\nOrientation confidence: 9\n"),
            None
        );
        assert_eq!(parse_orientation("garbage"), None);
    }

    #[test]
    fn a_page_turned_sideways_is_read_upright() {
        // A real manual's page (bench/qa/PROVENANCE.md), turned a quarter each way and upside down.
        let png = include_bytes!("../../bench/qa/docs/image/everyshi-page1.png");
        let upright = ocr_png(png, "eng", TIMEOUT).expect("ocr");
        assert!(word_count(&upright) > 100, "{upright}");
        for degrees in [90, 180, 270] {
            let sideways = turned(png, degrees).expect("turn");
            let text = ocr_png(&sideways, "eng", TIMEOUT).expect("ocr");
            // The turned-back image has lost the PNG's resolution, so Tesseract lays out a few lines
            // differently; nearly every word of the upright reading is there.
            let words: std::collections::HashSet<&str> = text.split_whitespace().collect();
            let upright_words: Vec<&str> = upright.split_whitespace().collect();
            let found = upright_words.iter().filter(|w| words.contains(*w)).count();
            assert!(
                found * 10 >= upright_words.len() * 9,
                "turned {degrees} degrees: {found} of {} words: {text}",
                upright_words.len()
            );
        }
    }

    #[test]
    fn bad_inputs_are_ocr_errors() {
        let err = ocr_png(b"not an image", "eng", TIMEOUT).expect_err("garbage");
        assert_eq!(err.code(), "ocr_failed");
        let err = render_pdf_page(SCANNED, 9, 72, TIMEOUT).expect_err("no such page");
        assert_eq!(err.code(), "ocr_failed");
        let err = ocr_png(TEXT_PNG, "eng; rm -rf /", TIMEOUT).expect_err("bad language");
        assert_eq!(err.code(), "ocr_failed");
    }

    #[test]
    fn timeout_kills_the_child() {
        let started = Instant::now();
        let err = ocr_png(TEXT_PNG, "eng", Duration::from_millis(1)).expect_err("too short");
        assert_eq!(err.code(), "extraction_timeout");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
