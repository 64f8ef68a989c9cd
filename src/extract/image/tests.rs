use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::extract::Limits;

const EXPECTED: &str = include_str!("../../../fixtures/image/text.png.expected.txt");

fn run(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> (Result<Document, ExtractError>, Vec<(u64, u64)>) {
    let reports = Mutex::new(Vec::new());
    let progress = |done, total, unit: &'static str| {
        assert_eq!(unit, UNIT);
        reports.lock().expect("lock").push((done, total));
    };
    let ctx = Context {
        limits,
        deadline: Instant::now() + Duration::from_secs(120),
        progress: &progress,
    };
    let result = crate::extract::extract(&Input { bytes, format }, &ctx);
    (result, reports.into_inner().expect("lock"))
}

fn check_text_fixture(bytes: &[u8], expected: &str, format: Format, name: &str) {
    let (doc, reports) = run(bytes, format, &Limits::default());
    let doc = doc.expect("extracts");
    assert_eq!(doc.plain_text(), expected, "{format:?}");
    assert_eq!(expected, EXPECTED, "all text fixtures show the same words");
    assert!(
        doc.segments
            .iter()
            .all(|s| s.location == Location::Image && s.kind == SegmentKind::Paragraph)
    );
    assert_eq!(doc.metadata["format"], json!(name));
    assert_eq!(doc.metadata["width"], json!(900));
    assert_eq!(doc.metadata["height"], json!(260));
    assert!(doc.metadata["color"].is_string());
    assert_eq!(reports, [(0, 1), (1, 1)]);
}

macro_rules! text_fixture_test {
    ($test:ident, $file:literal, $format:expr, $name:literal) => {
        #[test]
        fn $test() {
            check_text_fixture(
                include_bytes!(concat!("../../../fixtures/image/", $file)),
                include_str!(concat!("../../../fixtures/image/", $file, ".expected.txt")),
                $format,
                $name,
            );
        }
    };
}

text_fixture_test!(png_text, "text.png", Format::Png, "png");
text_fixture_test!(jpeg_text, "text.jpg", Format::Jpeg, "jpg");
text_fixture_test!(gif_text, "text.gif", Format::Gif, "gif");
text_fixture_test!(bmp_text, "text.bmp", Format::Bmp, "bmp");
text_fixture_test!(webp_text, "text.webp", Format::Webp, "webp");
text_fixture_test!(tiff_text, "text.tiff", Format::Tiff, "tiff");

#[test]
fn jpeg_exif_metadata() {
    let bytes = include_bytes!("../../../fixtures/image/text.jpg");
    let doc = run(
        bytes,
        Format::Jpeg,
        &Limits {
            ocr: OcrMode::Off,
            ..Limits::default()
        },
    )
    .0
    .expect("extracts");
    assert_eq!(doc.metadata["camera_make"], json!("DocpipeCam"));
    assert_eq!(doc.metadata["camera_model"], json!("Fixture One"));
    assert_eq!(doc.metadata["date_taken"], json!("2024:05:06 07:08:09"));
    assert_eq!(doc.metadata["orientation"], json!(1));
    assert!(doc.segments.is_empty(), "OCR is off");
}

#[test]
fn picture_without_text_has_no_segments() {
    let bytes = include_bytes!("../../../fixtures/image/no-text.png");
    let expected = include_str!("../../../fixtures/image/no-text.png.expected.txt");
    let doc = run(bytes, Format::Png, &Limits::default())
        .0
        .expect("extracts");
    assert_eq!(doc.plain_text(), expected);
    assert!(doc.segments.is_empty());
    assert_eq!(doc.metadata["width"], json!(300));
}

/// A 24-bit BMP header claiming `width` x `height` pixels, followed by a few bytes of pixel data.
fn bmp_claiming(width: i32, height: i32) -> Vec<u8> {
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&70u32.to_le_bytes()); // file size (a lie, as in a bomb)
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes()); // pixel data offset
    bmp.extend_from_slice(&40u32.to_le_bytes()); // BITMAPINFOHEADER
    bmp.extend_from_slice(&width.to_le_bytes());
    bmp.extend_from_slice(&height.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes()); // planes
    bmp.extend_from_slice(&24u16.to_le_bytes()); // bits per pixel
    bmp.extend_from_slice(&[0; 24]); // no compression, sizes, resolution, palette
    bmp.extend_from_slice(&[0xff; 16]);
    bmp
}

#[test]
fn decompression_bombs_hit_the_limits() {
    // Wider than max_image_dimension.
    let err = run(
        &bmp_claiming(30_000, 30_000),
        Format::Bmp,
        &Limits::default(),
    )
    .0
    .expect_err("bomb");
    assert_eq!(err.code(), "limit_exceeded", "{err}");
    // Within the dimension limit but 15000 x 15000 x 3 bytes is more than the allocation limit.
    let limits = Limits {
        max_image_alloc_bytes: 64 * 1024 * 1024,
        ..Limits::default()
    };
    let err = run(&bmp_claiming(15_000, 15_000), Format::Bmp, &limits)
        .0
        .expect_err("bomb");
    assert_eq!(err.code(), "limit_exceeded", "{err}");
    // A real picture over a small dimension limit.
    let bytes = include_bytes!("../../../fixtures/image/text.png");
    let limits = Limits {
        max_image_dimension: 100,
        ..Limits::default()
    };
    let err = run(bytes, Format::Png, &limits).0.expect_err("too wide");
    assert_eq!(err.code(), "limit_exceeded", "{err}");
}

#[test]
fn corrupt_images() {
    let png = include_bytes!("../../../fixtures/image/text.png");
    for (bytes, format) in [
        (&png[..png.len() / 2], Format::Png),
        (&b"\x89PNG\r\n\x1a\nthis is not a png"[..], Format::Png),
        (&b"\xff\xd8\xff\xe0 not a jpeg"[..], Format::Jpeg),
        (&b"GIF89a"[..], Format::Gif),
        (&b"RIFF\0\0\0\0WEBP"[..], Format::Webp),
        (&b"II*\0garbage"[..], Format::Tiff),
    ] {
        let err = run(bytes, format, &Limits::default())
            .0
            .expect_err("corrupt");
        assert_eq!(err.code(), "corrupt_file", "{format:?}: {err}");
    }
}
