//! Small helpers for messages about untrusted input: values are quoted
//! clipped, and JSON types are named as a person would say them.

use serde_json::Value;

/// At most `max` characters of `s`, with `…` when cut: hostile or broken
/// input must not flood an error message or a log line.
pub fn clip(s: &str, max: usize) -> String {
    let mut chars = s.chars();
    let mut out: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// "a string", "an array", … for "expected X, got Y" messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_long_and_short_text_when_clipped_then_only_long_text_is_marked() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("ééé", 2), "éé…");
    }

    #[test]
    fn given_json_values_when_named_then_each_type_reads_naturally() {
        assert_eq!(json_kind(&serde_json::json!([1])), "an array");
        assert_eq!(json_kind(&serde_json::json!(null)), "null");
    }
}
