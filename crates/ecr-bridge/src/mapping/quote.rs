//! Config and event values quoted in messages: cut short, because they end
//! up in logs and a hostile document must not flood them.

/// Longest excerpt of a config or event value quoted in a message.
const QUOTE_CHARS: usize = 100;

/// At most [`QUOTE_CHARS`] characters of `s`, marked when cut.
pub(super) fn truncated(s: &str) -> String {
    let mut chars = s.chars();
    let mut out: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// [`truncated`], quoted and escaped for a message.
pub(super) fn shown(s: &str) -> String {
    format!("{:?}", truncated(s))
}
