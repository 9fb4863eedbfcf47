//! Merging our statement into a repository policy. We own exactly one
//! statement, found by its Sid; every other statement is somebody else's and
//! is kept as it is. Comparison is semantic (a string principal equals a
//! one-element list, actions compare as sets, case-insensitively), so a
//! policy that already says what we would write is never rewritten.

use crate::text::json_kind;
use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::account::AccountId;

/// Gen3's Sid: keeping it lets us take over what its cronjob wrote.
pub const DEFAULT_SID: &str = "AllowCrossAccountPull";

/// What a puller needs in the repository policy. (`GetAuthorizationToken`,
/// which Gen3 also lists, only works in the puller's own IAM policy.)
pub const DEFAULT_PULL_ACTIONS: [&str; 3] = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
];

/// `SetRepositoryPolicy`'s limit on the policy text.
pub const MAX_POLICY_CHARS: usize = 10_240;

/// The policy language version for documents we write.
pub const POLICY_VERSION: &str = "2012-10-17";

/// What our statement looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    pub sid: String,
    /// Sorted and without duplicates.
    pub actions: Vec<String>,
    /// `aws`, `aws-cn` or `aws-us-gov`: the partition of the principals' ARNs.
    pub partition: String,
}

impl PolicySpec {
    pub fn new(
        sid: impl Into<String>,
        actions: impl IntoIterator<Item = String>,
        partition: impl Into<String>,
    ) -> Self {
        let actions: BTreeSet<String> = actions.into_iter().collect();
        PolicySpec {
            sid: sid.into(),
            actions: actions.into_iter().collect(),
            partition: partition.into(),
        }
    }

    /// Gen3's Sid, the three pull actions, principals in `partition`.
    pub fn default_for(partition: impl Into<String>) -> Self {
        Self::new(
            DEFAULT_SID,
            DEFAULT_PULL_ACTIONS.iter().map(|a| a.to_string()),
            partition,
        )
    }

    /// The partition a region belongs to.
    pub fn partition_of(region: &str) -> &'static str {
        if region.starts_with("cn-") {
            "aws-cn"
        } else if region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }

    pub fn principal(&self, account: &AccountId) -> String {
        format!("arn:{}:iam::{account}:root", self.partition)
    }

    /// Our statement for these accounts (which must not be empty).
    pub fn statement(&self, accounts: &BTreeSet<AccountId>) -> Value {
        let principals: Vec<String> = accounts.iter().map(|a| self.principal(a)).collect();
        json!({
            "Sid": self.sid,
            "Effect": "Allow",
            "Principal": {"AWS": principals},
            "Action": self.actions,
        })
    }

    /// The account (or, for principals that are not an account root, the
    /// principal itself) a principal string names.
    fn principal_key(&self, principal: &str) -> String {
        if principal.parse::<AccountId>().is_ok() {
            return principal.to_string();
        }
        let account = principal
            .strip_prefix("arn:")
            .and_then(|r| r.split_once(":iam::"))
            .and_then(|(_partition, rest)| rest.strip_suffix(":root"))
            .filter(|a| a.parse::<AccountId>().is_ok());
        match account {
            Some(a) => a.to_string(),
            None => principal.to_string(),
        }
    }
}

/// What to do to the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyChange {
    /// It already says what we would write (or there is nothing to remove).
    Keep,
    /// `SetRepositoryPolicy` with this text.
    Put(String),
    /// `DeleteRepositoryPolicy`: our statement was the only one.
    Delete,
}

impl PolicyChange {
    pub fn is_write(&self) -> bool {
        !matches!(self, PolicyChange::Keep)
    }
}

/// The change and what it does to access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMerge {
    pub change: PolicyChange,
    /// Who our statement granted before: account ids, or whole principal
    /// strings for principals that are not an account root.
    pub before: BTreeSet<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Why a policy cannot be merged. All permanent: the same inputs fail the
/// same way until a person changes the policy or the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the current repository policy is not JSON ({0}); refusing to overwrite it")]
    NotJson(String),
    #[error(
        "the current repository policy is not a policy document ({0}); refusing to overwrite it"
    )]
    NotADocument(String),
    #[error("the policy would be {length} characters; ECR allows at most {limit}")]
    TooLarge { length: usize, limit: usize },
}

/// The change that makes `current` (the repository's policy text, if
/// any) grant exactly `accounts` through our statement.
pub fn merge_policy(
    current: Option<&str>,
    accounts: &BTreeSet<AccountId>,
    spec: &PolicySpec,
) -> Result<PolicyMerge, PolicyError> {
    let document = current.map(parse_document).transpose()?;
    let statements = match &document {
        Some(doc) => statements_of(doc)?,
        None => Vec::new(),
    };
    let (ours, foreign): (Vec<&Value>, Vec<&Value>) = statements
        .iter()
        .partition(|s| s.get("Sid").and_then(Value::as_str) == Some(spec.sid.as_str()));

    let before: BTreeSet<String> = ours
        .iter()
        .flat_map(|s| principals(s).unwrap_or_default())
        .map(|p| spec.principal_key(&p))
        .collect();
    let wanted: BTreeSet<String> = accounts.iter().map(|a| a.to_string()).collect();
    let added = wanted.difference(&before).cloned().collect();
    let removed = before.difference(&wanted).cloned().collect();
    let keep = |change| PolicyMerge {
        change,
        before: before.clone(),
        added: Vec::new(),
        removed: Vec::new(),
    };

    let up_to_date = match (ours.as_slice(), accounts.is_empty()) {
        ([], true) => true,
        ([one], false) => says_exactly(one, accounts, spec),
        _ => false,
    };
    if up_to_date {
        return Ok(keep(PolicyChange::Keep));
    }
    let change = if accounts.is_empty() && foreign.is_empty() {
        PolicyChange::Delete
    } else {
        let text = rewrite(
            document.as_ref(),
            &statements,
            accounts,
            spec,
            foreign.is_empty(),
        );
        let length = text.chars().count();
        if length > MAX_POLICY_CHARS {
            return Err(PolicyError::TooLarge {
                length,
                limit: MAX_POLICY_CHARS,
            });
        }
        PolicyChange::Put(text)
    };
    Ok(PolicyMerge {
        change,
        before,
        added,
        removed,
    })
}

fn parse_document(text: &str) -> Result<Map<String, Value>, PolicyError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(PolicyError::NotADocument(format!(
            "expected an object, got {}",
            json_kind(&other)
        ))),
        Err(e) => Err(PolicyError::NotJson(e.to_string())),
    }
}

/// `Statement` may be a list or, in IAM's grammar, a single statement.
fn statements_of(doc: &Map<String, Value>) -> Result<Vec<Value>, PolicyError> {
    let statements = match doc.get("Statement") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        Some(other) => {
            return Err(PolicyError::NotADocument(format!(
                "\"Statement\" is {}",
                json_kind(other)
            )))
        }
    };
    if let Some(bad) = statements.iter().find(|s| !s.is_object()) {
        return Err(PolicyError::NotADocument(format!(
            "a statement is {}",
            json_kind(bad)
        )));
    }
    Ok(statements)
}

/// `Principal.AWS` as strings (a string or a list of strings); `None` for
/// any other shape (`"*"`, `Service`, …).
fn principals(statement: &Value) -> Option<Vec<String>> {
    let principal = statement.get("Principal")?;
    let aws = match principal {
        Value::Object(p) if p.len() == 1 => p.get("AWS")?,
        Value::String(s) => return Some(vec![s.clone()]),
        _ => return None,
    };
    strings(aws)
}

/// A string or a list of strings.
fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

/// Whether `statement` grants exactly what ours would, and nothing else.
fn says_exactly(statement: &Value, accounts: &BTreeSet<AccountId>, spec: &PolicySpec) -> bool {
    let Some(map) = statement.as_object() else {
        return false;
    };
    let only_known_keys = map
        .keys()
        .all(|k| matches!(k.as_str(), "Sid" | "Effect" | "Principal" | "Action"));
    if !only_known_keys || map.get("Effect").and_then(Value::as_str) != Some("Allow") {
        return false;
    }
    let Some(principals) = principals(statement) else {
        return false;
    };
    // An AWS principal may be written as a bare account id.
    let principals: BTreeSet<String> = principals
        .iter()
        .map(|p| match p.parse::<AccountId>() {
            Ok(a) => spec.principal(&a),
            Err(_) => p.clone(),
        })
        .collect();
    let wanted: BTreeSet<String> = accounts.iter().map(|a| spec.principal(a)).collect();
    if principals != wanted {
        return false;
    }
    // IAM action names are case-insensitive.
    let Some(actions) = map.get("Action").and_then(strings) else {
        return false;
    };
    let actions: BTreeSet<String> = actions.iter().map(|a| a.to_ascii_lowercase()).collect();
    let wanted: BTreeSet<String> = spec
        .actions
        .iter()
        .map(|a| a.to_ascii_lowercase())
        .collect();
    actions == wanted
}

/// The document with our statement replaced in place (or appended), any
/// duplicate of it dropped, everything else as it was. When no foreign
/// statement is left the version is brought to 2012-10-17; otherwise the
/// document keeps its version, since changing it could change what a
/// foreign statement means (policy variables).
fn rewrite(
    document: Option<&Map<String, Value>>,
    statements: &[Value],
    accounts: &BTreeSet<AccountId>,
    spec: &PolicySpec,
    only_ours: bool,
) -> String {
    let mut doc = document.cloned().unwrap_or_default();
    let ours = (!accounts.is_empty()).then(|| spec.statement(accounts));
    let mut out = Vec::with_capacity(statements.len() + 1);
    let mut placed = false;
    for s in statements {
        if s.get("Sid").and_then(Value::as_str) == Some(spec.sid.as_str()) {
            if !placed {
                out.extend(ours.clone());
                placed = true;
            }
        } else {
            out.push(s.clone());
        }
    }
    if !placed {
        out.extend(ours);
    }
    if only_ours || !doc.contains_key("Version") {
        doc.insert("Version".into(), Value::String(POLICY_VERSION.into()));
    }
    doc.insert("Statement".into(), Value::Array(out));
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PolicySpec {
        PolicySpec::default_for("aws")
    }

    fn accounts(ids: &[&str]) -> BTreeSet<AccountId> {
        ids.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn put(merge: &PolicyMerge) -> Value {
        match &merge.change {
            PolicyChange::Put(text) => serde_json::from_str(text).unwrap(),
            other => panic!("expected a Put, got {other:?}"),
        }
    }

    fn ours_of(doc: &Value) -> Vec<&Value> {
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Sid"] == DEFAULT_SID)
            .collect()
    }

    const FOREIGN: &str = r#"{"Sid":"AllowCIPush","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999999999999:role/ci"},"Action":["ecr:PutImage","ecr:InitiateLayerUpload"],"Condition":{"StringEquals":{"aws:PrincipalTag/team":"${aws:PrincipalTag/team}"}}}"#;

    fn gen3_policy(account: &str) -> String {
        format!(
            r#"{{"Version":"2008-10-17","Statement":[{{"Sid":"AllowCrossAccountPull","Effect":"Allow","Principal":{{"AWS":["arn:aws:iam::{account}:root"]}},"Action":["ecr:BatchCheckLayerAvailability","ecr:BatchGetImage","ecr:GetAuthorizationToken","ecr:GetDownloadUrlForLayer"]}}]}}"#
        )
    }

    #[test]
    fn given_no_policy_when_granting_then_a_new_document_with_our_statement_sorted() {
        let p = merge_policy(None, &accounts(&["222222222222", "111111111111"]), &spec()).unwrap();
        let doc = put(&p);
        assert_eq!(doc["Version"], "2012-10-17");
        assert_eq!(
            doc["Statement"][0]["Principal"]["AWS"],
            json!([
                "arn:aws:iam::111111111111:root",
                "arn:aws:iam::222222222222:root"
            ])
        );
        assert_eq!(
            doc["Statement"][0]["Action"],
            json!(DEFAULT_PULL_ACTIONS.to_vec())
        );
        assert_eq!(doc["Statement"][0]["Effect"], "Allow");
        assert_eq!(p.added, ["111111111111", "222222222222"]);
        assert!(p.removed.is_empty() && p.before.is_empty());
    }

    #[test]
    fn given_no_policy_when_nothing_is_desired_then_keep() {
        let p = merge_policy(None, &BTreeSet::new(), &spec()).unwrap();
        assert_eq!(p.change, PolicyChange::Keep);
    }

    #[test]
    fn given_the_policy_we_wrote_when_planned_again_then_keep() {
        let a = accounts(&["111111111111", "222222222222"]);
        let PolicyChange::Put(text) = merge_policy(None, &a, &spec()).unwrap().change else {
            panic!()
        };
        let again = merge_policy(Some(&text), &a, &spec()).unwrap();
        assert_eq!(again.change, PolicyChange::Keep);
        assert_eq!(again.before.len(), 2);
    }

    #[test]
    fn given_principal_as_a_string_or_a_bare_account_and_action_as_a_string_when_equal_then_keep() {
        let one = PolicySpec::new("S", ["ecr:BatchGetImage".to_string()], "aws");
        for text in [
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"S","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:root"},"Action":"ecr:BatchGetImage"}]}"#,
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"S","Effect":"Allow","Principal":{"AWS":["111111111111"]},"Action":["ECR:batchgetimage"]}]}"#,
            r#"{"Version":"2012-10-17","Statement":{"Sid":"S","Effect":"Allow","Principal":{"AWS":"111111111111"},"Action":"ecr:BatchGetImage"}}"#,
        ] {
            let p = merge_policy(Some(text), &accounts(&["111111111111"]), &one).unwrap();
            assert_eq!(p.change, PolicyChange::Keep, "{text}");
        }
    }

    #[test]
    fn given_a_different_account_when_planned_then_the_old_one_is_removed_and_the_new_added() {
        let current = gen3_policy("111111111111");
        let p = merge_policy(Some(&current), &accounts(&["333333333333"]), &spec()).unwrap();
        assert_eq!(p.added, ["333333333333"]);
        assert_eq!(p.removed, ["111111111111"]);
        let doc = put(&p);
        assert_eq!(
            ours_of(&doc)[0]["Principal"]["AWS"],
            json!(["arn:aws:iam::333333333333:root"])
        );
    }

    #[test]
    fn given_a_gen3_policy_when_the_same_account_is_desired_then_it_is_taken_over_at_2012_10_17_without_get_authorization_token(
    ) {
        let current = gen3_policy("111111111111");
        let p = merge_policy(Some(&current), &accounts(&["111111111111"]), &spec()).unwrap();
        assert!(p.added.is_empty() && p.removed.is_empty());
        let doc = put(&p);
        assert_eq!(doc["Version"], "2012-10-17");
        let ours = ours_of(&doc);
        assert_eq!(ours.len(), 1);
        assert!(!ours[0]["Action"]
            .to_string()
            .contains("GetAuthorizationToken"));
        // ... and once taken over, nothing more to do.
        let text = doc.to_string();
        assert_eq!(
            merge_policy(Some(&text), &accounts(&["111111111111"]), &spec())
                .unwrap()
                .change,
            PolicyChange::Keep
        );
    }

    #[test]
    fn given_foreign_statements_when_granting_changing_and_revoking_then_they_survive_untouched_and_keep_their_version(
    ) {
        let foreign: Value = serde_json::from_str(FOREIGN).unwrap();
        let start = json!({"Version": "2008-10-17", "Id": "kept", "Statement": [foreign.clone()]})
            .to_string();

        let granted = merge_policy(Some(&start), &accounts(&["111111111111"]), &spec()).unwrap();
        let doc = put(&granted);
        assert_eq!(doc["Statement"][0], foreign, "foreign first, as it was");
        assert_eq!(doc["Statement"].as_array().unwrap().len(), 2);
        assert_eq!(
            doc["Version"], "2008-10-17",
            "foreign statements keep their version"
        );
        assert_eq!(doc["Id"], "kept");

        let changed = merge_policy(
            Some(&doc.to_string()),
            &accounts(&["222222222222"]),
            &spec(),
        )
        .unwrap();
        let doc = put(&changed);
        assert_eq!(doc["Statement"][0], foreign);
        assert_eq!(changed.removed, ["111111111111"]);

        let revoked = merge_policy(Some(&doc.to_string()), &BTreeSet::new(), &spec()).unwrap();
        let doc = put(&revoked);
        assert_eq!(doc["Statement"], json!([foreign]));
        assert_eq!(revoked.removed, ["222222222222"]);
    }

    #[test]
    fn given_only_our_statement_when_nothing_is_desired_then_the_policy_is_deleted() {
        let p = merge_policy(
            Some(&gen3_policy("111111111111")),
            &BTreeSet::new(),
            &spec(),
        )
        .unwrap();
        assert_eq!(p.change, PolicyChange::Delete);
        assert_eq!(p.removed, ["111111111111"]);
    }

    #[test]
    fn given_only_foreign_statements_when_nothing_is_desired_then_keep() {
        let text = format!(r#"{{"Version":"2012-10-17","Statement":[{FOREIGN}]}}"#);
        let p = merge_policy(Some(&text), &BTreeSet::new(), &spec()).unwrap();
        assert_eq!(p.change, PolicyChange::Keep);
    }

    #[test]
    fn given_our_sid_with_extra_conditions_or_a_wildcard_principal_when_planned_then_rewritten() {
        let a = accounts(&["111111111111"]);
        for ours in [
            r#"{"Sid":"AllowCrossAccountPull","Effect":"Allow","Principal":"*","Action":["ecr:BatchCheckLayerAvailability","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}"#,
            r#"{"Sid":"AllowCrossAccountPull","Effect":"Deny","Principal":{"AWS":"111111111111"},"Action":["ecr:BatchCheckLayerAvailability","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}"#,
            r#"{"Sid":"AllowCrossAccountPull","Effect":"Allow","Principal":{"AWS":"111111111111"},"Action":["ecr:BatchCheckLayerAvailability","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"],"Condition":{"Bool":{"aws:SecureTransport":"true"}}}"#,
        ] {
            let text = format!(r#"{{"Version":"2012-10-17","Statement":[{ours}]}}"#);
            let p = merge_policy(Some(&text), &a, &spec()).unwrap();
            let doc = put(&p);
            assert_eq!(doc["Statement"][0], spec().statement(&a), "{ours}");
        }
        let star = r#"{"Statement":[{"Sid":"AllowCrossAccountPull","Effect":"Allow","Principal":"*","Action":"ecr:*"}]}"#;
        let p = merge_policy(Some(star), &a, &spec()).unwrap();
        assert_eq!(p.removed, ["*"]);
    }

    #[test]
    fn given_our_sid_twice_when_planned_then_one_statement_is_left_where_the_first_was() {
        let a = accounts(&["111111111111"]);
        let ours = spec().statement(&a);
        let foreign: Value = serde_json::from_str(FOREIGN).unwrap();
        let text = json!({"Version":"2012-10-17","Statement":[ours.clone(), foreign.clone(), ours.clone()]}).to_string();
        let doc = put(&merge_policy(Some(&text), &a, &spec()).unwrap());
        assert_eq!(doc["Statement"], json!([ours, foreign]));
    }

    #[test]
    fn given_a_policy_that_is_not_json_or_not_a_document_when_planned_then_a_permanent_error() {
        let a = accounts(&["111111111111"]);
        assert!(matches!(
            merge_policy(Some("{not json"), &a, &spec()),
            Err(PolicyError::NotJson(_))
        ));
        for text in ["[]", r#"{"Statement":"x"}"#, r#"{"Statement":[1]}"#] {
            assert!(
                matches!(
                    merge_policy(Some(text), &a, &spec()),
                    Err(PolicyError::NotADocument(_))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn given_too_many_accounts_when_planned_then_too_large_before_any_write() {
        let many: BTreeSet<AccountId> = (0..400u64)
            .map(|i| format!("{:012}", 100_000_000_000 + i).parse().unwrap())
            .collect();
        match merge_policy(None, &many, &spec()) {
            Err(PolicyError::TooLarge { length, limit }) => {
                assert!(length > limit);
                assert_eq!(limit, 10_240);
            }
            other => panic!("{other:?}"),
        }
        let fits: BTreeSet<AccountId> = many.into_iter().take(250).collect();
        assert!(merge_policy(None, &fits, &spec()).is_ok());
    }

    #[test]
    fn given_regions_when_choosing_the_partition_then_china_and_govcloud_differ() {
        assert_eq!(PolicySpec::partition_of("us-east-1"), "aws");
        assert_eq!(PolicySpec::partition_of("cn-north-1"), "aws-cn");
        assert_eq!(PolicySpec::partition_of("us-gov-west-1"), "aws-us-gov");
        let s = PolicySpec::default_for("aws-cn");
        assert_eq!(
            s.principal(&"111111111111".parse().unwrap()),
            "arn:aws-cn:iam::111111111111:root"
        );
    }
}
