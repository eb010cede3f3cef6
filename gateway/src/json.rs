//! Request extractors that answer bad input with a problem document naming the field:
//! [`ApiJson`] (body), [`ApiQuery`] (query string) and [`ApiPath`] (path parameters). Bodies
//! over the limit answer 413. Nothing here knows about the ledger.

use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::request::Parts;
use http::{header, StatusCode};
use serde::de::DeserializeOwned;

/// A JSON body, decoded strictly (unknown fields are refused by the types).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(ct) = &content_type {
            if !is_json(ct) {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body must be application/json, not {ct}"
                )));
            }
        }
        let bytes = read_body(req, state).await?;
        decode(&bytes).map(ApiJson)
    }
}

/// Reads the whole body, mapping the limit to 413.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest {
                field: None,
                detail: format!("the body could not be read: {}", e.body_text()),
            }
        }
    })
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Decodes JSON into `T`; errors name the path of the offending field.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            field: None,
            detail: "the body is empty; a JSON object is expected".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let detail = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("malformed JSON: {inner}")
            }
            _ => strip_position(&inner.to_string()),
        };
        ApiError::BadRequest {
            field: (path != ".").then_some(path),
            detail,
        }
    })?;
    de.end().map_err(|e| ApiError::BadRequest {
        field: None,
        detail: format!("malformed JSON: {e}"),
    })?;
    Ok(value)
}

/// serde_json appends " at line 1 column 42"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// A query string, decoded strictly.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::BadRequest {
                field: None,
                detail: e.body_text(),
            })
    }
}

/// Path parameters.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::BadRequest {
                field: None,
                detail: e.body_text(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Inner {
        page_size: u32,
    }

    fn field_of(body: &str) -> (Option<String>, String) {
        match decode::<Outer>(body.as_bytes()).unwrap_err() {
            ApiError::BadRequest { field, detail } => (field, detail),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let (field, detail) = field_of(r#"{"items": [{"pageSize": 1}, {"pageSize": "x"}]}"#);
        assert_eq!(field.as_deref(), Some("items[1].pageSize"));
        assert!(detail.contains("invalid type"), "{detail}");
        let (field, detail) = field_of(r#"{"items": [{"pageSize": 1, "extra": 2}]}"#);
        assert_eq!(field.as_deref(), Some("items[0].extra"));
        assert!(detail.contains("unknown field"), "{detail}");
        let (field, detail) = field_of(r#"{"items": [}"#);
        assert!(detail.starts_with("malformed JSON"), "{detail}");
        assert!(field.is_some() || detail.contains("line"));
        let (field, _) = field_of(r#"{}"#);
        assert_eq!(field, None);
        let (_, detail) = field_of("");
        assert!(detail.contains("empty"));
        let (_, detail) = field_of(r#"{"items": []} x"#);
        assert!(detail.contains("trailing"), "{detail}");
    }

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
    }
}
