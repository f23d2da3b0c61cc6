//! Renders [`ErrorInfo`] responses: JSON under `/api/`, the branded error page elsewhere, both
//! with the request id a user can quote.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use tower_http::request_id::RequestId;

use crate::error::ErrorInfo;
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::session::CurrentSession;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    page: Page,
    status: u16,
    title: &'static str,
    message: String,
    request_id: String,
}

pub async fn render_errors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default()
        .to_string();
    let uri = req.uri().clone();
    let res = next.run(req).await;
    let Some(info) = res.extensions().get::<ErrorInfo>().cloned() else { return res };
    // The session resolver (inside this layer) leaves the session on the response.
    let user = res.extensions().get::<CurrentSession>().and_then(|s| s.user.clone());
    let page = (!uri.path().starts_with("/api/")).then(|| Page::new(&state, &uri, user));
    let status = res.status();
    let (mut new_parts, _) = res.into_parts();
    new_parts.headers.remove(header::CONTENT_LENGTH);
    let body = match page {
        None => {
            let json = serde_json::json!({ "error": info.message, "requestId": request_id });
            new_parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            json.to_string().into_response().into_body()
        }
        Some(page) => {
            let html =
                ErrorPage { page, status: status.as_u16(), title: info.title, message: info.message, request_id }
                    .render()
                    .unwrap_or_else(|_| "Something went wrong.".into());
            new_parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            Html(html).into_response().into_body()
        }
    };
    Response::from_parts(new_parts, body)
}
