//! Gen3's escape is not injective: `jane.doe@x.io` and `jane\u{2ED}oe@x.io`
//! both escape to `jane-2edoe-40x-2eio`, so two users can share one
//! repository. Granting the union would hand one user's accounts to the
//! other's images; granting whichever user was reconciled last makes access
//! flip. So collisions fail closed: when more than one user id with
//! granting rows maps to a repository, none of their accounts is granted on
//! it, on the stream path and in the full reconcile alike.

use std::fmt;

use super::desired::Desired;
use super::naming::{escape, unescape_candidates};

/// Why a repository grants nothing although a user's rows grant accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contest {
    /// The user ids with granting rows, sorted.
    pub user_ids: Vec<String>,
    pub kind: ContestKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContestKind {
    /// Several of them escape to the repository's name.
    Collision,
    /// More user ids could escape to the name than are looked up, so a
    /// collision cannot be ruled out.
    TooManyCandidates { limit: usize },
}

impl Contest {
    pub fn kind_str(&self) -> &'static str {
        match self.kind {
            ContestKind::Collision => "escape_collision",
            ContestKind::TooManyCandidates { .. } => "too_many_candidates",
        }
    }
}

impl fmt::Display for Contest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = self.user_ids.join(", ");
        match self.kind {
            ContestKind::Collision => write!(
                f,
                "user ids {ids} escape to the same repository name; none of their accounts is granted on it"
            ),
            ContestKind::TooManyCandidates { limit } => write!(
                f,
                "more than {limit} user ids could escape to the repository name of {ids}, so a collision cannot be ruled out; nothing is granted on it"
            ),
        }
    }
}

/// What one repository grants after collisions are taken into account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The accounts to grant (none when contested), with every user's
    /// skipped rows and counts.
    pub desired: Desired,
    pub contest: Option<Contest>,
}

/// Every user id whose escape equals `user_id`'s, `user_id` first; `None`
/// when there are more than `limit` (the name is then treated as contested).
pub fn colliding_ids(user_id: &str, limit: usize) -> Option<Vec<String>> {
    let mut ids = unescape_candidates(&escape(user_id), limit)?;
    ids.retain(|id| id != user_id);
    ids.insert(0, user_id.to_string());
    Some(ids)
}

/// The repository's grant from each user id's own `Desired` (`claims`).
/// `too_many`: the name has more candidates than this limit, so any grant
/// is withheld.
pub fn resolve(
    claims: impl IntoIterator<Item = (String, Desired)>,
    too_many: Option<usize>,
) -> Resolved {
    let mut desired = Desired::default();
    let mut granting: Vec<String> = Vec::new();
    for (user_id, claim) in claims {
        if !claim.accounts.is_empty() && !granting.contains(&user_id) {
            granting.push(user_id);
        }
        desired = desired.union(claim);
    }
    granting.sort();
    let kind = match too_many {
        Some(limit) if !granting.is_empty() => Some(ContestKind::TooManyCandidates { limit }),
        _ if granting.len() > 1 => Some(ContestKind::Collision),
        _ => None,
    };
    let contest = kind.map(|kind| {
        desired.accounts.clear();
        Contest {
            user_ids: granting,
            kind,
        }
    });
    Resolved { desired, contest }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{desired_accounts, AccountValue, Row, Selection};

    const JANE: &str = "jane.doe@x.io";
    const JANE_TWIN: &str = "jane\u{2ED}oe@x.io";

    fn grants(accounts: &[&str]) -> Desired {
        let rows: Vec<Row> = accounts
            .iter()
            .map(|a| Row {
                row_id: Some(format!("w-{a}")),
                account: Some(AccountValue::Text(a.to_string())),
                workspace_type: Some("Direct Pay".into()),
                request_status: None,
            })
            .collect();
        let selection = Selection {
            workspace_type: "Direct Pay".into(),
            allowed_statuses: None,
        };
        desired_accounts(&rows, &selection)
    }

    #[test]
    fn given_janes_id_when_inverting_its_escape_then_the_twin_is_a_candidate_and_jane_comes_first()
    {
        assert_eq!(escape(JANE), escape(JANE_TWIN));
        assert_eq!(escape(JANE), "jane-2edoe-40x-2eio");
        let ids = colliding_ids(JANE, 64).unwrap();
        assert_eq!(ids, [JANE, JANE_TWIN]);
        let ids = colliding_ids(JANE_TWIN, 64).unwrap();
        assert_eq!(ids, [JANE_TWIN, JANE]);
    }

    #[test]
    fn given_an_id_with_more_candidates_than_the_limit_when_inverting_then_none() {
        // Each ".b" reads as "." + "b" or as U+02EB: 2^5 readings.
        let user = "a.b.b.b.b.b";
        assert_eq!(colliding_ids(user, 31), None);
        assert_eq!(colliding_ids(user, 32).unwrap().len(), 32);
    }

    #[test]
    fn given_an_unambiguous_id_when_inverting_then_only_itself() {
        assert_eq!(colliding_ids("first_last", 64).unwrap(), ["first_last"]);
    }

    #[test]
    fn given_two_ids_with_granting_rows_when_resolved_then_nothing_is_granted_and_both_are_named() {
        let r = resolve(
            [
                (JANE_TWIN.to_string(), grants(&["222222222222"])),
                (JANE.to_string(), grants(&["111111111111"])),
            ],
            None,
        );
        assert!(r.desired.accounts.is_empty());
        let c = r.contest.unwrap();
        assert_eq!(c.kind, ContestKind::Collision);
        assert_eq!(c.user_ids, [JANE, JANE_TWIN]);
        assert!(c.to_string().contains(JANE) && c.to_string().contains(JANE_TWIN));
        assert_eq!(r.desired.rows, 2, "both users' rows were read");
    }

    #[test]
    fn given_one_granting_id_and_candidates_without_rows_when_resolved_then_its_accounts() {
        let r = resolve(
            [
                (JANE.to_string(), grants(&["111111111111"])),
                (JANE_TWIN.to_string(), Desired::default()),
            ],
            None,
        );
        assert_eq!(r.contest, None);
        assert_eq!(r.desired.accounts.len(), 1);
    }

    #[test]
    fn given_a_candidate_whose_rows_grant_nothing_when_resolved_then_no_collision() {
        let mut skipped = grants(&["12345"]);
        assert!(skipped.accounts.is_empty() && skipped.skipped.len() == 1);
        skipped.rows = 1;
        let r = resolve(
            [
                (JANE.to_string(), grants(&["111111111111"])),
                (JANE_TWIN.to_string(), skipped),
            ],
            None,
        );
        assert_eq!(r.contest, None);
        assert_eq!(r.desired.skipped.len(), 1, "the twin's bad row is reported");
    }

    #[test]
    fn given_a_name_with_too_many_candidates_when_resolved_then_a_grant_is_withheld() {
        let r = resolve([(JANE.to_string(), grants(&["111111111111"]))], Some(64));
        assert!(r.desired.accounts.is_empty());
        let c = r.contest.unwrap();
        assert_eq!(c.kind, ContestKind::TooManyCandidates { limit: 64 });
        assert_eq!(c.kind_str(), "too_many_candidates");
        // Nothing to withhold: no contest.
        let r = resolve([(JANE.to_string(), Desired::default())], Some(64));
        assert_eq!(r.contest, None);
    }
}
