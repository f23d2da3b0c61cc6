//! The OpenAPI 3.1 description of the ingest API, served at `/api/openapi.json`. Built from the
//! same quantity tables and limits the handler uses, so the document cannot drift from the code
//! (a test also sends every documented field to the real handler).

use axum::Json;
use serde_json::{Value, json};

use super::api::{MAX_BODY_BYTES, MAX_LISTED_ERRORS, MAX_ROWS};
use crate::measurements::{COUNTER_QUANTITIES, REAL_QUANTITIES};

pub async fn document() -> Json<Value> {
    Json(build())
}

pub fn build() -> Value {
    let mut properties = serde_json::Map::new();
    properties.insert(
        "externalId".into(),
        json!({ "type": "string", "description": "The device's externalId (Sites → device)." }),
    );
    properties.insert(
        "time".into(),
        json!({ "type": "string", "format": "date-time",
                "description": "RFC 3339 timestamp of the reading; at most 5 minutes ahead of the server's clock." }),
    );
    for (name, _, unit) in REAL_QUANTITIES {
        let unit = if unit.is_empty() { "dimensionless".to_string() } else { unit.to_string() };
        properties.insert(
            name.into(),
            json!({ "type": ["number", "null"], "format": "float", "description": format!("Unit: {unit}.") }),
        );
    }
    for (name, _, unit) in COUNTER_QUANTITIES {
        properties.insert(
            name.into(),
            json!({ "type": ["number", "null"], "format": "double", "description": format!("Cumulative counter as read from the meter. Unit: {unit}.") }),
        );
    }
    let error = json!({ "type": "object", "required": ["error", "requestId"], "properties": {
        "error": { "type": "string", "description": "What is wrong, and where (line and column for JSON errors)." },
        "requestId": { "type": "string" } } });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Tau Acuvim Portal ingest API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Push meter readings into the portal. Values are SI units; a missing or null value is stored as NULL." },
        "paths": { "/api/ingest": { "post": {
            "summary": "Store a batch of readings",
            "security": [{ "apiKey": [] }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Batch" } } } },
            "responses": {
                "200": { "description": "Stored what was valid; rows that were not are listed by index.",
                         "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Result" } } } },
                "400": { "description": "Malformed body; nothing stored.", "content": { "application/json": { "schema": error } } },
                "401": { "description": "Missing, unknown or revoked API key.", "content": { "application/json": { "schema": error } } },
                "413": { "description": format!("More than {MAX_ROWS} rows or a body over {} MB; nothing stored.", MAX_BODY_BYTES >> 20),
                         "content": { "application/json": { "schema": error } } }
            } } } },
        "components": {
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer",
                "description": "An API key from Settings → API keys: `Authorization: Bearer tau_…`." } },
            "schemas": {
                "Batch": { "type": "object", "required": ["measurements"], "additionalProperties": false, "properties": {
                    "measurements": { "type": "array", "minItems": 1, "maxItems": MAX_ROWS, "items": { "$ref": "#/components/schemas/Measurement" } } } },
                "Measurement": { "type": "object", "required": ["externalId", "time"], "additionalProperties": false, "properties": properties },
                "Result": { "type": "object", "required": ["accepted", "duplicates", "rejected", "errors", "errorsNotListed"], "properties": {
                    "accepted": { "type": "integer", "description": "Rows stored now." },
                    "duplicates": { "type": "integer", "description": "Valid rows stored before (a retried batch); not stored twice." },
                    "rejected": { "type": "integer", "description": "Rows refused." },
                    "errors": { "type": "array", "maxItems": MAX_LISTED_ERRORS, "items": { "type": "object", "required": ["index", "externalId", "reason"], "properties": {
                        "index": { "type": "integer", "description": "Position in `measurements`." },
                        "externalId": { "type": "string" },
                        "reason": { "type": "string", "examples": ["unknown device", "invalid time: …", "time is more than 5 minutes in the future"] } } } },
                    "errorsNotListed": { "type": "integer", "description": "Refused rows beyond the listed ones." } } }
            }
        }
    })
}
