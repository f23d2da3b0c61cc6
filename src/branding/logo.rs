//! Logo uploads: PNG, JPEG or WebP, recognised by their magic bytes (never by name or declared
//! type), at most 1 MB and 2048 × 2048 px, decoded under memory limits and re-encoded as PNG, so
//! what the portal serves is always a clean image it produced itself. SVG is refused: it can
//! carry scripts.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};
use sha2::{Digest, Sha256};

pub const MAX_BYTES: usize = 1024 * 1024;
pub const MAX_SIDE: u32 = 2048;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogoError {
    #[error("Choose a file to upload.")]
    Empty,
    #[error("The file is {0} KB; the limit is 1024 KB.")]
    TooLarge(usize),
    #[error("SVG images are not accepted (they can contain scripts). Upload a PNG, JPEG or WebP image.")]
    Svg,
    #[error("This file is not a PNG, JPEG or WebP image (whatever its name says). Upload one of those.")]
    NotAnImage,
    #[error("The image is {0} × {1} px; the limit is 2048 × 2048 px.")]
    TooBig(u32, u32),
    #[error("The image could not be read ({0}). It may be truncated or damaged.")]
    Damaged(String),
}

/// The format, from the first bytes of the file.
pub fn sniff(bytes: &[u8]) -> Result<ImageFormat, LogoError> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageFormat::Png);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(ImageFormat::WebP);
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_ascii_lowercase();
    if head.contains("<svg") || (head.trim_start().starts_with("<?xml") && head.contains("svg")) {
        return Err(LogoError::Svg);
    }
    Err(LogoError::NotAnImage)
}

/// A validated logo, re-encoded as PNG, with its content-hash file name.
pub struct Logo {
    pub png: Vec<u8>,
    pub file_name: String,
}

/// Validates and re-encodes. CPU-bound: call it on the blocking pool.
pub fn process(bytes: &[u8]) -> Result<Logo, LogoError> {
    if bytes.is_empty() {
        return Err(LogoError::Empty);
    }
    if bytes.len() > MAX_BYTES {
        return Err(LogoError::TooLarge(bytes.len().div_ceil(1024)));
    }
    let format = sniff(bytes)?;
    let damaged = |e: image::ImageError| LogoError::Damaged(e.to_string());
    // Dimensions come from the header, before any pixel is decoded (a 1 MB file can claim to be
    // 50 000 × 50 000 px).
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format).into_dimensions().map_err(damaged)?;
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(LogoError::TooBig(w, h));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(64 * 1024 * 1024);
    reader.limits(limits);
    let image = reader.decode().map_err(damaged)?;
    let mut png = Vec::new();
    image.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).map_err(damaged)?;
    let hash = Sha256::digest(&png);
    let file_name = format!("{}.png", hash.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>());
    Ok(Logo { png, file_name })
}

#[cfg(test)]
pub(crate) mod tests {
    use image::{Rgba, RgbaImage};

    use super::*;

    pub fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbaImage::from_pixel(w, h, Rgba([12, 74, 110, 255]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn a_png_is_reencoded_and_named_by_its_content() {
        let logo = process(&png(64, 32)).unwrap();
        assert!(logo.png.starts_with(b"\x89PNG"));
        assert_eq!(logo.file_name.len(), 36);
        assert_eq!(process(&png(64, 32)).unwrap().file_name, logo.file_name, "same content, same name");
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(process(b"").err(), Some(LogoError::Empty));
        assert_eq!(
            process(b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>").err(),
            Some(LogoError::Svg)
        );
        assert_eq!(process(b"<html><script>alert(1)</script></html>").err(), Some(LogoError::NotAnImage));
        assert_eq!(process(&png(2049, 10)).err(), Some(LogoError::TooBig(2049, 10)));
        let truncated = png(300, 300);
        assert!(matches!(process(&truncated[..truncated.len() / 2]), Err(LogoError::Damaged(_))));
        assert_eq!(process(&vec![0x89; MAX_BYTES + 1]).err(), Some(LogoError::TooLarge(1025)));
    }
}
