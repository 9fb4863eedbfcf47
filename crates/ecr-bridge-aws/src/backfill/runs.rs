//! The durable record of a backfill run: one DynamoDB item (key `run` =
//! `backfill`) with the run's id, scope, mapping fingerprint and counters.
//! Listing steps and work items add to the counters as they finish
//! (`ADD`, conditional on the run's id so a late item of an earlier run
//! never counts in a later one); `status` and `--wait` read them, and a
//! second `start` reads them to join the run instead of doubling it.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::error::AwsError;
use crate::run_table::{self, n, number, s, text, Item, RunTable};
pub use crate::work_queue::RunId;

/// The item's key: there is one current run per deployment.
const RUN_KEY: &str = "backfill";

/// Declares the counts once: the struct and its (name, value) list, so the
/// stored item, the ADD expression and the reader cannot disagree on a name.
macro_rules! run_counts {
    ($($field:ident),+ $(,)?) => {
        /// What a run has done so far. Listing adds `repositories_*`,
        /// `images_found`, `filtered`, `archived`, `enqueued`,
        /// `enqueue_failed`; work items add `copied`, `already_present`,
        /// `skipped` (no longer routed when handled) and `failed`
        /// (permanently). `listings_open` counts listing steps enqueued or
        /// running and not finished.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct RunCounts {
            $(pub $field: i64,)+
        }

        impl RunCounts {
            fn fields(&self) -> Vec<(&'static str, i64)> {
                vec![$((stringify!($field), self.$field)),+]
            }

            fn set(&mut self, name: &str, value: i64) {
                $(if name == stringify!($field) {
                    self.$field = value;
                })+
            }
        }
    };
}

run_counts!(
    repositories_matched,
    repositories_unmatched,
    repositories_listed,
    listings_open,
    images_found,
    filtered,
    archived,
    enqueued,
    enqueue_failed,
    copied,
    already_present,
    skipped,
    failed,
);

impl RunCounts {
    /// Work items that have reported back, one way or another.
    pub fn items_done(&self) -> i64 {
        self.copied + self.already_present + self.skipped + self.failed
    }

    pub fn is_zero(&self) -> bool {
        self.fields().iter().all(|(_, v)| *v == 0)
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillRun {
    pub id: RunId,
    /// The repositories asked for, sorted (empty: every routed repository).
    pub scope: Vec<String>,
    /// The mapping document's digest when the run started.
    pub mapping: String,
    pub started_at_ms: u64,
    pub updated_at_ms: u64,
    pub counts: RunCounts,
}

/// How a `start` went against the stored run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Began {
    /// A new run, stored; the caller lists.
    New(BackfillRun),
    /// Another invocation stored a run first, or the stored one changed
    /// since it was read: the caller reads again and decides.
    Lost,
}

/// Where runs are kept: DynamoDB in AWS and in the tests (moto).
pub trait RunStore: Send + Sync {
    /// The current (or last) run, read consistently.
    fn current(&self) -> BoxFuture<'_, Result<Option<BackfillRun>, AwsError>>;
    /// Stores `run` as the current one if the stored one is still `replaces`.
    fn begin<'a>(
        &'a self,
        run: &'a BackfillRun,
        replaces: Option<&'a RunId>,
    ) -> BoxFuture<'a, Result<Began, AwsError>>;
    /// Adds `counts` to run `id`'s; `Ok(false)` when `id` is no longer the
    /// current run (a late item of an earlier one: nothing is counted).
    fn add<'a>(
        &'a self,
        id: &'a RunId,
        counts: &'a RunCounts,
    ) -> BoxFuture<'a, Result<bool, AwsError>>;
}

/// The run table (`BACKFILL_TABLE`): partition key `run` (string).
pub struct DynamoRunStore {
    table: RunTable,
}

impl DynamoRunStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoRunStore {
            table: RunTable::new(client, table),
        }
    }
}

fn key() -> Item {
    run_table::key(RUN_KEY)
}

/// The stored item as a run; `None` for an item this code did not write.
fn from_item(item: &Item) -> Option<BackfillRun> {
    let number = |k: &str| number(item, k);
    let mut counts = RunCounts::default();
    for (name, _) in RunCounts::default().fields() {
        counts.set(name, number(name).unwrap_or(0));
    }
    Some(BackfillRun {
        id: RunId::try_from(text(item, "id")?).ok()?,
        scope: serde_json::from_str(&text(item, "scope")?).ok()?,
        mapping: text(item, "mapping").unwrap_or_default(),
        started_at_ms: number("started_at_ms").unwrap_or(0).max(0) as u64,
        updated_at_ms: number("updated_at_ms").unwrap_or(0).max(0) as u64,
        counts,
    })
}

impl RunStore for DynamoRunStore {
    fn current(&self) -> BoxFuture<'_, Result<Option<BackfillRun>, AwsError>> {
        Box::pin(async move { Ok(self.table.get(RUN_KEY).await?.as_ref().and_then(from_item)) })
    }

    fn begin<'a>(
        &'a self,
        run: &'a BackfillRun,
        replaces: Option<&'a RunId>,
    ) -> BoxFuture<'a, Result<Began, AwsError>> {
        Box::pin(async move {
            let mut item = key();
            item.insert("id".into(), s(run.id.as_str()));
            item.insert(
                "scope".into(),
                s(&serde_json::to_string(&run.scope).unwrap_or_else(|_| "[]".into())),
            );
            item.insert("mapping".into(), s(&run.mapping));
            item.insert("started_at_ms".into(), n(run.started_at_ms as i64));
            item.insert("updated_at_ms".into(), n(run.updated_at_ms as i64));
            for (name, value) in run.counts.fields() {
                item.insert(name.into(), n(value));
            }
            let stored = self
                .table
                .put_replacing(item, replaces.map(RunId::as_str))
                .await?;
            Ok(if stored {
                Began::New(run.clone())
            } else {
                Began::Lost
            })
        })
    }

    fn add<'a>(
        &'a self,
        id: &'a RunId,
        counts: &'a RunCounts,
    ) -> BoxFuture<'a, Result<bool, AwsError>> {
        Box::pin(async move {
            let counted = self
                .table
                .add(RUN_KEY, id.as_str(), &counts.fields(), &[])
                .await?;
            Ok(counted.is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_run_ids_when_parsed_then_only_the_generated_shape_is_accepted() {
        let id = RunId::new();
        assert_eq!(RunId::try_from(id.to_string()), Ok(id));
        for bad in [
            "",
            "bf-xyz",
            "run-00",
            "bf-00\"}",
            &format!("bf-{}", "0".repeat(70)),
        ] {
            assert!(RunId::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn given_stored_counts_when_read_back_then_every_field_round_trips() {
        let mut counts = RunCounts::default();
        for (i, (name, _)) in RunCounts::default().fields().iter().enumerate() {
            counts.set(name, i as i64 + 1);
        }
        let mut item = key();
        item.insert("id".into(), s("bf-01"));
        item.insert("scope".into(), s("[\"a\"]"));
        for (name, value) in counts.fields() {
            item.insert(name.into(), n(value));
        }
        let run = from_item(&item).expect("a run");
        assert_eq!(run.counts, counts);
        assert_eq!(run.scope, vec!["a".to_string()]);
        assert_eq!(items_done_of(&run), 10 + 11 + 12 + 13);
    }

    fn items_done_of(run: &BackfillRun) -> i64 {
        run.counts.items_done()
    }
}
