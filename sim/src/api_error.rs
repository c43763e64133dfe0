//! Error responses in vLLM 0.8's format:
//! `{"object":"error","message":…,"type":"BadRequestError","param":null,"code":400}`.

use hyper::StatusCode;
use serde::Serialize;

/// An error answered to an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// vLLM's error type name (`BadRequestError`, `NotFoundError`, …).
    pub kind: &'static str,
    /// Human-readable message; names the offending field for validation errors.
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    object: &'static str,
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<()>,
    code: u16,
}

impl ApiError {
    /// 400: the request is invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, kind: "BadRequestError", message: message.into() }
    }

    /// 400 naming a field: `"{field}: {why}"`.
    pub fn field(field: &str, why: impl std::fmt::Display) -> Self {
        Self::bad_request(format!("{field}: {why}"))
    }

    /// 404: the `model` is not served here, with vLLM's message.
    pub fn model_not_found(model: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "NotFoundError",
            message: format!("The model `{model}` does not exist."),
        }
    }

    /// 500: the engine failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "InternalServerError",
            message: message.into(),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        let body = ErrorBody {
            object: "error",
            message: &self.message,
            kind: self.kind,
            param: None,
            code: self.status.as_u16(),
        };
        serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The body of an error event inside a stream that already started: `{"error": {…}}`.
    pub fn to_stream_json(&self) -> String {
        format!("{{\"error\":{}}}", self.to_json())
    }
}
