//! Ids the functions make up and read back from their own messages: a
//! prefix naming the kind, then hex digits. Generated from a random number,
//! accepted back only in that shape, so a body cannot smuggle anything else
//! into a key or a log line.

/// Declares one such id type: `hex_id!(Doc, Name, "bf-", "a backfill run id")`.
macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new() -> $name {
                $name(format!(concat!($prefix, "{:016x}"), rand::random::<u64>()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::new()
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let hex = s.strip_prefix($prefix).unwrap_or("");
                if s.len() <= 64 && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok($name(s))
                } else {
                    Err(format!(
                        concat!($what, " is \"", $prefix, "\" and hex digits, got {:?}"),
                        ecr_bridge::text::clip(&s, 70)
                    ))
                }
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pub(crate) use hex_id;
