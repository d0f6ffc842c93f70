//! JSON types of the control API and the one place where an [`ApiError`] becomes an HTTP
//! status and body.
//!
//! Every error body has the shape `{"error": "<kind>", "detail": "<text>"}`; a policy refusal
//! adds `"rule": <n>` (the DESIGN §3 rule number) and `"warning"` (the text a REFER refusal
//! would carry in its Warning header); a rejected reload adds `"errors": [..]`.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

/// A call as seen by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallInfo {
    pub id: String,
    pub interaction_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub state: String,
    /// Unix time in milliseconds.
    pub started_at_ms: u64,
    pub legs: Vec<LegInfo>,
    pub transfer: Option<TransferInfo>,
    pub call_data: BTreeMap<String, String>,
}

/// One leg of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegInfo {
    pub id: String,
    /// `customer`, `agent`, `target` or `ivr`.
    pub role: String,
    pub party: String,
    pub state: String,
    pub agent: Option<String>,
}

/// A transfer in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferInfo {
    pub transfer_type: String,
    pub target: String,
    pub stage: String,
}

/// Transfer types accepted by `POST /api/calls/{id}/transfer`.
pub const TRANSFER_TYPES: [&str; 4] = ["success", "release", "conversation", "hangup"];
/// Target kinds accepted by `POST /api/calls/{id}/transfer` (`<kind>:<value>`).
pub const TARGET_KINDS: [&str; 5] = ["agent", "queue", "ivr", "external", "number"];
/// Longest target accepted; a longer one is a client error, not something to route.
pub const MAX_TARGET_LEN: usize = 256;

/// Body of `POST /api/calls/{id}/transfer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// `success`, `release`, `conversation` or `hangup`.
    #[serde(rename = "type")]
    pub transfer_type: String,
    /// `agent:1002`, `queue:sales`, `ivr:survey`, `external:partner`, `number:0049...`.
    pub target: String,
}

impl TransferRequest {
    /// Shape check done by the API before the policy sees the request: a known type and a
    /// `<kind>:<value>` target with a known kind, a non-empty value and a bounded length.
    pub fn validate(&self) -> Result<(), ApiError> {
        if !TRANSFER_TYPES.contains(&self.transfer_type.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown transfer type {:?} (expected one of {})",
                self.transfer_type,
                TRANSFER_TYPES.join(", ")
            )));
        }
        if self.target.len() > MAX_TARGET_LEN {
            return Err(ApiError::BadRequest(format!(
                "target longer than {MAX_TARGET_LEN} bytes"
            )));
        }
        match self.target.split_once(':') {
            Some((kind, value)) if TARGET_KINDS.contains(&kind) && !value.is_empty() => Ok(()),
            _ => Err(ApiError::BadRequest(format!(
                "target {:?} is not <kind>:<value> with kind one of {}",
                self.target,
                TARGET_KINDS.join(", ")
            ))),
        }
    }
}

/// Answer to an accepted transfer (202): the transfer has started; its outcome arrives as
/// events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferAccepted {
    pub call_id: String,
    pub transfer_type: String,
    pub target: String,
}

/// An agent as seen by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentInfo {
    pub id: String,
    pub state: String,
    pub skills: Vec<String>,
    pub registered: bool,
}

/// Agent states an operator may set.
pub const SETTABLE_AGENT_STATES: [&str; 2] = ["idle", "not_ready"];

/// Body of `PUT /api/agents/{id}/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentStateRequest {
    /// `idle` or `not_ready`.
    pub state: String,
}

impl AgentStateRequest {
    /// Only `idle` and `not_ready` may be set; the other states follow calls.
    pub fn validate(&self) -> Result<(), ApiError> {
        if SETTABLE_AGENT_STATES.contains(&self.state.as_str()) {
            Ok(())
        } else {
            Err(ApiError::BadRequest(format!(
                "agent state {:?} cannot be set (expected idle or not_ready)",
                self.state
            )))
        }
    }
}

/// A queue as seen by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueInfo {
    pub name: String,
    pub number: String,
    pub skill: String,
    pub waiting: usize,
    pub longest_wait_ms: u64,
    pub agents_idle: usize,
    pub agents_logged_in: usize,
}

/// Everything `/metrics` shows, gathered in one call so the numbers are consistent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub active_calls: u64,
    /// Finished calls by outcome (e.g. `answered`, `abandoned`, `failed`).
    pub calls_by_outcome: BTreeMap<String, u64>,
    /// Transfers by (type, outcome).
    pub transfers: BTreeMap<(String, String), u64>,
    pub registrations: u64,
    pub agents_by_state: BTreeMap<String, u64>,
    pub queues: Vec<QueueInfo>,
    /// Live SIP transactions.
    pub transactions: u64,
    pub retransmissions: u64,
    pub parse_errors: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
}

/// Readiness of the server: `/health` answers 200 only when ready and not draining.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Health {
    pub ready: bool,
    pub draining: bool,
}

/// Every failure the API reports, with one mapping to status codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 404: no such call, agent or queue.
    #[error("not found: {0}")]
    NotFound(String),
    /// 400: malformed body or invalid field.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: the transfer policy refused (same rules as a REFER).
    #[error("refused by rule {rule}: {warning}")]
    Refused { rule: u8, warning: String },
    /// 409: the request conflicts with the current state (e.g. a transfer already running).
    #[error("conflict: {0}")]
    Conflict(String),
    /// 503: the server cannot do it now (draining, overloaded).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// 401: missing or wrong bearer token.
    #[error("unauthorized")]
    Unauthorized,
    /// 422: a reload found errors in the new config; the old config stays in force.
    #[error("invalid config: {} error(s)", .0.len())]
    InvalidConfig(Vec<String>),
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Refused { .. } => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::InvalidConfig(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// The machine-readable `error` field.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Refused { .. } => "refused",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Unauthorized => "unauthorized",
            ApiError::InvalidConfig(_) => "invalid_config",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "error": self.kind() });
        let detail = match self {
            ApiError::NotFound(d)
            | ApiError::BadRequest(d)
            | ApiError::Conflict(d)
            | ApiError::Unavailable(d) => d.clone(),
            ApiError::Refused { rule, warning } => {
                body["rule"] = serde_json::json!(rule);
                body["warning"] = serde_json::json!(warning);
                warning.clone()
            }
            ApiError::Unauthorized => "missing or invalid bearer token".to_owned(),
            ApiError::InvalidConfig(errors) => {
                body["errors"] = serde_json::json!(errors);
                errors.join("; ")
            }
        };
        body["detail"] = serde_json::Value::String(detail);
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (status, Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: a 401 names the scheme the client must use.
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(t: &str, target: &str) -> TransferRequest {
        TransferRequest {
            transfer_type: t.to_owned(),
            target: target.to_owned(),
        }
    }

    #[test]
    fn transfer_request_validation() {
        assert!(req("success", "agent:1002").validate().is_ok());
        assert!(req("hangup", "number:0049301234567").validate().is_ok());
        assert!(req("blind", "agent:1002").validate().is_err());
        assert!(req("release", "agent:").validate().is_err());
        assert!(req("release", "1002").validate().is_err());
        assert!(req("release", "phone:1002").validate().is_err());
        let long = format!("number:{}", "1".repeat(MAX_TARGET_LEN));
        assert!(req("release", &long).validate().is_err());
    }

    #[test]
    fn transfer_request_json_uses_type_key() {
        let r: TransferRequest =
            serde_json::from_str(r#"{"type":"conversation","target":"queue:sales"}"#).unwrap();
        assert_eq!(r, req("conversation", "queue:sales"));
        assert!(serde_json::from_str::<TransferRequest>(r#"{"target":"queue:sales"}"#).is_err());
    }

    #[test]
    fn error_bodies() {
        let e = ApiError::Refused {
            rule: 4,
            warning: "agent leg is not up".to_owned(),
        };
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            e.body(),
            serde_json::json!({"error":"refused","rule":4,"warning":"agent leg is not up","detail":"agent leg is not up"})
        );
        let e = ApiError::InvalidConfig(vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.body()["errors"], serde_json::json!(["a", "b"]));
        assert_eq!(ApiError::NotFound("x".to_owned()).body()["detail"], "x");
        assert_eq!(ApiError::Unauthorized.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn agent_state_validation() {
        for s in ["idle", "not_ready"] {
            let r = AgentStateRequest {
                state: s.to_owned(),
            };
            assert!(r.validate().is_ok());
        }
        let r = AgentStateRequest {
            state: "busy".to_owned(),
        };
        assert!(r.validate().is_err());
    }
}
