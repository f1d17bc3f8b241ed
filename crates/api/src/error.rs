//! The one place where engine error kinds become HTTP statuses with Docker's
//! `{"message": "..."}` body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::{EngineError, ErrorKind};

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError(pub EngineError);

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        Self(e)
    }
}

impl ApiError {
    /// A 400 error for a malformed request.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self(EngineError::invalid(msg))
    }
}

/// The HTTP status of an error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unavailable | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind());
        if status.is_server_error() {
            tracing::warn!("{}", self.0);
        }
        (
            status,
            Json(serde_json::json!({ "message": self.0.to_string() })),
        )
            .into_response()
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
