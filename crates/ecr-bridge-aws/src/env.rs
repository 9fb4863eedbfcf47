//! Reading configuration from the environment, with errors that name the
//! variable. Each function's `Config::from_env` is built from these and runs
//! once at start-up, so a bad deployment fails at once and says why.

use std::fmt;
use std::str::FromStr;

use ecr_bridge::ids::{AssumeRole, ExternalId, RoleArn};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct EnvError {
    pub variable: String,
    pub problem: String,
}

impl EnvError {
    pub fn new(variable: &str, problem: impl Into<String>) -> Self {
        EnvError {
            variable: variable.to_string(),
            problem: problem.into(),
        }
    }
}

/// Where variables come from: the process environment, or a map in tests.
pub trait Vars {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Vars for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// A variable map from pairs, for tests and tools that configure a function
/// without touching the process environment.
pub fn vars_from(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A set, non-blank variable, trimmed.
pub fn optional(vars: &dyn Vars, name: &str) -> Option<String> {
    vars.get(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A number within `range`, or `default` when unset.
pub fn number<T>(vars: &dyn Vars, name: &str, default: T, min: T, max: T) -> Result<T, EnvError>
where
    T: FromStr + PartialOrd + Copy + fmt::Display,
{
    let Some(raw) = optional(vars, name) else {
        return Ok(default);
    };
    let value: T = raw.parse().map_err(|_| {
        EnvError::new(
            name,
            format!(
                "must be a whole number from {min} to {max} (got {:?})",
                clip(&raw)
            ),
        )
    })?;
    if value < min || value > max {
        return Err(EnvError::new(
            name,
            format!("must be from {min} to {max} (got {value})"),
        ));
    }
    Ok(value)
}

/// An IAM role ARN ([`RoleArn`]: `arn:<partition>:iam::<12 digits>:role/<name>`).
pub fn role_arn(vars: &dyn Vars, name: &str) -> Result<Option<RoleArn>, EnvError> {
    let Some(v) = optional(vars, name) else {
        return Ok(None);
    };
    v.parse::<RoleArn>().map(Some).map_err(|_| {
        EnvError::new(
            name,
            format!(
                "must be an IAM role ARN like arn:aws:iam::123456789012:role/name (got {:?})",
                clip(&v)
            ),
        )
    })
}

/// An STS ExternalId ([`ExternalId`]: 2-1224 characters of `[\w+=,.@:/-]`),
/// only meaningful with a role.
pub fn external_id(
    vars: &dyn Vars,
    name: &str,
    role_variable: &str,
    role: &Option<RoleArn>,
) -> Result<Option<ExternalId>, EnvError> {
    let Some(v) = optional(vars, name) else {
        return Ok(None);
    };
    if role.is_none() {
        return Err(EnvError::new(
            name,
            format!("is set but {role_variable} is not; an ExternalId needs a role to assume"),
        ));
    }
    v.parse::<ExternalId>().map(Some).map_err(|_| {
        EnvError::new(
            name,
            "must be 2-1224 characters of letters, digits and _+=,.@:/-",
        )
    })
}

/// The role to assume (`role_variable`) with its ExternalId
/// (`external_id_variable`); `None` when no role is set.
pub fn assume_role(
    vars: &dyn Vars,
    role_variable: &str,
    external_id_variable: &str,
) -> Result<Option<AssumeRole>, EnvError> {
    let role = role_arn(vars, role_variable)?;
    let external_id = external_id(vars, external_id_variable, role_variable, &role)?;
    Ok(role.map(|role_arn| AssumeRole {
        role_arn,
        external_id,
    }))
}

/// An STS role session name (2-64 characters of `[\w+=,.@-]`), `default` when unset.
pub fn session_name(vars: &dyn Vars, name: &str, default: &str) -> Result<String, EnvError> {
    let v = optional(vars, name).unwrap_or_else(|| default.to_string());
    let ok = (2..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if ok {
        Ok(v)
    } else {
        Err(EnvError::new(
            name,
            "must be 2-64 characters of letters, digits and _+=,.@-",
        ))
    }
}

/// An EventBridge bus, by name (1-256 of `A-Z a-z 0-9 . - _ /`) or ARN
/// (`arn:<partition>:events:<region>:<account>:event-bus/<name>`); `None`
/// when unset.
pub fn event_bus(vars: &dyn Vars, name: &str) -> Result<Option<String>, EnvError> {
    let Some(bus) = optional(vars, name) else {
        return Ok(None);
    };
    let ok = match bus.strip_prefix("arn:") {
        Some(rest) => {
            rest.contains(":events:") && rest.contains(":event-bus/") && bus.len() <= 1600
        }
        None => {
            (1..=256).contains(&bus.len())
                && bus
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        }
    };
    if ok {
        Ok(Some(bus))
    } else {
        Err(EnvError::new(
            name,
            format!(
                "expected an EventBridge bus name (1-256 of A-Z a-z 0-9 . - _ /) or ARN, got {:?}",
                clip(&bus)
            ),
        ))
    }
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        vars_from(pairs)
    }

    #[test]
    fn given_unset_or_blank_numbers_when_read_then_default_else_bounds_are_enforced() {
        assert_eq!(number(&vars(&[]), "N", 60u64, 0, 3600).unwrap(), 60);
        assert_eq!(
            number(&vars(&[("N", "  ")]), "N", 60u64, 0, 3600).unwrap(),
            60
        );
        assert_eq!(
            number(&vars(&[("N", "5")]), "N", 60u64, 0, 3600).unwrap(),
            5
        );
        let e = number(&vars(&[("N", "abc")]), "N", 60u64, 0, 3600).unwrap_err();
        assert_eq!(e.variable, "N");
        assert!(
            e.to_string().starts_with("N: must be a whole number"),
            "{e}"
        );
        assert!(number(&vars(&[("N", "9999")]), "N", 60u64, 0, 3600).is_err());
    }

    #[test]
    fn given_role_arns_when_validated_then_only_iam_roles_pass() {
        let ok = role_arn(
            &vars(&[("R", "arn:aws:iam::222222222222:role/ecr-bridge/push")]),
            "R",
        )
        .unwrap();
        assert_eq!(
            ok.as_ref().map(RoleArn::as_str),
            Some("arn:aws:iam::222222222222:role/ecr-bridge/push")
        );
        for bad in [
            "arn:aws:iam::22:role/x",
            "arn:aws:s3:::bucket",
            "role/x",
            "arn:aws:iam::222222222222:user/x",
        ] {
            let e = role_arn(&vars(&[("R", bad)]), "R").unwrap_err();
            assert!(
                e.to_string().starts_with("R: must be an IAM role ARN"),
                "{e}"
            );
        }
    }

    #[test]
    fn given_external_id_without_role_when_validated_then_refused_naming_both_variables() {
        let e = external_id(&vars(&[("X", "abc")]), "X", "ROLE", &None).unwrap_err();
        assert!(e.to_string().contains("ROLE"), "{e}");
        let role = Some("arn:aws:iam::222222222222:role/x".parse().unwrap());
        assert!(external_id(&vars(&[("X", "a b")]), "X", "ROLE", &role).is_err());
        assert_eq!(
            external_id(&vars(&[("X", "kuali-sync")]), "X", "ROLE", &role)
                .unwrap()
                .as_ref()
                .map(ExternalId::as_str),
            Some("kuali-sync")
        );
    }

    #[test]
    fn given_bus_names_and_arns_when_read_then_only_valid_ones_pass_and_the_error_names_the_variable(
    ) {
        let bus = |v: &str| event_bus(&vars(&[("EVENT_BUS_NAME", v)]), "EVENT_BUS_NAME");
        assert_eq!(bus("deployments").unwrap().as_deref(), Some("deployments"));
        assert!(bus("arn:aws:events:us-east-1:111122223333:event-bus/deployments").is_ok());
        assert_eq!(event_bus(&vars(&[]), "EVENT_BUS_NAME").unwrap(), None);
        let e = bus("two words").unwrap_err().to_string();
        assert!(
            e.contains("EVENT_BUS_NAME") && e.contains("two words"),
            "{e}"
        );
        assert!(bus("arn:aws:sqs:us-east-1:111122223333:q").is_err());
    }
}
