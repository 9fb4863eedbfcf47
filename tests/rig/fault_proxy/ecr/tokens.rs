//! Short-lived registry tokens: the proxy accepts only `AWS:<token>` with a
//! token it handed out, rotated by request count (then 401) or expiring on
//! a clock (then ECR's 403 `DENIED`), and sends the registry's real
//! credentials on.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;

use super::Answer;
use crate::fault_proxy::{bump, error_json, is_blob_upload_put, Shared};
use crate::registry::USER;
use crate::wire::Head;

/// ECR's token lifetime, for tokens of modes that do not expire by time.
const ECR_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// What every token the proxy hands out starts with.
const TOKEN_PREFIX: &str = "rotating-token-";

fn token(generation: u64) -> String {
    format!("{TOKEN_PREFIX}{generation}")
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// `AWS:<password>` out of a Basic `Authorization` value.
fn basic_password(header: &str) -> Option<String> {
    let b64 = header.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    (user == USER).then(|| password.to_string())
}

/// Short-lived credentials: the proxy accepts only `AWS:<token>` with a token
/// it handed out ([`TokenHandle`]) and refuses anything else. Requests it
/// lets through carry the registry's real credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRotation {
    /// A new token after every this many accepted requests; the old one then
    /// gets 401.
    EveryRequests(u64),
    /// The token rotates just as the first blob-upload PUT arrives, so that
    /// PUT (a streamed body the client cannot simply resend) gets 401.
    AtFirstBlobUpload,
    /// Tokens expire by the clock, as ECR's do: each is valid for `lifetime`
    /// from when it was issued ([`TokenHandle::issue`]; the first from the
    /// proxy's start), whether or not a newer one exists. Past that, a
    /// request carrying it gets ECR's 403 `DENIED` "Your authorization token
    /// has expired"; a token never issued gets 401.
    Expiring { lifetime: Duration },
}

/// Token generations handed out, and (expiring mode) until when each is good.
pub(crate) struct TokenState {
    generation: u64,
    /// Requests accepted since the last rotation.
    accepted: u64,
    expiries: BTreeMap<u64, Instant>,
    lifetime: Option<Duration>,
}

impl TokenState {
    pub(crate) fn new(rotation: Option<TokenRotation>) -> Self {
        let lifetime = match rotation {
            Some(TokenRotation::Expiring { lifetime }) => Some(lifetime),
            _ => None,
        };
        let mut expiries = BTreeMap::new();
        if let Some(l) = lifetime {
            expiries.insert(0, Instant::now() + l);
        }
        TokenState {
            generation: 0,
            accepted: 0,
            expiries,
            lifetime,
        }
    }

    fn rotate(&mut self) {
        self.generation += 1;
        self.accepted = 0;
    }
}

/// Hands out the proxy's tokens (for a credential source under test, or for
/// [`crate::AwsFront`] to answer `GetAuthorizationToken` with).
#[derive(Clone)]
pub struct TokenHandle(pub(crate) std::sync::Arc<Shared>);

impl TokenHandle {
    /// (user, password) of the newest token.
    pub fn current(&self) -> (String, String) {
        let generation = self.0.tokens.lock().expect("tokens").generation;
        (USER.to_string(), token(generation))
    }

    /// With [`TokenRotation::Expiring`]: a new token, valid for `lifetime`
    /// from now (older ones stay valid until their own expiry). Other modes:
    /// the current token, with a nominal ECR expiry 12 hours out.
    /// Returns (user, password, expires at).
    pub fn issue(&self) -> (String, String, SystemTime) {
        let mut tokens = self.0.tokens.lock().expect("tokens");
        let Some(lifetime) = tokens.lifetime else {
            return (
                USER.to_string(),
                token(tokens.generation),
                SystemTime::now() + ECR_TOKEN_LIFETIME,
            );
        };
        tokens.rotate();
        let g = tokens.generation;
        tokens.expiries.insert(g, Instant::now() + lifetime);
        bump(&self.0.counters.tokens_issued);
        (USER.to_string(), token(g), SystemTime::now() + lifetime)
    }

    /// The current token counts as expired from now (403 in
    /// [`TokenRotation::Expiring`] mode). In the count-based modes it is
    /// replaced instead, so it gets their 401.
    pub fn expire_now(&self) {
        let mut tokens = self.0.tokens.lock().expect("tokens");
        if tokens.lifetime.is_some() {
            let g = tokens.generation;
            let now = Instant::now();
            let e = tokens.expiries.entry(g).or_insert(now);
            *e = (*e).min(now);
        } else {
            tokens.rotate();
            bump(&self.0.counters.rotations);
        }
    }
}

impl std::fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHandle(<redacted>)")
    }
}

impl Shared {
    /// The registry's credentials to send upstream when the request may
    /// pass; else the refusal (401, or 403 for an expired token).
    pub(crate) fn authorize(&self, head: &Head) -> Result<Option<String>, Answer> {
        let unauthorized = || Answer {
            status: "401 Unauthorized",
            headers: vec![(
                "WWW-Authenticate",
                "Basic realm=\"rig-fault-proxy\"".to_string(),
            )],
            body: error_json("UNAUTHORIZED", "authentication required"),
        };
        let Some(rotation) = self.opts.tokens else {
            // Pass the client's own credentials through.
            return Ok(head.header("authorization").map(str::to_string));
        };
        let given = head.header("authorization").unwrap_or("");
        let mut tokens = self.tokens.lock().expect("tokens");
        if let TokenRotation::Expiring { .. } = rotation {
            let generation = basic_password(given)
                .and_then(|p| p.strip_prefix(TOKEN_PREFIX)?.parse::<u64>().ok())
                .filter(|g| given == basic(USER, &token(*g)));
            let Some(&expiry) = generation.and_then(|g| tokens.expiries.get(&g)) else {
                bump(&self.counters.unauthorized);
                return Err(unauthorized());
            };
            if Instant::now() >= expiry {
                bump(&self.counters.expired_tokens);
                return Err(Answer::error(
                    "403 Forbidden",
                    "DENIED",
                    "Your authorization token has expired. Reauthenticate and try again.",
                ));
            }
            tokens.accepted += 1;
            return Ok(self.upstream_auth.clone());
        }
        if rotation == TokenRotation::AtFirstBlobUpload
            && is_blob_upload_put(head)
            && !self.rotated_at_upload.swap(true, Ordering::SeqCst)
        {
            tokens.rotate();
            bump(&self.counters.rotations);
        }
        if given != basic(USER, &token(tokens.generation)) {
            bump(&self.counters.unauthorized);
            if (0..tokens.generation).any(|g| given == basic(USER, &token(g))) {
                bump(&self.counters.stale_tokens);
            }
            return Err(unauthorized());
        }
        tokens.accepted += 1;
        if let TokenRotation::EveryRequests(k) = rotation {
            if tokens.accepted >= k.max(1) {
                tokens.rotate();
                bump(&self.counters.rotations);
            }
        }
        Ok(self.upstream_auth.clone())
    }
}
