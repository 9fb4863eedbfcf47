//! Which accounts a user's rows grant: the union over every selected row, not
//! the last one read (Gen3's cronjob kept only the last).

use std::collections::BTreeSet;
use std::fmt;

use super::account::{AccountId, AccountValue};

/// One row of the users table, reduced to what access depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    /// What names the row in a warning (Gen3's sort key `bmh_workspace_id`).
    pub row_id: Option<String>,
    pub account: Option<AccountValue>,
    pub workspace_type: Option<String>,
    pub request_status: Option<String>,
}

/// Which rows grant access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Only rows of this workspace type (Gen3: `Direct Pay`).
    pub workspace_type: String,
    /// When set, only rows whose request status is one of these (Hatchery
    /// treats `active` and `above limit` as valid).
    pub allowed_statuses: Option<BTreeSet<String>>,
}

impl Selection {
    pub fn selects(&self, row: &Row) -> bool {
        row.workspace_type.as_deref() == Some(self.workspace_type.as_str())
            && match &self.allowed_statuses {
                None => true,
                Some(allowed) => row
                    .request_status
                    .as_ref()
                    .is_some_and(|s| allowed.contains(s)),
            }
    }
}

/// A selected row that grants nothing, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    pub row_id: Option<String>,
    pub reason: String,
}

impl fmt::Display for SkippedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.row_id {
            Some(id) => write!(f, "row {id:?}: {}", self.reason),
            None => write!(f, "row without id: {}", self.reason),
        }
    }
}

/// The accounts a user should have, from their rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub accounts: BTreeSet<AccountId>,
    pub skipped: Vec<SkippedRow>,
    /// Rows read, and how many of them the selection kept.
    pub rows: usize,
    pub selected: usize,
}

impl Desired {
    /// Both users' accounts (two user ids that escape to one repository).
    pub fn union(mut self, other: Desired) -> Desired {
        self.accounts.extend(other.accounts);
        self.skipped.extend(other.skipped);
        self.rows += other.rows;
        self.selected += other.selected;
        self
    }
}

pub fn desired_accounts<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
    selection: &Selection,
) -> Desired {
    let mut desired = Desired::default();
    for row in rows {
        desired.rows += 1;
        if !selection.selects(row) {
            continue;
        }
        desired.selected += 1;
        let reason = match &row.account {
            None => "no account id".to_string(),
            Some(value) => match AccountId::from_value(value) {
                Ok(account) => {
                    desired.accounts.insert(account);
                    continue;
                }
                Err(e) => e.to_string(),
            },
        };
        desired.skipped.push(SkippedRow {
            row_id: row.row_id.clone(),
            reason,
        });
    }
    desired
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, account: Option<AccountValue>, wt: &str, status: Option<&str>) -> Row {
        Row {
            row_id: Some(id.into()),
            account,
            workspace_type: Some(wt.into()),
            request_status: status.map(str::to_string),
        }
    }

    fn s(v: &str) -> Option<AccountValue> {
        Some(AccountValue::Text(v.into()))
    }

    fn direct_pay() -> Selection {
        Selection {
            workspace_type: "Direct Pay".into(),
            allowed_statuses: None,
        }
    }

    fn accounts(d: &Desired) -> Vec<&str> {
        d.accounts.iter().map(AccountId::as_str).collect()
    }

    #[test]
    fn given_two_direct_pay_rows_with_different_accounts_when_computed_then_the_union() {
        let rows = [
            row("w1", s("111111111111"), "Direct Pay", None),
            row("w2", s("222222222222"), "Direct Pay", None),
            row("w3", s("111111111111"), "Direct Pay", None),
        ];
        let d = desired_accounts(&rows, &direct_pay());
        assert_eq!(accounts(&d), ["111111111111", "222222222222"]);
        assert_eq!((d.rows, d.selected), (3, 3));
        assert!(d.skipped.is_empty());
    }

    #[test]
    fn given_rows_of_other_workspace_types_when_computed_then_they_grant_nothing_and_are_not_warnings(
    ) {
        let rows = [
            row("w1", s("111111111111"), "Other workspace type", None),
            Row {
                row_id: Some("w2".into()),
                account: s("222222222222"),
                ..Row::default()
            },
        ];
        let d = desired_accounts(&rows, &direct_pay());
        assert!(d.accounts.is_empty());
        assert!(d.skipped.is_empty());
        assert_eq!(d.selected, 0);
    }

    #[test]
    fn given_allowed_statuses_when_computed_then_only_rows_with_those_statuses_count() {
        let sel = Selection {
            allowed_statuses: Some(["active".to_string(), "above limit".to_string()].into()),
            ..direct_pay()
        };
        let rows = [
            row("w1", s("111111111111"), "Direct Pay", Some("active")),
            row("w2", s("222222222222"), "Direct Pay", Some("terminated")),
            row("w3", s("333333333333"), "Direct Pay", None),
            row("w4", s("444444444444"), "Direct Pay", Some("above limit")),
        ];
        assert_eq!(
            accounts(&desired_accounts(&rows, &sel)),
            ["111111111111", "444444444444"]
        );
    }

    #[test]
    fn given_invalid_account_ids_when_computed_then_skipped_naming_the_row_and_the_rest_granted() {
        let rows = [
            row("good", s("111111111111"), "Direct Pay", None),
            row("short", s("12345"), "Direct Pay", None),
            row("none", None, "Direct Pay", None),
            row(
                "number",
                Some(AccountValue::Number("22222222222".into())),
                "Direct Pay",
                None,
            ),
            row(
                "bool",
                Some(AccountValue::Other("BOOL".into())),
                "Direct Pay",
                None,
            ),
        ];
        let d = desired_accounts(&rows, &direct_pay());
        assert_eq!(accounts(&d), ["022222222222", "111111111111"]);
        let skipped: Vec<String> = d.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(
            skipped[0].starts_with("row \"short\": account id \"12345\""),
            "{skipped:?}"
        );
        assert!(skipped[1].contains("no account id"));
        assert!(skipped[2].contains("BOOL"));
    }

    #[test]
    fn given_two_users_sharing_a_repository_when_united_then_both_accounts() {
        let a = desired_accounts(
            &[row("w", s("111111111111"), "Direct Pay", None)],
            &direct_pay(),
        );
        let b = desired_accounts(
            &[row("w", s("222222222222"), "Direct Pay", None)],
            &direct_pay(),
        );
        assert_eq!(accounts(&a.union(b)), ["111111111111", "222222222222"]);
    }
}
