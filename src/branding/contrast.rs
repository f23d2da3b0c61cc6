//! WCAG 2.x contrast: brand colours are refused when text drawn on or with them would be hard to
//! read (AA: 4.5:1 for normal text). The accent colour draws no text (focus outlines, which the
//! stylesheet doubles with a ring in the primary colour), so any accent is accepted.

use crate::config::Color;

pub const AA_TEXT: f64 = 4.5;
const WHITE: [u8; 3] = [255, 255, 255];

fn rgb(c: &Color) -> [u8; 3] {
    let hex = &c.as_str()[1..];
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0);
    [byte(0), byte(2), byte(4)]
}

fn luminance([r, g, b]: [u8; 3]) -> f64 {
    let channel = |v: u8| {
        let c = f64::from(v) / 255.0;
        if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    };
    0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
}

/// The contrast ratio of a colour against white, 1.0 to 21.0.
pub fn against_white(c: &Color) -> f64 {
    let (l1, l2) = (luminance(WHITE), luminance(rgb(c)));
    (l1.max(l2) + 0.05) / (l1.min(l2) + 0.05)
}

/// Where a brand colour meets text, so the message can say which use fails.
#[derive(Debug, Clone, Copy)]
pub enum Use {
    /// The primary colour: the header background under white text.
    HeaderBackground,
    /// The secondary colour: link text on white and the background of buttons with white text.
    LinksAndButtons,
}

/// Why `color` cannot serve `role` (naming the ratio and the fix), or `None` when it passes AA.
pub fn problem(color: &Color, role: Use) -> Option<String> {
    let what = match role {
        Use::HeaderBackground => "white header text on it",
        Use::LinksAndButtons => "it as link and button colour against white",
    };
    let ratio = against_white(color);
    (ratio < AA_TEXT).then(|| {
        format!(
            "{} gives {what} a contrast of {ratio:.1}:1; WCAG AA needs {AA_TEXT}:1. Choose a darker colour.",
            color.as_str()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Color {
        s.parse().unwrap()
    }

    #[test]
    fn known_ratios() {
        assert!((against_white(&c("#000000")) - 21.0).abs() < 0.01);
        assert!((against_white(&c("#ffffff")) - 1.0).abs() < 0.01);
        // #767676 is the classic lightest grey that passes AA on white (4.54:1).
        assert!((against_white(&c("#767676")) - 4.54).abs() < 0.01);
    }

    #[test]
    fn the_defaults_pass_and_pale_colours_are_refused_by_name() {
        assert_eq!(problem(&c("#0c4a6e"), Use::HeaderBackground), None, "the runbook's example colours pass");
        assert_eq!(problem(&c("#0e7490"), Use::LinksAndButtons), None);
        let msg = problem(&c("#ffff00"), Use::HeaderBackground).unwrap();
        assert!(msg.starts_with("#ffff00 gives white header text on it a contrast of 1.1:1"), "{msg}");
    }
}
