//! From SDK errors to [`PortError`]: throttling, 5xx, timeouts and dispatch failures are
//! transient; validation and access errors permanent; failed conditions conflicts; missing
//! tables and groups not-found.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::ports::PortError;

/// Error codes AWS services use for throttling (retried by the SDK, counted separately).
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "LimitExceededException",
    "SlowDown",
    "PriorRequestNotComplete",
];

/// Error codes that say "try again later" without being throttling.
const TRANSIENT: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "ReplicatedWriteConflictException",
    "ScalingActivityInProgress",
    "ScalingActivityInProgressFault",
    "ResourceContention",
    "ResourceContentionFault",
];

const NOT_FOUND: &[&str] = &[
    "ResourceNotFoundException",
    "ResourceNotFound",
    "TableNotFoundException",
];

pub(crate) fn is_throttling_code(code: &str) -> bool {
    THROTTLING.contains(&code)
}

/// Whether a raw response is a throttling error (status 429, or a 400/503 whose body names a
/// throttling code; JSON, XML and CBOR bodies all carry the code as text).
pub(crate) fn is_throttling_response(status: u16, body: &[u8]) -> bool {
    if status == 429 {
        return true;
    }
    if status != 400 && status != 503 {
        return false;
    }
    THROTTLING
        .iter()
        .any(|code| contains(body, code.as_bytes()))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Classify by error code and HTTP status.
pub(crate) fn from_code(code: Option<&str>, message: &str, status: u16) -> PortError {
    let c = code.unwrap_or("");
    let text = if message.is_empty() {
        format!("{c} (HTTP {status})")
    } else if c.is_empty() {
        format!("{message} (HTTP {status})")
    } else {
        format!("{c}: {message}")
    };
    if is_throttling_code(c) {
        PortError::Transient(format!("throttled: {text}"))
    } else if TRANSIENT.contains(&c) {
        PortError::Transient(text)
    } else if c == "ConditionalCheckFailedException" {
        PortError::Conflict(text)
    } else if c == "TransactionCanceledException" {
        // Without the typed reasons: the message lists them, e.g.
        // "Transaction cancelled, please refer cancellation reasons for specific reasons
        // [ConditionalCheckFailed, None]".
        if message.contains("ConditionalCheckFailed") {
            PortError::Conflict(text)
        } else if message.contains("Throttl")
            || message.contains("TransactionConflict")
            || message.contains("ProvisionedThroughputExceeded")
        {
            PortError::Transient(text)
        } else {
            PortError::Permanent(text)
        }
    } else if NOT_FOUND.contains(&c) {
        PortError::NotFound(text)
    } else if status >= 500 {
        PortError::Transient(text)
    } else {
        // ValidationException / ValidationError, AccessDenied(Exception),
        // UnrecognizedClientException, ResourceInUseException, and anything unknown: a retry
        // alone will not fix it.
        PortError::Permanent(text)
    }
}

/// Classify any SDK error.
pub(crate) fn classify<E>(err: &SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            from_code(
                e.code(),
                e.message().unwrap_or(""),
                se.raw().status().as_u16(),
            )
        }
        SdkError::TimeoutError(_) => PortError::Transient("timed out".into()),
        SdkError::DispatchFailure(_) => PortError::Transient(format!(
            "could not reach the service: {}",
            DisplayErrorContext(err)
        )),
        SdkError::ResponseError(_) => {
            PortError::Transient(format!("unreadable response: {}", DisplayErrorContext(err)))
        }
        SdkError::ConstructionFailure(_) => PortError::Permanent(format!(
            "could not build the request: {}",
            DisplayErrorContext(err)
        )),
        _ => PortError::Transient(format!("{}", DisplayErrorContext(err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_port_errors() {
        let cases: &[(&str, &str, u16, &str)] = &[
            ("throttling", "ThrottlingException", 400, "transient"),
            (
                "provisioned throughput",
                "ProvisionedThroughputExceededException",
                400,
                "transient",
            ),
            ("asg throttling", "Throttling", 400, "transient"),
            ("internal error", "InternalServerError", 500, "transient"),
            ("unknown 5xx", "Whatever", 503, "transient"),
            ("validation", "ValidationException", 400, "permanent"),
            ("asg validation", "ValidationError", 400, "permanent"),
            ("access denied", "AccessDeniedException", 400, "permanent"),
            (
                "condition",
                "ConditionalCheckFailedException",
                400,
                "conflict",
            ),
            (
                "missing table",
                "ResourceNotFoundException",
                400,
                "not_found",
            ),
            (
                "scaling in progress",
                "ScalingActivityInProgress",
                400,
                "transient",
            ),
        ];
        for (name, code, status, kind) in cases {
            assert_eq!(
                from_code(Some(code), "m", *status).kind(),
                *kind,
                "case {name}"
            );
        }
    }

    #[test]
    fn cancelled_transactions_map_by_their_reasons() {
        let msg = |r: &str| {
            format!(
                "Transaction cancelled, please refer cancellation reasons for specific reasons [{r}]"
            )
        };
        let t = "TransactionCanceledException";
        assert_eq!(
            from_code(Some(t), &msg("ConditionalCheckFailed, None"), 400).kind(),
            "conflict"
        );
        assert_eq!(
            from_code(Some(t), &msg("None, ThrottlingError"), 400).kind(),
            "transient"
        );
        assert_eq!(
            from_code(Some(t), &msg("ValidationError"), 400).kind(),
            "permanent"
        );
    }

    #[test]
    fn throttling_responses_are_recognised_in_any_protocol() {
        assert!(is_throttling_response(429, b""));
        assert!(is_throttling_response(
            400,
            br#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException"}"#
        ));
        assert!(is_throttling_response(
            400,
            b"<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>"
        ));
        assert!(!is_throttling_response(
            400,
            br#"{"__type":"...#ValidationException"}"#
        ));
        assert!(!is_throttling_response(200, b"Throttling"));
    }
}
