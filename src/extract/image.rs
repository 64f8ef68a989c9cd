//! Images (PNG, JPEG, GIF, BMP, WEBP, TIFF): decoded under size limits, described in metadata
//! (dimensions, colour type, EXIF basics) and read with Tesseract unless OCR is off.
//!
//! The decoder's [`image::Limits`] come from the pipeline's limits, so a decompression bomb (a tiny
//! file that claims a huge canvas) fails with `limit_exceeded` before any large allocation.

use std::io::Cursor;

use exif::{In, Tag, Value};
use image::metadata::Orientation;
use image::{DynamicImage, ImageError, ImageFormat, ImageReader};

use super::ocr::{ocr_png, split_paragraphs};
use super::{Context, ExtractError, Extractor, Format, Input, OcrMode};
use crate::types::{Document, Location, Segment, SegmentKind};

/// Progress unit: one image per file.
const UNIT: &str = "images";
/// EXIF fields copied into metadata: tag and metadata key.
const EXIF_TEXT_FIELDS: [(Tag, &str); 3] = [
    (Tag::Make, "camera_make"),
    (Tag::Model, "camera_model"),
    (Tag::DateTimeOriginal, "date_taken"),
];

/// Extracts the text of a picture by OCR, with its dimensions and EXIF basics as metadata.
pub struct ImageExtractor;

impl Extractor for ImageExtractor {
    fn extract(&self, input: &Input<'_>, ctx: &Context<'_>) -> Result<Document, ExtractError> {
        ctx.report(0, 1, UNIT);
        let format = image_format(input.format)?;
        let mut doc = Document::default();
        doc.set_meta(
            "format",
            format.extensions_str().first().copied().unwrap_or("image"),
        );

        let mut image = decode(input.bytes, format, ctx)?;
        doc.set_meta("width", image.width());
        doc.set_meta("height", image.height());
        doc.set_meta("color", format!("{:?}", image.color()).to_lowercase());
        if let Some(orientation) = exif_metadata(input.bytes, &mut doc) {
            // Upright text reads far better; EXIF orientation is how cameras record a rotated shot.
            image.apply_orientation(orientation);
        }

        if ctx.limits.ocr != OcrMode::Off {
            ctx.check_deadline()?;
            let png = grayscale_png(&image)?;
            drop(image);
            let text = ocr_png(&png, &ctx.limits.ocr_language, ctx.remaining())?;
            doc.segments.extend(
                split_paragraphs(&text)
                    .map(|p| Segment::new(SegmentKind::Paragraph, p, Location::Image)),
            );
        }
        ctx.report(1, 1, UNIT);
        Ok(doc)
    }
}

/// The decoder for a detected format.
fn image_format(format: Format) -> Result<ImageFormat, ExtractError> {
    Ok(match format {
        Format::Png => ImageFormat::Png,
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Gif => ImageFormat::Gif,
        Format::Bmp => ImageFormat::Bmp,
        Format::Webp => ImageFormat::WebP,
        Format::Tiff => ImageFormat::Tiff,
        other => {
            return Err(ExtractError::Corrupt(format!(
                "the image extractor cannot read {}",
                other.name()
            )));
        }
    })
}

/// Decodes with the pipeline's dimension and allocation limits.
fn decode(
    bytes: &[u8],
    format: ImageFormat,
    ctx: &Context<'_>,
) -> Result<DynamicImage, ExtractError> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(ctx.limits.max_image_dimension);
    limits.max_image_height = Some(ctx.limits.max_image_dimension);
    limits.max_alloc = Some(ctx.limits.max_image_alloc_bytes);
    // The header's size first: a valid 20000 x 20000 picture is 400 million pixels to decode and OCR.
    let mut probe = ImageReader::new(Cursor::new(bytes));
    probe.set_format(format);
    probe.limits(limits.clone());
    if let Ok((width, height)) = probe.into_dimensions() {
        let pixels = u64::from(width) * u64::from(height);
        if pixels > ctx.limits.max_image_pixels {
            return Err(ExtractError::LimitExceeded(format!(
                "the image is {width} x {height} = {pixels} pixels, more than the limit of {} \
                 (max_image_pixels)",
                ctx.limits.max_image_pixels
            )));
        }
    }
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format);
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        ImageError::Limits(e) => ExtractError::LimitExceeded(format!(
            "the image is too large to decode ({e}; limits: {} px per side, {} bytes)",
            ctx.limits.max_image_dimension, ctx.limits.max_image_alloc_bytes
        )),
        other => ExtractError::Corrupt(format!("cannot decode the image: {other}")),
    })
}

/// Copies EXIF make, model, date taken and orientation into metadata; returns the orientation.
/// Images without EXIF (or with a broken block) simply get none.
fn exif_metadata(bytes: &[u8], doc: &mut Document) -> Option<Orientation> {
    let exif = exif::Reader::new()
        .read_from_container(&mut Cursor::new(bytes))
        .ok()?;
    for (tag, key) in EXIF_TEXT_FIELDS {
        let Some(field) = exif.get_field(tag, In::PRIMARY) else {
            continue;
        };
        if let Value::Ascii(parts) = &field.value {
            let text: Vec<String> = parts
                .iter()
                .map(|p| String::from_utf8_lossy(p).trim().to_owned())
                .collect();
            let text = text.join(" ").trim().to_owned();
            if !text.is_empty() {
                doc.set_meta(key, text);
            }
        }
    }
    let value = exif
        .get_field(Tag::Orientation, In::PRIMARY)?
        .value
        .get_uint(0)?;
    doc.set_meta("orientation", value);
    Orientation::from_exif(u8::try_from(value).ok()?)
}

/// Re-encodes the picture as an 8-bit grayscale PNG for Tesseract (colour does not help it read).
fn grayscale_png(image: &DynamicImage) -> Result<Vec<u8>, ExtractError> {
    let mut png = Vec::new();
    DynamicImage::ImageLuma8(image.to_luma8())
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|e| ExtractError::Ocr(format!("cannot prepare the image for OCR: {e}")))?;
    Ok(png)
}

#[cfg(test)]
mod tests;
