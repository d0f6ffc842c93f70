use super::*;

const REALM: &str = "handover.local";

fn auth(now: Instant) -> DigestAuthenticator {
    DigestAuthenticator::with_secret(DigestConfig::new(REALM), [7u8; 32], now)
}

fn lookup(user: &str) -> Option<&'static str> {
    (user == "1001").then_some("pass1001")
}

/// Pulls `name="value"` out of a challenge header value.
fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
    let start = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    let len = challenge[start..].find('"').unwrap();
    &challenge[start..start + len]
}

/// Credentials as a client answering `challenge` would send them, signed with `password`.
fn answer(
    challenge: &str,
    alg: &str,
    qop_nc: Option<u32>,
    password: &str,
    realm: &str,
) -> DigestCredentials {
    let nonce = param(challenge, "nonce");
    let opaque = param(challenge, "opaque");
    let qop = match qop_nc {
        Some(nc) => format!(", qop=auth, nc={nc:08x}, cnonce=\"0a4f113b\""),
        None => String::new(),
    };
    let unsigned = format!(
        "Digest username=\"1001\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"sip:handover.local;transport=TCP\", response=\"00\", algorithm={alg}, \
         opaque=\"{opaque}\"{qop}"
    );
    let mut creds = DigestCredentials::parse(&unsigned).unwrap();
    creds.response = compute_response(&creds, "REGISTER", password);
    creds
}

#[test]
fn rfc2617_md5_qop_auth_vector() {
    let c = DigestCredentials::parse(
        "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
         nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, \
         nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", \
         opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    assert_eq!(compute_response(&c, "GET", "Circle Of Life"), c.response);
    assert_ne!(compute_response(&c, "GET", "Circle of Life"), c.response);
}

/// RFC 7616 §3.9.1: same request answered with SHA-256 and with MD5. The RFC's password
/// is "Circle of Life" (lower-case "of", unlike RFC 2617).
#[test]
fn rfc7616_sha256_and_md5_vectors() {
    let base = "username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
        qop=auth, nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", \
        nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
        opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    let sha = DigestCredentials::parse(&format!(
        "Digest {base}, algorithm=SHA-256, \
         response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
    ))
    .unwrap();
    assert_eq!(sha.algorithm, Algorithm::Sha256);
    assert_eq!(
        compute_response(&sha, "GET", "Circle of Life"),
        sha.response
    );
    let md5 = DigestCredentials::parse(&format!(
        "Digest {base}, algorithm=MD5, response=\"8ca523f5e9506fed4657c9700eebdbec\""
    ))
    .unwrap();
    assert_eq!(
        compute_response(&md5, "GET", "Circle of Life"),
        md5.response
    );
}

/// pjsua's retry to an MD5 challenge without qop: response = MD5(HA1:nonce:HA2) (RFC 2069).
/// Expected value computed independently (Python hashlib).
#[test]
fn pjsua_style_md5_without_qop_vector() {
    let c = DigestCredentials::parse(
        "Digest username=\"1001\", realm=\"handover.local\", nonce=\"4f2a8c\", \
         uri=\"sip:handover.local\", response=\"b3303acd60e0cb221a39d980a1ebbc83\", algorithm=MD5",
    )
    .unwrap();
    assert_eq!(compute_response(&c, "REGISTER", "pass1001"), c.response);
    assert_ne!(compute_response(&c, "INVITE", "pass1001"), c.response);
}

#[test]
fn challenge_offers_sha256_then_md5_with_qop_and_opaque() {
    let now = Instant::now();
    let mut a = auth(now);
    let ch = a.challenge(false, now);
    assert_eq!(ch.len(), 2);
    assert!(ch[0].starts_with("Digest realm=\"handover.local\", nonce=\""));
    assert!(ch[0].contains("algorithm=SHA-256"));
    assert!(ch[1].contains("algorithm=MD5"));
    for c in &ch {
        assert!(c.contains("qop=\"auth\""));
        assert_eq!(param(c, "nonce").len(), NONCE_LEN);
        assert_eq!(param(c, "opaque").len(), 32);
        assert!(!c.contains("stale"));
    }
    assert_eq!(param(&ch[0], "nonce"), param(&ch[1], "nonce"));
    let stale = a.challenge(true, now);
    assert!(stale.iter().all(|c| c.ends_with(", stale=true")));
    assert_ne!(param(&stale[0], "nonce"), param(&ch[0], "nonce"));
}

#[test]
fn challenge_escapes_realm() {
    let now = Instant::now();
    let mut a = DigestAuthenticator::with_secret(DigestConfig::new("a\"b"), [1u8; 32], now);
    assert!(a.challenge(false, now)[0].starts_with("Digest realm=\"a\\\"b\""));
}

#[test]
fn verifies_sha256_md5_and_sess_with_qop() {
    let now = Instant::now();
    let mut a = auth(now);
    for alg in ["SHA-256", "MD5", "MD5-sess", "SHA-256-sess"] {
        let ch = a.challenge(false, now);
        let creds = answer(&ch[0], alg, Some(1), "pass1001", REALM);
        assert_eq!(
            a.verify(&creds, "REGISTER", lookup, now),
            AuthResult::Ok {
                user: "1001".into()
            },
            "{alg}"
        );
    }
}

#[test]
fn response_covers_uri_as_sent_and_method() {
    let now = Instant::now();
    let mut a = auth(now);
    let ch = a.challenge(false, now);
    let mut creds = answer(&ch[0], "MD5", Some(1), "pass1001", REALM);
    // A re-serialised URI (lower-cased transport) would not verify.
    creds.uri = "sip:handover.local;transport=tcp".into();
    assert_eq!(
        a.verify(&creds, "REGISTER", lookup, now),
        AuthResult::Rejected(RejectReason::BadResponse)
    );
    let creds = answer(&ch[0], "MD5", Some(2), "pass1001", REALM);
    assert_eq!(
        a.verify(&creds, "INVITE", lookup, now),
        AuthResult::Rejected(RejectReason::BadResponse)
    );
}

#[test]
fn uppercase_hex_response_accepted() {
    let now = Instant::now();
    let mut a = auth(now);
    let ch = a.challenge(false, now);
    let mut creds = answer(&ch[0], "MD5", Some(1), "pass1001", REALM);
    creds.response = creds.response.to_ascii_uppercase();
    assert!(matches!(
        a.verify(&creds, "REGISTER", lookup, now),
        AuthResult::Ok { .. }
    ));
}

#[test]
fn replayed_nc_rejected_increasing_nc_accepted() {
    let now = Instant::now();
    let mut a = auth(now);
    let ch = a.challenge(false, now);
    let c1 = answer(&ch[0], "SHA-256", Some(1), "pass1001", REALM);
    assert!(matches!(
        a.verify(&c1, "REGISTER", lookup, now),
        AuthResult::Ok { .. }
    ));
    assert_eq!(
        a.verify(&c1, "REGISTER", lookup, now),
        AuthResult::Rejected(RejectReason::NonceCountReplay)
    );
    let c3 = answer(&ch[0], "SHA-256", Some(3), "pass1001", REALM);
    assert!(matches!(
        a.verify(&c3, "REGISTER", lookup, now),
        AuthResult::Ok { .. }
    ));
    let c2 = answer(&ch[0], "SHA-256", Some(2), "pass1001", REALM);
    assert_eq!(
        a.verify(&c2, "REGISTER", lookup, now),
        AuthResult::Rejected(RejectReason::NonceCountReplay)
    );
    let c0 = answer(
        &a.challenge(false, now)[0],
        "SHA-256",
        Some(0),
        "pass1001",
        REALM,
    );
    assert_eq!(
        a.verify(&c0, "REGISTER", lookup, now),
        AuthResult::Rejected(RejectReason::NonceCountReplay)
    );
}

#[test]
fn without_qop_a_nonce_is_good_once_then_stale() {
    let now = Instant::now();
    let mut a = auth(now);
    let ch = a.challenge(false, now);
    let c = answer(&ch[1], "MD5", None, "pass1001", REALM);
    assert_eq!(c.qop, None);
    assert!(matches!(
        a.verify(&c, "REGISTER", lookup, now),
        AuthResult::Ok { .. }
    ));
    assert_eq!(a.verify(&c, "REGISTER", lookup, now), AuthResult::Stale);
}

#[test]
fn expired_nonce_is_stale_only_with_right_password() {
    let t0 = Instant::now();
    let mut a = auth(t0);
    let ch = a.challenge(false, t0);
    let later = t0 + Duration::from_secs(301);
    let good = answer(&ch[0], "MD5", Some(1), "pass1001", REALM);
    assert_eq!(
        a.verify(&good, "REGISTER", lookup, later),
        AuthResult::Stale
    );
    let bad = answer(&ch[0], "MD5", Some(1), "wrong", REALM);
    assert_eq!(
        a.verify(&bad, "REGISTER", lookup, later),
        AuthResult::Rejected(RejectReason::BadResponse)
    );
    // Just inside the lifetime it is fine.
    let ok = answer(&ch[0], "MD5", Some(2), "pass1001", REALM);
    assert!(matches!(
        a.verify(&ok, "REGISTER", lookup, t0 + Duration::from_secs(300)),
        AuthResult::Ok { .. }
    ));
}

#[test]
fn tampered_or_foreign_nonce_rejected() {
    let now = Instant::now();
    let mut a = auth(now);
    let ch = a.challenge(false, now);
    let nonce = param(&ch[0], "nonce").to_owned();
    // Flip one hex digit of the random part and sign the request correctly over it.
    let mut tampered = nonce.clone().into_bytes();
    tampered[20] = if tampered[20] == b'0' { b'1' } else { b'0' };
    let mut creds = answer(&ch[0], "MD5", Some(1), "pass1001", REALM);
    creds.nonce = String::from_utf8(tampered).unwrap();
    creds.response = compute_response(&creds, "REGISTER", "pass1001");
    assert_eq!(
        a.verify(&creds, "REGISTER", lookup, now),
        AuthResult::Rejected(RejectReason::BadNonce)
    );
    // A nonce from another secret (e.g. before a restart).
    let mut other = DigestAuthenticator::with_secret(DigestConfig::new(REALM), [8u8; 32], now);
    let foreign = answer(
        &other.challenge(false, now)[0],
        "MD5",
        Some(1),
        "pass1001",
        REALM,
    );
    let mut foreign = foreign;
    foreign.opaque = None;
    foreign.response = compute_response(&foreign, "REGISTER", "pass1001");
    assert_eq!(
        a.verify(&foreign, "REGISTER", lookup, now),
        AuthResult::Rejected(RejectReason::BadNonce)
    );
    // Not even hex / wrong length.
    creds.nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093".into();
    assert_eq!(
        a.verify(&creds, "REGISTER", lookup, now),
        AuthResult::Rejected(RejectReason::BadNonce)
    );
}

#[test]
fn wrong_realm_and_wrong_opaque_rejected() {
    let now = Instant::now();
    let mut a = auth(now);
    let ch = a.challenge(false, now);
    let c = answer(&ch[0], "MD5", Some(1), "pass1001", "evil.example");
    assert_eq!(
        a.verify(&c, "REGISTER", lookup, now),
        AuthResult::Rejected(RejectReason::RealmMismatch)
    );
    let mut c = answer(&ch[0], "MD5", Some(1), "pass1001", REALM);
    c.opaque = Some("00".into());
    assert_eq!(
        a.verify(&c, "REGISTER", lookup, now),
        AuthResult::Rejected(RejectReason::OpaqueMismatch)
    );
    // Absent opaque is tolerated.
    c.opaque = None;
    assert!(matches!(
        a.verify(&c, "REGISTER", lookup, now),
        AuthResult::Ok { .. }
    ));
}

#[test]
fn unknown_user_and_wrong_password_look_the_same_and_hash_alike() {
    let now = Instant::now();
    let mut a = auth(now);
    let ch = a.challenge(false, now);
    let wrong_pw = answer(&ch[0], "SHA-256", Some(1), "nope", REALM);
    let mut unknown = answer(&ch[0], "SHA-256", Some(2), "pass1001", REALM);
    unknown.username = "9999".into();
    let mut looked_up = Vec::new();
    let r1 = a.verify(
        &wrong_pw,
        "REGISTER",
        |u: &str| {
            looked_up.push(u.to_owned());
            lookup(u)
        },
        now,
    );
    let r2 = a.verify(
        &unknown,
        "REGISTER",
        |u: &str| {
            looked_up.push(u.to_owned());
            lookup(u)
        },
        now,
    );
    assert_eq!(r1, AuthResult::Rejected(RejectReason::BadResponse));
    assert_eq!(r1, r2);
    assert_eq!(looked_up, ["1001", "9999"]);
    // Even a response made with the dummy password does not let an unknown user in.
    let mut dummy = unknown.clone();
    dummy.nc = Some(3);
    dummy.response = compute_response(&dummy, "REGISTER", DUMMY_PASSWORD);
    assert_eq!(
        a.verify(&dummy, "REGISTER", |_: &str| None::<String>, now),
        AuthResult::Rejected(RejectReason::BadResponse)
    );
    // Failed attempts are not recorded against the nonce.
    assert_eq!(a.tracked_nonces(), 0);
}

#[test]
fn nonce_table_is_bounded_and_eviction_never_reopens_replay() {
    let t0 = Instant::now();
    let mut cfg = DigestConfig::new(REALM);
    cfg.max_tracked_nonces = 2;
    let mut a = DigestAuthenticator::with_secret(cfg, [3u8; 32], t0);
    let mut used = Vec::new();
    for i in 0..3u64 {
        let t = t0 + Duration::from_millis(i + 1);
        let c = answer(&a.challenge(false, t)[0], "MD5", Some(1), "pass1001", REALM);
        assert!(matches!(
            a.verify(&c, "REGISTER", lookup, t),
            AuthResult::Ok { .. }
        ));
        used.push(c);
        assert!(a.tracked_nonces() <= 2);
    }
    let t = t0 + Duration::from_millis(10);
    // The first nonce was evicted: a replay of it gets Stale, not Ok.
    assert_eq!(a.verify(&used[0], "REGISTER", lookup, t), AuthResult::Stale);
    // The tracked ones still catch replays.
    assert_eq!(
        a.verify(&used[2], "REGISTER", lookup, t),
        AuthResult::Rejected(RejectReason::NonceCountReplay)
    );
    // Expired entries are purged.
    a.purge(t0 + Duration::from_secs(400));
    assert_eq!(a.tracked_nonces(), 0);
}

#[test]
fn nonce_from_the_future_is_rejected() {
    let t0 = Instant::now();
    let mut a = auth(t0);
    let later = t0 + Duration::from_secs(10);
    let ch = a.challenge(false, later);
    let c = answer(&ch[0], "MD5", Some(1), "pass1001", REALM);
    assert_eq!(
        a.verify(&c, "REGISTER", lookup, t0),
        AuthResult::Rejected(RejectReason::BadNonce)
    );
}

#[test]
fn challenge_kind_headers() {
    assert_eq!(ChallengeKind::Www.status(), 401);
    assert_eq!(ChallengeKind::Proxy.status(), 407);
    assert_eq!(ChallengeKind::Www.challenge_header(), "WWW-Authenticate");
    assert_eq!(
        ChallengeKind::Proxy.credentials_header(),
        "Proxy-Authorization"
    );
}

#[test]
fn hmac_matches_rfc4231_case_2() {
    // RFC 4231 §4.3: key "Jefe". Our keys are 32 bytes; a short key zero-padded to the
    // block size is the same HMAC key (RFC 2104 §2), so padding "Jefe" keeps the vector.
    let mut key = [0u8; 32];
    key[..4].copy_from_slice(b"Jefe");
    let mac = hmac_sha256(&key, &[b"what do ya want ", b"for nothing?"]);
    assert_eq!(
        hex(&mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
