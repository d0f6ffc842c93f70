//! Contact-centre transfers as data (DESIGN §3): which transfer type a request asks for
//! ([`select()`]) and what that type means for each leg ([`policy`]).
//!
//! Both halves are pure functions of their inputs and the [`Config`](crate::config::Config):
//! no I/O, no SIP, no clock. The call actor resolves a REFER (RFC 3515) or a control-API command
//! into a [`select::Selection`], classifies the target with [`policy::TargetKind::of`], asks
//! [`policy::decide`] for the leg-release [`policy::Policy`] (or a [`policy::Refusal`], answered
//! as 403 with [`warning_header_value`]), and then executes the policy: when to release the
//! agent leg, when to send the final NOTIFY (RFC 5589), what to do when the target fails.

pub mod policy;
pub mod select;

#[cfg(test)]
mod policy_tests;

pub use policy::{
    decide, table, AgentAfter, AgentHangupAction, Direction, FailurePath, History, Policy, Refusal,
    ReleaseMoment, Request, TargetKind, REFUSE_IVR_TRANSFER,
};
pub use select::{select, SelectError, Selection, TypeSource, MAX_DIALLED_LEN};

/// Longest warn-text [`warning_header_value`] emits (characters).
pub const MAX_WARNING_TEXT: usize = 160;

/// The value of a `Warning` header (RFC 3261 §20.43) explaining a refused transfer:
/// `399 handover "<text>"`. Code 399 is "miscellaneous warning"; the warn-agent is the
/// pseudonym `handover`. The text may carry peer bytes (a dialled number, a `transfer=` value),
/// so it is made safe for a quoted-string: `"`, `\` and control characters become `?`, and it
/// is cut at [`MAX_WARNING_TEXT`] characters.
pub fn warning_header_value(text: &str) -> String {
    let safe: String = text
        .chars()
        .take(MAX_WARNING_TEXT)
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '?'
            } else {
                c
            }
        })
        .collect();
    format!("399 handover \"{safe}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_value_is_a_safe_quoted_string() {
        assert_eq!(
            warning_header_value("rule 2: no"),
            "399 handover \"rule 2: no\""
        );
        assert_eq!(
            warning_header_value("a\"b\\c\r\nd"),
            "399 handover \"a?b?c??d\""
        );
        let long = "x".repeat(1000);
        let v = warning_header_value(&long);
        assert_eq!(v.len(), "399 handover \"\"".len() + MAX_WARNING_TEXT);
    }
}
