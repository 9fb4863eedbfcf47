//! What to write when ECR refuses the policy we want. ECR answers
//! `InvalidParameterException` for a principal it does not accept, and does
//! not say which one; a policy over 10,240 characters cannot be written at
//! all. Failing the whole write would keep the old statement, so an account
//! whose row is gone would keep pull access. Instead:
//!
//! 1. the accounts our statement already granted and still should go first
//!    (alone, so that removals land with one write),
//! 2. the others are added by bisection: a group ECR accepts stays, a group
//!    it refuses is split, and the halves left untried are tried together
//!    once the refused account is found, so k refused accounts among n cost
//!    at most k·(log₂ n + 1) + 2 writes,
//! 3. before an account is blamed, the policy without it must have been
//!    accepted in this run: if ECR refuses even that, the fault is in a
//!    statement that is not ours (or the document), and nothing is blamed.
//!
//! A policy that would be too long is handled the same way, locally (no
//! write is sent for it): what fits is written, the rest left out. The
//! accounts that already had access come first, then new ones by id.
//!
//! Pure: the caller writes each [`Step`] and reports a [`WriteVerdict`]. ECR's
//! refusal is assumed monotone (a policy is refused when it names any
//! refused principal), which is what makes a refused group's half-accepted
//! sibling known to be refused without a write.

use std::collections::BTreeSet;

use super::account::AccountId;

/// Why an account is left out of our statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftOut {
    /// ECR refuses any policy that names it (`InvalidParameterException`).
    Refused,
    /// With it the policy would be over ECR's 10,240 characters.
    NoRoom,
}

impl LeftOut {
    pub fn as_str(&self) -> &'static str {
        match self {
            LeftOut::Refused => "refused_by_ecr",
            LeftOut::NoRoom => "policy_too_large",
        }
    }
}

/// What became of a step's document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteVerdict {
    /// ECR accepted the write.
    Accepted,
    /// ECR already holds exactly this document; nothing was written.
    InPlace,
    /// `InvalidParameterException`.
    Refused,
    /// Over the limit; not sent.
    TooLarge,
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write the policy with our statement granting exactly these accounts
    /// (nothing to do if ECR already holds it: answer `InPlace`).
    Write(BTreeSet<AccountId>),
    /// Write it even if ECR already holds it, to learn whether ECR accepts
    /// it at all.
    Confirm(BTreeSet<AccountId>),
    Done,
}

/// Nothing could be written: the fault is not in the accounts we add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("ECR refuses the policy even without the accounts it did not accept: a statement that is not ours, or the document itself, is refused")]
    Refused,
    #[error("the policy is over ECR's limit even without the accounts that did not fit")]
    TooLarge,
}

#[derive(Debug, Clone)]
struct Group {
    accounts: Vec<AccountId>,
    /// Known to fail, and how, without trying it.
    known: Option<LeftOut>,
    /// Set on the first half of a failed group: if this half is accepted
    /// whole, the other half is what made the group fail.
    sibling_fails: Option<LeftOut>,
}

impl Group {
    fn new(accounts: Vec<AccountId>, known: Option<LeftOut>) -> Self {
        Group {
            accounts,
            known,
            sibling_fails: None,
        }
    }
}

#[derive(Debug, Clone)]
enum Trying {
    Group(Group),
    Confirm,
}

#[derive(Debug, Clone)]
pub struct Admission {
    granted: BTreeSet<AccountId>,
    /// ECR holds the policy granting exactly `granted`.
    in_ecr: bool,
    /// ECR accepted a write of it in this run.
    confirmed: bool,
    stack: Vec<Group>,
    trying: Option<Trying>,
    left_out: Vec<(AccountId, LeftOut)>,
}

impl Admission {
    /// After the policy granting all of `desired` failed as `failure`.
    /// `before`: what our statement granted; `kept_in_place`: ECR already
    /// holds the policy granting exactly `desired ∩ before`.
    pub fn new(
        desired: &BTreeSet<AccountId>,
        before: &BTreeSet<AccountId>,
        kept_in_place: bool,
        failure: LeftOut,
    ) -> Admission {
        let kept: Vec<AccountId> = desired.intersection(before).cloned().collect();
        let added: Vec<AccountId> = desired.difference(before).cloned().collect();
        let mut a = Admission {
            granted: BTreeSet::new(),
            in_ecr: false,
            confirmed: false,
            stack: Vec::new(),
            trying: None,
            left_out: Vec::new(),
        };
        if kept_in_place {
            a.granted = kept.into_iter().collect();
            a.in_ecr = true;
            if !added.is_empty() {
                a.stack.push(Group::new(added, Some(failure)));
            }
            return a;
        }
        match (kept.is_empty(), added.is_empty()) {
            (false, false) => {
                a.stack.push(Group::new(added, None));
                a.stack.push(Group {
                    sibling_fails: Some(failure),
                    ..Group::new(kept, None)
                });
            }
            (true, false) => a.stack.push(Group::new(added, Some(failure))),
            (false, true) => a.stack.push(Group::new(kept, Some(failure))),
            (true, true) => {}
        }
        a
    }

    /// The next document to write.
    pub fn next_step(&mut self) -> Step {
        debug_assert!(self.trying.is_none(), "answer the last step first");
        loop {
            let Some(group) = self.stack.pop() else {
                if self.in_ecr {
                    return Step::Done;
                }
                // Only accounts that did not fit were left out, and nothing
                // was written: the removals still have to land.
                return self.confirm();
            };
            match group.known {
                None => {
                    let mut group = group;
                    if group.sibling_fails.is_none() {
                        // The untried halves left behind by earlier splits
                        // are most likely fine: one write tries them all.
                        while let Some(below) = self
                            .stack
                            .pop_if(|g| g.known.is_none() && g.sibling_fails.is_none())
                        {
                            group.accounts.extend(below.accounts);
                        }
                    }
                    let mut set = self.granted.clone();
                    set.extend(group.accounts.iter().cloned());
                    self.trying = Some(Trying::Group(group));
                    return Step::Write(set);
                }
                Some(LeftOut::Refused) if group.accounts.len() == 1 && !self.confirmed => {
                    self.stack.push(group);
                    return self.confirm();
                }
                Some(reason) if group.accounts.len() == 1 => {
                    let account = group.accounts.into_iter().next().expect("one account");
                    self.left_out.push((account, reason));
                }
                Some(reason) => {
                    let mut first = group.accounts;
                    let second = first.split_off(first.len() / 2);
                    self.stack.push(Group::new(second, None));
                    self.stack.push(Group {
                        sibling_fails: Some(reason),
                        ..Group::new(first, None)
                    });
                }
            }
        }
    }

    fn confirm(&mut self) -> Step {
        self.trying = Some(Trying::Confirm);
        Step::Confirm(self.granted.clone())
    }

    /// What became of the last step's document.
    pub fn answer(&mut self, verdict: WriteVerdict) -> Result<(), AdmissionError> {
        match self.trying.take() {
            None => Ok(()),
            Some(Trying::Confirm) => match verdict {
                WriteVerdict::Accepted | WriteVerdict::InPlace => {
                    self.in_ecr = true;
                    self.confirmed = true;
                    Ok(())
                }
                WriteVerdict::Refused => Err(AdmissionError::Refused),
                WriteVerdict::TooLarge => Err(AdmissionError::TooLarge),
            },
            Some(Trying::Group(mut group)) => {
                match verdict {
                    WriteVerdict::Accepted | WriteVerdict::InPlace => {
                        self.confirmed |= verdict == WriteVerdict::Accepted;
                        self.in_ecr = true;
                        self.granted.extend(group.accounts);
                        if let (Some(reason), Some(sibling)) =
                            (group.sibling_fails, self.stack.last_mut())
                        {
                            // Granted ∪ this half ∪ sibling failed; granted ∪
                            // this half did not: the sibling is the cause.
                            sibling.known = Some(reason);
                        }
                    }
                    WriteVerdict::Refused | WriteVerdict::TooLarge => {
                        group.known = Some(if verdict == WriteVerdict::Refused {
                            LeftOut::Refused
                        } else {
                            LeftOut::NoRoom
                        });
                        group.sibling_fails = None;
                        self.stack.push(group);
                    }
                }
                Ok(())
            }
        }
    }

    /// What our statement grants now (once [`Step::Done`]).
    pub fn granted(&self) -> &BTreeSet<AccountId> {
        &self.granted
    }

    /// The accounts left out, in the order they were found.
    pub fn left_out(&self) -> &[(AccountId, LeftOut)] {
        &self.left_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ends up granted, and what was left out.
    type Outcome = (BTreeSet<AccountId>, Vec<(AccountId, LeftOut)>);

    /// ECR as the admission sees it: refuses any policy naming a `bad`
    /// account (or every policy, when a foreign statement is bad), and a
    /// policy of more than `room` accounts is too large.
    struct FakeEcr {
        held: BTreeSet<AccountId>,
        bad: BTreeSet<AccountId>,
        room: usize,
        foreign_bad: bool,
        writes: u32,
    }

    impl FakeEcr {
        fn verdict(&mut self, set: &BTreeSet<AccountId>, force: bool) -> WriteVerdict {
            if set.len() > self.room {
                return WriteVerdict::TooLarge;
            }
            if !force && *set == self.held {
                return WriteVerdict::InPlace;
            }
            self.writes += 1;
            if self.foreign_bad || set.iter().any(|a| self.bad.contains(a)) {
                return WriteVerdict::Refused;
            }
            self.held = set.clone();
            WriteVerdict::Accepted
        }

        /// The whole run as the AWS crate does it: the full set first, then
        /// the admission.
        fn run(&mut self, desired: &BTreeSet<AccountId>) -> Result<Outcome, AdmissionError> {
            let before = self.held.clone();
            let failure = match self.verdict(desired, false) {
                WriteVerdict::Accepted | WriteVerdict::InPlace => {
                    return Ok((desired.clone(), vec![]))
                }
                WriteVerdict::Refused => LeftOut::Refused,
                WriteVerdict::TooLarge => LeftOut::NoRoom,
            };
            let kept: BTreeSet<AccountId> = desired.intersection(&before).cloned().collect();
            let mut a = Admission::new(desired, &before, kept == self.held, failure);
            loop {
                let verdict = match a.next_step() {
                    Step::Done => break,
                    Step::Write(set) => self.verdict(&set, false),
                    Step::Confirm(set) => self.verdict(&set, true),
                };
                a.answer(verdict)?;
            }
            assert_eq!(&self.held, a.granted(), "ECR holds what the admission says");
            Ok((a.granted().clone(), a.left_out().to_vec()))
        }
    }

    fn ecr(held: &BTreeSet<AccountId>, bad: &BTreeSet<AccountId>) -> FakeEcr {
        FakeEcr {
            held: held.clone(),
            bad: bad.clone(),
            room: usize::MAX,
            foreign_bad: false,
            writes: 0,
        }
    }

    fn id(n: u64) -> AccountId {
        format!("{:012}", 100_000_000_000 + n).parse().unwrap()
    }

    fn ids(ns: impl IntoIterator<Item = u64>) -> BTreeSet<AccountId> {
        ns.into_iter().map(id).collect()
    }

    #[test]
    fn given_one_refused_new_account_when_admitted_then_removals_land_the_rest_is_granted_in_two_writes(
    ) {
        // Granted 1, 2, 3; the table now wants 1, 2 and a new 9 ECR refuses.
        let mut ecr = ecr(&ids([1, 2, 3]), &ids([9]));
        let (granted, left_out) = ecr.run(&ids([1, 2, 9])).unwrap();
        assert_eq!(granted, ids([1, 2]), "3 is revoked although 9 is refused");
        assert_eq!(left_out, [(id(9), LeftOut::Refused)]);
        // The full policy (refused), then the kept accounts alone (accepted):
        // the sibling of an accepted half is known refused without a write.
        assert_eq!(ecr.writes, 2);
    }

    #[test]
    fn given_one_refused_among_many_new_accounts_when_admitted_then_log_n_writes() {
        let desired = ids(0..64);
        let mut ecr = ecr(&BTreeSet::new(), &ids([37]));
        let (granted, left_out) = ecr.run(&desired).unwrap();
        assert_eq!(granted.len(), 63);
        assert!(!granted.contains(&id(37)));
        assert_eq!(left_out, [(id(37), LeftOut::Refused)]);
        // The full policy, 6 halvings (64 → 1), the untried halves together.
        assert!(ecr.writes <= 8, "{}", ecr.writes);
    }

    #[test]
    fn given_k_refused_among_n_when_admitted_then_writes_grow_as_k_log_n() {
        for (n, k) in [
            (16u64, 1usize),
            (64, 1),
            (64, 2),
            (256, 4),
            (1024, 1),
            (1024, 3),
            (200, 10),
        ] {
            let bad: BTreeSet<AccountId> =
                (0..k as u64).map(|i| id(i * (n / k as u64) + 3)).collect();
            let mut ecr = ecr(&BTreeSet::new(), &bad);
            let (granted, left_out) = ecr.run(&ids(0..n)).unwrap();
            assert_eq!(granted.len(), n as usize - k);
            assert_eq!(left_out.len(), k);
            let log = (n as f64).log2().ceil() as u32;
            let bound = k as u32 * (log + 1) + 2;
            println!("{n} accounts, {k} refused: {} writes", ecr.writes);
            assert!(
                ecr.writes <= bound,
                "n={n} k={k}: {} writes > {bound}",
                ecr.writes
            );
        }
    }

    #[test]
    fn given_a_granted_account_ecr_now_refuses_when_others_are_removed_then_it_is_dropped_and_the_rest_kept(
    ) {
        // 2 was granted but its account is gone; 3 is revoked by the table.
        let mut ecr = ecr(&ids([1, 2, 3]), &ids([2]));
        let (granted, left_out) = ecr.run(&ids([1, 2])).unwrap();
        assert_eq!(granted, ids([1]));
        assert_eq!(left_out, [(id(2), LeftOut::Refused)]);
    }

    #[test]
    fn given_the_same_refused_account_on_the_next_reconcile_when_admitted_then_nothing_changes_in_two_writes(
    ) {
        let mut ecr = ecr(&ids([1, 2]), &ids([9]));
        // What the first reconcile left: 1, 2 granted, 9 refused.
        let (granted, left_out) = ecr.run(&ids([1, 2, 9])).unwrap();
        assert_eq!((granted, left_out.len()), (ids([1, 2]), 1));
        // The refused full write, then the policy as it is, confirmed: 9 is
        // blamed only once ECR is seen to accept the policy without it.
        assert_eq!(ecr.writes, 2);
    }

    #[test]
    fn given_a_foreign_statement_ecr_refuses_when_admitted_then_no_account_is_blamed() {
        let mut ecr = ecr(&ids([1]), &BTreeSet::new());
        ecr.foreign_bad = true;
        assert_eq!(ecr.run(&ids([1, 2, 3, 4])), Err(AdmissionError::Refused));
        assert!(ecr.writes <= 4, "{}", ecr.writes);
        let mut ecr = self::ecr(&ids([1, 2]), &BTreeSet::new());
        ecr.foreign_bad = true;
        assert_eq!(ecr.run(&ids([1, 3])), Err(AdmissionError::Refused));
    }

    #[test]
    fn given_more_accounts_than_fit_when_admitted_then_granted_ones_first_then_new_by_id_and_no_oversized_write(
    ) {
        let mut ecr = ecr(&ids([7, 8]), &BTreeSet::new());
        ecr.room = 5;
        let (granted, left_out) = ecr.run(&ids([1, 2, 3, 4, 5, 7, 8])).unwrap();
        assert_eq!(granted, ids([1, 2, 3, 7, 8]));
        assert_eq!(
            left_out,
            [(id(4), LeftOut::NoRoom), (id(5), LeftOut::NoRoom)]
        );
    }

    #[test]
    fn given_only_removals_and_no_room_for_any_new_account_when_admitted_then_the_removal_is_written(
    ) {
        // Foreign statements leave room for one account only; 1 is revoked.
        let mut ecr = ecr(&ids([1]), &BTreeSet::new());
        ecr.room = 1;
        let (granted, left_out) = ecr.run(&ids([2, 3])).unwrap();
        assert_eq!(granted, ids([2]));
        assert_eq!(left_out, [(id(3), LeftOut::NoRoom)]);
        let mut ecr = self::ecr(&ids([1]), &BTreeSet::new());
        ecr.room = 0;
        let (granted, left_out) = ecr.run(&ids([2])).unwrap();
        assert!(granted.is_empty(), "1 is revoked, 2 does not fit");
        assert_eq!(left_out.len(), 1);
        assert!(ecr.held.is_empty());
    }

    #[test]
    fn given_refused_and_oversized_accounts_together_when_admitted_then_each_is_left_out_for_its_reason(
    ) {
        let mut ecr = ecr(&BTreeSet::new(), &ids([2]));
        ecr.room = 3;
        let (granted, left_out) = ecr.run(&ids([1, 2, 3, 4, 5])).unwrap();
        assert_eq!(granted, ids([1, 3, 4]));
        assert!(
            left_out.contains(&(id(2), LeftOut::Refused)),
            "{left_out:?}"
        );
        assert!(left_out.contains(&(id(5), LeftOut::NoRoom)), "{left_out:?}");
    }
}
