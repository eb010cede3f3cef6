//! The one place a failed request becomes an answer: every pingora error is classified into a
//! `Failure`, which has one HTTP status (400/408/431/502/503/504) and, for gRPC clients, one
//! gRPC status sent as a trailers-only response.

use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No server of the group may take the request (all down, ejected, or no active one).
    NoServer,
    /// Connecting to the server failed (refused, unreachable, TLS handshake).
    ConnectFailed,
    /// The server did not connect or answer in time.
    UpstreamTimeout,
    /// The server broke the exchange: reset, closed, invalid response.
    BadUpstream,
    /// The client was too slow sending its request.
    ClientTimeout,
    /// The client sent something that is not a valid request.
    BadRequest,
    /// The request head is larger than the frontend allows.
    HeaderTooLarge,
    /// The client went away; nothing can be sent.
    ClientGone,
    Internal,
}

impl Failure {
    pub fn classify(e: &Error) -> Self {
        use ErrorType::*;
        match e.etype() {
            HTTPStatus(503) => return Failure::NoServer,
            HTTPStatus(400) => return Failure::BadRequest,
            HTTPStatus(408) => return Failure::ClientTimeout,
            HTTPStatus(431) => return Failure::HeaderTooLarge,
            HTTPStatus(504) => return Failure::UpstreamTimeout,
            HTTPStatus(_) => return Failure::BadUpstream,
            ConnectTimedout | TLSHandshakeTimedout => return Failure::UpstreamTimeout,
            ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure | InvalidCert
            | HandshakeError | ConnectProxyFailure | TLSWantX509Lookup | BindError => {
                return Failure::ConnectFailed
            }
            _ => {}
        }
        match (e.esource(), e.etype()) {
            (ErrorSource::Upstream, ReadTimedout | WriteTimedout) => Failure::UpstreamTimeout,
            (ErrorSource::Upstream, _) => Failure::BadUpstream,
            (ErrorSource::Downstream, ReadTimedout) => Failure::ClientTimeout,
            (ErrorSource::Downstream, InvalidHTTPHeader | H1Error | InvalidH2) => {
                Failure::BadRequest
            }
            (ErrorSource::Downstream, _) => Failure::ClientGone,
            _ => Failure::Internal,
        }
    }

    /// The HTTP status for the client; 0 when nothing can be sent.
    pub fn status(self) -> u16 {
        match self {
            Failure::NoServer => 503,
            Failure::ConnectFailed | Failure::BadUpstream => 502,
            Failure::UpstreamTimeout => 504,
            Failure::ClientTimeout => 408,
            Failure::BadRequest => 400,
            Failure::HeaderTooLarge => 431,
            Failure::ClientGone => 0,
            Failure::Internal => 500,
        }
    }

    /// The stable error code of the problem document HTTP clients get.
    pub fn code(self) -> &'static str {
        match self {
            Failure::NoServer => "LB_NO_SERVER",
            Failure::ConnectFailed => "LB_CONNECT_FAILED",
            Failure::BadUpstream => "LB_BAD_UPSTREAM",
            Failure::UpstreamTimeout => "LB_UPSTREAM_TIMEOUT",
            Failure::ClientTimeout => "LB_REQUEST_TIMEOUT",
            Failure::BadRequest => "LB_BAD_REQUEST",
            Failure::HeaderTooLarge => "LB_HEADER_TOO_LARGE",
            Failure::ClientGone | Failure::Internal => "LB_INTERNAL",
        }
    }

    /// The gRPC status code and message for gRPC clients. UNAVAILABLE tells a client it may
    /// try again (nothing ran, or the server is gone); a timeout is DEADLINE_EXCEEDED because
    /// the call may have run.
    pub fn grpc(self) -> (u32, &'static str) {
        match self {
            Failure::NoServer => (14, "no healthy server behind the load balancer"),
            Failure::ConnectFailed => (14, "the load balancer could not reach a server"),
            Failure::BadUpstream => (14, "the server broke the call"),
            Failure::UpstreamTimeout => (4, "the server did not answer in time"),
            Failure::ClientTimeout => (4, "the request was not received in time"),
            Failure::BadRequest => (13, "malformed request"),
            Failure::HeaderTooLarge => (8, "request headers too large"),
            Failure::ClientGone | Failure::Internal => (13, "load balancer error"),
        }
    }

    /// `grpc-status` and `grpc-message`: the trailers of a call already answered, or the
    /// head of a trailers-only answer.
    pub fn grpc_headers(self) -> http::HeaderMap {
        let (code, message) = self.grpc();
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from(code));
        if let Ok(message) = http::HeaderValue::from_str(&message.replace(' ', "%20")) {
            headers.insert("grpc-message", message);
        }
        headers
    }

    /// The RFC 9457 problem document HTTP clients get (the shape the gateway's own errors
    /// have, so HTTP clients parse one kind of error).
    pub fn problem(self) -> String {
        let status = self.status();
        let code = self.code();
        let title = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Internal Server Error");
        serde_json::json!({
            "type": format!("urn:tandem:error:{code}"),
            "title": title,
            "status": status,
            "detail": self.grpc().1,
            "code": code,
        })
        .to_string()
    }
}

pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|c| c.starts_with(b"application/grpc"))
}

/// A `grpc-status` of UNAVAILABLE (14), which counts against the server (passive health).
pub fn grpc_unavailable(value: Option<&http::HeaderValue>) -> bool {
    value.is_some_and(|v| v.as_bytes() == b"14")
}

/// Answers the client of a failed request. Once a response was started only a gRPC call over
/// HTTP/2 can still be told: its status goes in the trailers, so the client sees the same
/// status as when nothing had been sent (not a bare stream reset). Otherwise the stream or
/// connection is closed, which is all that is left. Returns the status sent, 0 if none.
pub async fn respond(session: &mut Session, failure: Failure, grpc: bool) -> u16 {
    let status = failure.status();
    if status == 0 {
        return 0;
    }
    if session.response_written().is_some() {
        if !(grpc && session.is_http2()) {
            return 0;
        }
        let trailers = failure.grpc_headers();
        return match session.write_response_trailers(trailers).await {
            Ok(()) => 200,
            Err(e) => {
                tracing::debug!(error = %e, "could not send the gRPC status in trailers");
                0
            }
        };
    }
    let result = if grpc {
        match grpc_response(failure) {
            Ok(header) => session.write_response_header(Box::new(header), true).await,
            Err(e) => Err(e),
        }
    } else {
        problem(session, failure).await
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "could not send the error response");
        return 0;
    }
    if grpc {
        200
    } else {
        status
    }
}

/// An HTTP error answer with the problem document, on a connection that then closes.
async fn problem(session: &mut Session, failure: Failure) -> pingora::Result<()> {
    let status = failure.status();
    let body = failure.problem();
    let mut header = pingora::protocols::http::ServerSession::generate_error(status);
    header.insert_header("content-type", "application/problem+json")?;
    header.set_content_length(body.len())?;
    session.write_error_response(header, body.into()).await
}

fn grpc_response(failure: Failure) -> pingora::Result<ResponseHeader> {
    let mut header = ResponseHeader::build(200, Some(3))?;
    header.insert_header("content-type", "application/grpc")?;
    for (name, value) in &failure.grpc_headers() {
        header.insert_header(name.clone(), value.clone())?;
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_maps_to_one_status() {
        let up = |t| {
            let mut e = Error::new(t);
            e.as_up();
            e
        };
        let down = |t| {
            let mut e = Error::new(t);
            e.as_down();
            e
        };
        let cases = [
            (Error::new(ErrorType::HTTPStatus(503)), 503),
            (up(ErrorType::ConnectRefused), 502),
            (up(ErrorType::ConnectTimedout), 504),
            (up(ErrorType::ReadTimedout), 504),
            (up(ErrorType::H2Error), 502),
            (down(ErrorType::ReadTimedout), 408),
            (down(ErrorType::InvalidHTTPHeader), 400),
            (down(ErrorType::ConnectionClosed), 0),
        ];
        for (e, status) in cases {
            assert_eq!(Failure::classify(&e).status(), status, "{e}");
        }
        assert_eq!(Failure::NoServer.grpc().0, 14);
        assert_eq!(Failure::UpstreamTimeout.grpc().0, 4);
    }
}
