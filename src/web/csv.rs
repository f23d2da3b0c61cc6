//! CSV downloads: one way to write a text cell and to send the file.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// A text cell (a name, a description, a note: text a user may have typed). Quoted when it has
/// to be (RFC 4180); a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is
/// prefixed with `'`, because a spreadsheet would run it as a formula (OWASP, CSV injection).
/// Numbers the portal formats itself are written as they are, negative ones included.
pub fn text(field: &str) -> String {
    let field = if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{field}"))
    } else {
        std::borrow::Cow::Borrowed(field)
    };
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.into_owned()
    }
}

fn headers(name: &str) -> [(header::HeaderName, String); 2] {
    [
        (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
    ]
}

/// `body` as a download named `name`.
pub fn download(name: &str, body: String) -> Response {
    (headers(name), body).into_response()
}

/// A download named `name` sent as `chunks` arrive (an export too large to hold in memory); an
/// error mid-way ends the response early, which the browser reports as a failed download.
pub fn stream<S, E>(name: &str, chunks: S) -> Response
where
    S: futures_util::Stream<Item = Result<String, E>> + Send + 'static,
    E: Into<axum::BoxError> + 'static,
{
    (headers(name), axum::body::Body::from_stream(chunks)).into_response()
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn formulas_are_defused_and_special_characters_quoted() {
        assert_eq!(text("=HYPERLINK(\"http://evil\",\"x\")"), "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\"");
        assert_eq!(text("+1+1"), "'+1+1");
        assert_eq!(text("-2+3"), "'-2+3");
        assert_eq!(text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(text("\tcmd"), "'\tcmd");
        assert_eq!(text("\r=1"), "\"'\r=1\"");
        assert_eq!(text("Peak, weekdays"), "\"Peak, weekdays\"");
        assert_eq!(text("Energy (peak)"), "Energy (peak)");
        assert_eq!(text(""), "");
    }
}
