//! Registrar: the location service and Digest authentication for agents' softphones
//! (RFC 3261 §10 registrations, §22 authentication; RFC 8760 SHA-256/MD5 Digest for SIP on
//! the rules of RFC 7616 and RFC 2617).
//!
//! Sans-IO and codec-free: callers pass header values as `&str` and plain data, and get
//! decisions back; turning them into SIP responses is the dispatcher's job:
//!
//! ```text
//! REGISTER ─► Authorization? ─no──────────────────────────► 401 + challenge() (2 headers)
//!                  │ yes: DigestCredentials::parse
//!                  ├─ Err(_) ─────────────────────────────► 401 + challenge()
//!                  └─ DigestAuthenticator::verify(creds, "REGISTER", passwords, now)
//!                        ├─ Stale ────────────────────────► 401 + challenge(stale = true)
//!                        ├─ Rejected(_) ──────────────────► 401 + challenge()
//!                        └─ Ok { user } ─ user ≠ To user ─► 403
//!                                         └─ Bindings::apply_register(user, …, now)
//!                                              ├─ Ok(outcome) ─► 200 + Contact per binding
//!                                              │                  (Login/Logout → agent state)
//!                                              └─ Err(e) ──────► e.status_code()
//!                                                                 (423 + Min-Expires)
//! timer at Bindings::next_expiry() ─► Bindings::expire(now) ─► AORs logged out
//! ```
//!
//! - [`digest`]: challenges, stateless self-validating nonces, nonce-count replay checks,
//!   constant-time verification; [`credentials`]: the `Authorization` value parser.
//! - [`bindings`]: AOR → contacts with expiry, q, `+sip.instance`/`reg-id` and the source
//!   address/transport/connection each REGISTER came over.

pub mod bindings;
pub mod credentials;
pub mod digest;

pub use bindings::{
    uri_equivalent, Binding, Bindings, ContactSpec, ContactStatus, Contacts, Limits, RegisterError,
    RegisterOutcome, RegisterRequest, Transition, Transport, MAX_CONTACTS_PER_REQUEST,
};
pub use credentials::{
    Algorithm, DigestCredentials, DigestParseError, Qop, MAX_CREDENTIALS_LEN, MAX_PARAMS,
};
pub use digest::{
    compute_response, AuthResult, ChallengeKind, DigestAuthenticator, DigestConfig, RejectReason,
};
