//! Tesseract OCR (placeholder).
