//! Codec errors (RFC 3261 §21.4.1: a malformed request is answered `400 Bad Request`, with a
//! reason phrase naming the problem; §21.4.18 `416` for an unsupported URI scheme).
//!
//! Every variant maps to a short, static reason phrase through [`ParseError::reason`], so the
//! transport can answer a malformed request without allocating.

use super::header::HeaderName;

/// Why a message, URI or header value could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input holds no start line at all.
    #[error("empty message")]
    Empty,
    /// The request line or status line is malformed.
    #[error("malformed start line")]
    BadStartLine,
    /// The start line names a SIP version other than 2.0.
    #[error("unsupported SIP version")]
    BadVersion,
    /// The request method is not a valid token.
    #[error("malformed method")]
    BadMethod,
    /// The status code is not three digits in 100..=699.
    #[error("malformed status code")]
    BadStatus,
    /// The Request-URI is malformed.
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// A URI is malformed.
    #[error("malformed URI")]
    BadUri,
    /// A URI uses a scheme other than sip, sips or tel.
    #[error("unsupported URI scheme")]
    UnsupportedScheme,
    /// A header line has no colon, an invalid name, or a continuation line with no header.
    #[error("malformed header line")]
    BadHeaderLine,
    /// The header section is not terminated by an empty line.
    #[error("header section not terminated by an empty line")]
    Unterminated,
    /// The header section is not valid UTF-8.
    #[error("header section is not UTF-8")]
    NotUtf8,
    /// More headers than the codec accepts.
    #[error("too many headers")]
    TooManyHeaders,
    /// The message is longer than the codec indexes (4 GiB; the transports stop far sooner).
    #[error("message too large")]
    TooLarge,
    /// A mandatory header (RFC 3261 §8.1.1) is absent.
    #[error("missing {0:?} header")]
    MissingHeader(HeaderName),
    /// A header value does not match its grammar.
    #[error("malformed {0:?} header")]
    BadHeader(HeaderName),
    /// An addr-spec written without `<>` holds a `?` (URI headers): RFC 3261 §20.10 (and
    /// RFC 8217 for every `name-addr / addr-spec` header) requires the name-addr form then
    /// (RFC 4475 §3.1.2.13). `Other` when the header is not known (a bare [`NameAddr`]
    /// parse).
    ///
    /// [`NameAddr`]: super::NameAddr
    #[error("{0:?} URI with headers is not enclosed in angle brackets")]
    UnbracketedUriHeaders(HeaderName),
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// The body is shorter than Content-Length (RFC 3261 §18.3), or two Content-Length
    /// headers disagree.
    #[error("Content-Length does not match the body")]
    ContentLengthMismatch,
}

impl ParseError {
    /// A reason phrase for the 400 (or 416) response that rejects the message.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::Empty => "Empty Message",
            ParseError::BadStartLine => "Bad Start Line",
            ParseError::BadVersion => "Version Not Supported",
            ParseError::BadMethod => "Bad Method",
            ParseError::BadStatus => "Bad Status Code",
            ParseError::BadRequestUri => "Bad Request-URI",
            ParseError::BadUri => "Bad URI",
            ParseError::UnsupportedScheme => "Unsupported URI Scheme",
            ParseError::BadHeaderLine => "Malformed Header Line",
            ParseError::Unterminated => "Unterminated Header Section",
            ParseError::NotUtf8 => "Bad Header Encoding",
            ParseError::TooManyHeaders => "Too many headers",
            ParseError::TooLarge => "Message Too Large",
            ParseError::MissingHeader(name) => missing_reason(*name),
            ParseError::BadHeader(name) => bad_reason(*name),
            ParseError::UnbracketedUriHeaders(name) => unbracketed_reason(*name),
            ParseError::CSeqMethodMismatch => "CSeq Method Mismatch",
            ParseError::ContentLengthMismatch => "Content-Length mismatch",
        }
    }

    /// This error as the error of header `name`, whose value failed a typed parser: the
    /// header is named in it (structure and URI errors become `BadHeader(name)`).
    pub(crate) fn in_header(self, name: HeaderName) -> ParseError {
        match self {
            ParseError::UnbracketedUriHeaders(_) => ParseError::UnbracketedUriHeaders(name),
            _ => ParseError::BadHeader(name),
        }
    }

    /// The status code to answer a request that failed with this error: 416 for an
    /// unsupported URI scheme (RFC 3261 §21.4.18), 505 for another SIP version
    /// (§21.5.6), else 400.
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::UnsupportedScheme => 416,
            ParseError::BadVersion => 505,
            ParseError::TooLarge => 513,
            _ => 400,
        }
    }
}

fn missing_reason(name: HeaderName) -> &'static str {
    match name {
        HeaderName::Via => "Missing Via",
        HeaderName::From => "Missing From",
        HeaderName::To => "Missing To",
        HeaderName::CallId => "Missing Call-ID",
        HeaderName::CSeq => "Missing CSeq",
        HeaderName::Contact => "Missing Contact",
        HeaderName::MaxForwards => "Missing Max-Forwards",
        _ => "Missing Header",
    }
}

fn bad_reason(name: HeaderName) -> &'static str {
    match name {
        HeaderName::Via => "Bad Via",
        HeaderName::From => "Bad From",
        HeaderName::To => "Bad To",
        HeaderName::CallId => "Bad Call-ID",
        HeaderName::CSeq => "Bad CSeq",
        HeaderName::Contact => "Bad Contact",
        HeaderName::MaxForwards => "Bad Max-Forwards",
        HeaderName::ContentLength => "Bad Content-Length",
        HeaderName::Expires => "Bad Expires",
        HeaderName::Route => "Bad Route",
        HeaderName::RecordRoute => "Bad Record-Route",
        HeaderName::ReferTo => "Bad Refer-To",
        HeaderName::ReferredBy => "Bad Referred-By",
        HeaderName::Replaces => "Bad Replaces",
        HeaderName::SessionExpires => "Bad Session-Expires",
        HeaderName::MinSe => "Bad Min-SE",
        _ => "Bad Header",
    }
}

// A Reason-Phrase may not hold `<` or `>` (RFC 3261 §25.1), hence "angle brackets".
fn unbracketed_reason(name: HeaderName) -> &'static str {
    match name {
        HeaderName::From => "From URI with headers must be in angle brackets",
        HeaderName::To => "To URI with headers must be in angle brackets",
        HeaderName::Contact => "Contact URI with headers must be in angle brackets",
        HeaderName::ReferredBy => "Referred-By URI with headers must be in angle brackets",
        _ => "URI with headers must be in angle brackets",
    }
}
