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
pub fn ocr_png(png: &[u8], language: &str, timeout: Duration) -> Result<String, ExtractError> {
    if !is_valid_language(language) {
        return Err(ExtractError::Ocr(format!(
            "invalid OCR language {language:?}"
        )));
    }
    let mut cmd = Command::new(TESSERACT);
    cmd.args(["stdin", "stdout", "-l", language])
        // Tesseract's OpenMP threads oversubscribe the blocking worker pool; one thread per page is faster.
        .env("OMP_THREAD_LIMIT", "1");
    let out = run_with_timeout(cmd, png, timeout, TESSERACT)?;
    let text = String::from_utf8(out)
        .map_err(|_| ExtractError::Ocr("tesseract printed text that is not UTF-8".into()))?;
    Ok(normalize_ocr_text(&text))
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
