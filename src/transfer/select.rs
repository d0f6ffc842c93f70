//! Which transfer type a REFER without `Replaces` (RFC 3515) or a control-API command asks for,
//! and to which target (DESIGN §3, "Type selection").
//!
//! The type comes from the first source that names one:
//! 1. the control API's explicit type ([`TypeSource::Api`]);
//! 2. the Refer-To URI parameter `transfer=success|release|conversation|hangup`
//!    ([`TypeSource::UriParam`]; case-insensitive; any other value is
//!    [`SelectError::BadTransferParam`], never silently the default);
//! 3. a dial prefix from `[transfer] prefixes` in front of the number ([`TypeSource::Prefix`]);
//! 4. the target's `default_transfer` (queues, IVR flows, configured external numbers; agents
//!    and typed numbers have none) ([`TypeSource::TargetDefault`]);
//! 5. `[transfer] default_blind` ([`TypeSource::GlobalDefault`]).
//!
//! A dial prefix is always stripped before the target is resolved, even when a higher source
//! chose the type: `*2` + `8000` with `transfer=success` is a success transfer to `8000`. The
//! config validator guarantees prefixes are unambiguous and start no configured number, so
//! stripping never changes which configured target is meant. The rest resolves through the
//! dial plan ([`Config::target_for_number`]: agent, queue, IVR, external number, ad-hoc
//! pattern); nothing found is [`SelectError::UnknownTarget`] (the actor answers 403 on the
//! REFER, or 404 in the NOTIFY, with a Warning).
//!
//! Selection does not judge whether the type suits the target: that is
//! [`super::policy::decide`]'s job, so one place states the seed's rules.
//!
//! The user part is the peer's (percent-decoded) Refer-To user; it is bounded
//! ([`MAX_DIALLED_LEN`]) before any lookup or regex match.

use crate::config::{Config, Target, TransferType, UnknownTransferType};

/// Longest dialled user part (prefix included) that is looked up, in bytes.
pub const MAX_DIALLED_LEN: usize = 128;

/// Longest `transfer=` value kept in an error (bytes, cut on a char boundary).
const MAX_PARAM_ECHO: usize = 32;

/// Where the chosen transfer type came from (for logs, events and CDRs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeSource {
    Api,
    UriParam,
    Prefix,
    TargetDefault,
    GlobalDefault,
}

/// The outcome of type selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub transfer: TransferType,
    pub source: TypeSource,
    pub target: Target,
    /// The number the target was resolved from: the user part without a dial prefix.
    pub dialled: String,
}

/// Why no transfer can be selected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The (prefix-stripped) number names no agent, queue, IVR, external number, and matches
    /// no ad-hoc pattern.
    #[error("no agent, queue, IVR flow or external number is reachable as `{dialled}`")]
    UnknownTarget { dialled: String },
    /// `transfer=` names no transfer type.
    #[error("bad transfer parameter: {0}")]
    BadTransferParam(#[source] UnknownTransferType),
    #[error("dialled number of {len} bytes is longer than {MAX_DIALLED_LEN}")]
    TooLong { len: usize },
}

impl SelectError {
    /// `399 handover "<why>"`, the value of the `Warning` header of the refusal.
    pub fn warning_header_value(&self) -> String {
        super::warning_header_value(&self.to_string())
    }
}

/// Chooses the transfer type and resolves the target of a transfer request.
///
/// `refer_to_user`: the Refer-To URI's user part (or the API's dialled number);
/// `transfer_param`: the value of its `transfer` URI parameter, if present; `api_type`: the
/// type named by a control-API command.
pub fn select(
    config: &Config,
    refer_to_user: &str,
    transfer_param: Option<&str>,
    api_type: Option<TransferType>,
) -> Result<Selection, SelectError> {
    if refer_to_user.len() > MAX_DIALLED_LEN {
        return Err(SelectError::TooLong {
            len: refer_to_user.len(),
        });
    }
    let (prefix_type, dialled) = match config.transfer.split_prefix(refer_to_user) {
        Some((t, rest)) => (Some(t), rest),
        None => (None, refer_to_user),
    };
    // The explicit sources are checked before the target, so a bad parameter is reported as
    // such even when the number is wrong too.
    let explicit = match (api_type, transfer_param) {
        (Some(t), _) => Some((t, TypeSource::Api)),
        (None, Some(p)) => Some((parse_param(p)?, TypeSource::UriParam)),
        (None, None) => prefix_type.map(|t| (t, TypeSource::Prefix)),
    };
    let target = config
        .target_for_number(dialled)
        .ok_or_else(|| SelectError::UnknownTarget {
            dialled: dialled.to_string(),
        })?;
    let (transfer, source) = explicit
        .or_else(|| target_default(config, &target).map(|t| (t, TypeSource::TargetDefault)))
        .unwrap_or((config.transfer.default_blind, TypeSource::GlobalDefault));
    Ok(Selection {
        transfer,
        source,
        target,
        dialled: dialled.to_string(),
    })
}

fn parse_param(p: &str) -> Result<TransferType, SelectError> {
    p.parse::<TransferType>().map_err(|_| {
        let mut end = p.len().min(MAX_PARAM_ECHO);
        while !p.is_char_boundary(end) {
            end -= 1;
        }
        SelectError::BadTransferParam(UnknownTransferType(p.get(..end).unwrap_or("").to_string()))
    })
}

/// The configured `default_transfer` of a target (agents and typed numbers have none).
fn target_default(config: &Config, target: &Target) -> Option<TransferType> {
    match target {
        Target::Agent(_) | Target::Number(_) => None,
        Target::Queue(name) => config.queue(name)?.default_transfer,
        Target::Ivr(name) => config.ivr(name)?.default_transfer,
        Target::External(name) => config.external_number(name)?.default_transfer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransferType::{Conversation, Hangup, Release, Success};

    /// Every target kind, with and without a `default_transfer`, and a non-default
    /// `default_blind` so that the global default is visible.
    const CONF: &str = r#"
[sip]
listen = ["udp:127.0.0.1:5060"]
domain = "d.local"

[[trunks]]
name = "carrier"
sources = ["127.0.0.1/32"]
outbound = "sip:127.0.0.1:5080"
access_number = "+3215550000"

[[agents]]
id = "1001"
password = "p"
skills = ["sales"]

[[queues]]
name = "sales"
number = "8000"
skill = "sales"
default_transfer = "success"

[[queues]]
name = "support"
number = "8001"
skill = "sales"

[[ivr]]
name = "survey"
number = "7000"
uri = "sip:survey@127.0.0.1:5090"
default_transfer = "hangup"

[[ivr]]
name = "menu"
number = "7001"
uri = "sip:menu@127.0.0.1:5090"

[[external_numbers]]
name = "partner"
number = "0049301234567"
user_number_forwarding = true
default_transfer = "conversation"

[[external_numbers]]
name = "hotline"
number = "0049307654321"
default_transfer = "release"

[[external_numbers]]
name = "plain"
number = "0049300000000"

[external]
adhoc_patterns = ["^00[1-9][0-9]{6,14}$"]

[transfer]
default_blind = "conversation"
prefixes = { success = "*1", release = "*2", conversation = "*3", hangup = "**4" }
"#;

    fn conf() -> Config {
        Config::from_toml_str(CONF).unwrap()
    }

    fn sel(user: &str, param: Option<&str>, api: Option<TransferType>) -> Selection {
        select(&conf(), user, param, api).unwrap()
    }

    fn want(t: TransferType, source: TypeSource, target: &str, dialled: &str) -> Selection {
        Selection {
            transfer: t,
            source,
            target: target.parse().unwrap(),
            dialled: dialled.to_string(),
        }
    }

    #[test]
    fn api_type_wins_over_everything() {
        // Param, prefix and target default all say otherwise.
        assert_eq!(
            sel("*28000", Some("conversation"), Some(Hangup)),
            want(Hangup, TypeSource::Api, "queue:sales", "8000")
        );
        // The API's type is taken as given; a stray param is not even parsed.
        assert_eq!(
            sel("1001", Some("blind"), Some(Release)),
            want(Release, TypeSource::Api, "agent:1001", "1001")
        );
    }

    #[test]
    fn uri_param_wins_over_prefix_and_defaults() {
        assert_eq!(
            sel("*28000", Some("conversation"), None),
            want(Conversation, TypeSource::UriParam, "queue:sales", "8000")
        );
        assert_eq!(
            sel("7000", Some("success"), None),
            want(Success, TypeSource::UriParam, "ivr:survey", "7000")
        );
        // Case-insensitive, like the config's own spelling of types.
        assert_eq!(
            sel("1001", Some("Release"), None),
            want(Release, TypeSource::UriParam, "agent:1001", "1001")
        );
    }

    #[test]
    fn each_prefix_selects_its_type_and_is_stripped() {
        for (user, t) in [
            ("*18001", Success),
            ("*28001", Release),
            ("*38001", Conversation),
            ("**48001", Hangup),
        ] {
            assert_eq!(
                sel(user, None, None),
                want(t, TypeSource::Prefix, "queue:support", "8001"),
                "{user}"
            );
        }
    }

    #[test]
    fn prefix_wins_over_target_default() {
        // sales defaults to success; survey to hangup; partner to conversation.
        assert_eq!(
            sel("*28000", None, None),
            want(Release, TypeSource::Prefix, "queue:sales", "8000")
        );
        assert_eq!(
            sel("*17000", None, None),
            want(Success, TypeSource::Prefix, "ivr:survey", "7000")
        );
        assert_eq!(
            sel("*10049301234567", None, None),
            want(
                Success,
                TypeSource::Prefix,
                "external:partner",
                "0049301234567"
            )
        );
    }

    #[test]
    fn prefix_is_stripped_for_ad_hoc_numbers_too() {
        assert_eq!(
            sel("*20033123456789", None, None),
            want(
                Release,
                TypeSource::Prefix,
                "number:0033123456789",
                "0033123456789"
            )
        );
    }

    #[test]
    fn target_defaults_apply_without_param_or_prefix() {
        assert_eq!(
            sel("8000", None, None),
            want(Success, TypeSource::TargetDefault, "queue:sales", "8000")
        );
        assert_eq!(
            sel("7000", None, None),
            want(Hangup, TypeSource::TargetDefault, "ivr:survey", "7000")
        );
        assert_eq!(
            sel("0049301234567", None, None),
            want(
                Conversation,
                TypeSource::TargetDefault,
                "external:partner",
                "0049301234567"
            )
        );
        assert_eq!(
            sel("0049307654321", None, None),
            want(
                Release,
                TypeSource::TargetDefault,
                "external:hotline",
                "0049307654321"
            )
        );
    }

    #[test]
    fn global_default_for_targets_without_one() {
        for (user, target) in [
            ("1001", "agent:1001"),
            ("8001", "queue:support"),
            ("7001", "ivr:menu"),
            ("0049300000000", "external:plain"),
            ("0033123456789", "number:0033123456789"),
        ] {
            assert_eq!(
                sel(user, None, None),
                want(Conversation, TypeSource::GlobalDefault, target, user),
                "{user}"
            );
        }
        // With the stock default_blind.
        let mut c = conf();
        c.transfer.default_blind = Release;
        assert_eq!(select(&c, "1001", None, None).unwrap().transfer, Release);
    }

    #[test]
    fn unknown_targets() {
        let c = conf();
        for user in ["", "9999", "*2", "*29999", "12345", "*1*18000", "8000;x"] {
            let dialled = c.transfer.split_prefix(user).map_or(user, |(_, rest)| rest);
            assert_eq!(
                select(&c, user, None, None),
                Err(SelectError::UnknownTarget {
                    dialled: dialled.to_string()
                }),
                "{user}"
            );
        }
        // An explicit type does not make an unknown number known.
        assert!(matches!(
            select(&c, "9999", Some("success"), Some(Success)),
            Err(SelectError::UnknownTarget { .. })
        ));
    }

    #[test]
    fn bad_transfer_param() {
        let c = conf();
        assert_eq!(
            select(&c, "8000", Some("blind"), None),
            Err(SelectError::BadTransferParam(UnknownTransferType(
                "blind".into()
            )))
        );
        assert!(matches!(
            select(&c, "8000", Some(""), None),
            Err(SelectError::BadTransferParam(_))
        ));
        // Reported before the target, and with a bounded echo of the peer's bytes.
        let long = "é".repeat(100);
        match select(&c, "9999", Some(&long), None) {
            Err(SelectError::BadTransferParam(UnknownTransferType(v))) => {
                assert!(v.len() <= MAX_PARAM_ECHO && !v.is_empty());
                assert!(long.starts_with(&v));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn overlong_user_is_refused_before_lookup() {
        let user = "0".repeat(MAX_DIALLED_LEN + 1);
        assert_eq!(
            select(&conf(), &user, None, None),
            Err(SelectError::TooLong {
                len: MAX_DIALLED_LEN + 1
            })
        );
        let user = format!("00{}", "1".repeat(MAX_DIALLED_LEN - 2));
        // At the bound: looked up (the ad-hoc pattern allows at most 17 digits).
        assert!(matches!(
            select(&conf(), &user, None, None),
            Err(SelectError::UnknownTarget { .. })
        ));
    }

    #[test]
    fn warning_values_name_the_problem() {
        let e = select(&conf(), "9\"99", None, None).unwrap_err();
        assert_eq!(
            e.warning_header_value(),
            "399 handover \"no agent, queue, IVR flow or external number is reachable as `9?99`\""
        );
        let e = select(&conf(), "8000", Some("blind"), None).unwrap_err();
        assert!(e
            .warning_header_value()
            .contains("unknown transfer type `blind`"));
    }
}
