//! The durable record of a full reconcile run: one DynamoDB item (key
//! `run` = `reconcile`) with the run's id, state and counters. Steps add to
//! the counters as they go (`ADD`, conditional on the run's id, so a late
//! step of a replaced run counts nowhere); the segment whose end brings
//! `segments_open` to zero starts the sweep.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;

use super::step::{ReconcileRunId, StepId};
use crate::error::AwsError;
use crate::run_table::{key, n, now_ms, number, s, text, Item, RunTable};

/// The item's key: there is one current reconcile per deployment.
const RUN_KEY: &str = "reconcile";

/// A step's claim item: `reconcile-step#<id>`, gone a day later (TTL on
/// `expires_at`).
const STEP_KEY: &str = "reconcile-step#";
const CLAIM_KEPT: u64 = 24 * 60 * 60;

/// What a run has done so far. `segments_open` counts segments not yet at
/// their table's end (a continuation keeps its segment open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileCounts {
    pub segments_open: i64,
    pub scan_pages: i64,
    pub rows: i64,
    pub malformed_rows: i64,
    pub users: i64,
    pub sweep_pages: i64,
    pub repositories_swept: i64,
    pub granted: i64,
    pub changed: i64,
    pub revoked: i64,
    pub unchanged: i64,
    pub missing: i64,
    pub failed: i64,
    pub calls: i64,
    pub writes: i64,
}

impl ReconcileCounts {
    /// The counts as (attribute name, value): the stored item, the ADD
    /// expression and the reader all use these names.
    fn fields(&self) -> [(&'static str, i64); 15] {
        [
            ("segments_open", self.segments_open),
            ("scan_pages", self.scan_pages),
            ("rows", self.rows),
            ("malformed_rows", self.malformed_rows),
            ("users", self.users),
            ("sweep_pages", self.sweep_pages),
            ("repositories_swept", self.repositories_swept),
            ("granted", self.granted),
            ("changed", self.changed),
            ("revoked", self.revoked),
            ("unchanged", self.unchanged),
            ("missing", self.missing),
            ("failed", self.failed),
            ("calls", self.calls),
            ("writes", self.writes),
        ]
    }

    fn set(&mut self, name: &str, value: i64) {
        let slot = match name {
            "segments_open" => &mut self.segments_open,
            "scan_pages" => &mut self.scan_pages,
            "rows" => &mut self.rows,
            "malformed_rows" => &mut self.malformed_rows,
            "users" => &mut self.users,
            "sweep_pages" => &mut self.sweep_pages,
            "repositories_swept" => &mut self.repositories_swept,
            "granted" => &mut self.granted,
            "changed" => &mut self.changed,
            "revoked" => &mut self.revoked,
            "unchanged" => &mut self.unchanged,
            "missing" => &mut self.missing,
            "failed" => &mut self.failed,
            "calls" => &mut self.calls,
            "writes" => &mut self.writes,
            _ => return,
        };
        *slot = value;
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Segments are scanning the table.
    Scanning,
    /// Every segment is done; the sweep pages the repositories.
    Sweeping,
    Finished,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            RunState::Scanning => "scanning",
            RunState::Sweeping => "sweeping",
            RunState::Finished => "finished",
        }
    }

    fn parse(s: &str) -> Option<RunState> {
        Some(match s {
            "scanning" => RunState::Scanning,
            "sweeping" => RunState::Sweeping,
            "finished" => RunState::Finished,
            _ => return None,
        })
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileRun {
    pub id: ReconcileRunId,
    pub state: RunState,
    pub segments: u32,
    pub started_at_ms: u64,
    pub updated_at_ms: u64,
    pub counts: ReconcileCounts,
}

/// The run table (`RECONCILE_TABLE`): partition key `run` (string).
pub struct ReconcileRuns {
    table: RunTable,
}

fn from_item(item: &Item) -> Option<ReconcileRun> {
    let number = |k: &str| number(item, k).unwrap_or(0);
    let mut counts = ReconcileCounts::default();
    for (name, _) in ReconcileCounts::default().fields() {
        counts.set(name, number(name));
    }
    Some(ReconcileRun {
        id: ReconcileRunId::try_from(text(item, "id")?).ok()?,
        state: RunState::parse(&text(item, "state")?)?,
        segments: number("segments").clamp(0, u32::MAX as i64) as u32,
        started_at_ms: number("started_at_ms").max(0) as u64,
        updated_at_ms: number("updated_at_ms").max(0) as u64,
        counts,
    })
}

impl ReconcileRuns {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        ReconcileRuns {
            table: RunTable::new(client, table),
        }
    }

    /// The current (or last) run, read consistently.
    pub async fn current(&self) -> Result<Option<ReconcileRun>, AwsError> {
        Ok(self.table.get(RUN_KEY).await?.as_ref().and_then(from_item))
    }

    /// Stores `run` as the current one if the stored one is still
    /// `replaces` (or there is none); `Ok(false)` if another start won.
    pub async fn begin(
        &self,
        run: &ReconcileRun,
        replaces: Option<&ReconcileRunId>,
    ) -> Result<bool, AwsError> {
        let mut item = key(RUN_KEY);
        item.insert("id".into(), s(run.id.as_str()));
        item.insert("state".into(), s(run.state.as_str()));
        item.insert("segments".into(), n(run.segments.into()));
        item.insert("started_at_ms".into(), n(run.started_at_ms as i64));
        item.insert("updated_at_ms".into(), n(run.updated_at_ms as i64));
        for (name, value) in run.counts.fields() {
            item.insert(name.into(), n(value));
        }
        self.table
            .put_replacing(item, replaces.map(ReconcileRunId::as_str))
            .await
    }

    /// Adds `counts` to run `id`'s (and sets its state, if given). Returns
    /// the run's `segments_open` after the update, or `None` when `id` is
    /// no longer the current run (nothing is counted).
    pub async fn add(
        &self,
        id: &ReconcileRunId,
        counts: &ReconcileCounts,
        state: Option<RunState>,
    ) -> Result<Option<i64>, AwsError> {
        let sets: Vec<(&str, AttributeValue)> = state
            .map(|st| ("state", s(st.as_str())))
            .into_iter()
            .collect();
        let after = self
            .table
            .add(RUN_KEY, id.as_str(), &counts.fields(), &sets)
            .await?;
        Ok(after.map(|item| number(&item, "segments_open").unwrap_or(0)))
    }
}

impl ReconcileRuns {
    fn step_key(step: &StepId) -> Item {
        key(&format!("{STEP_KEY}{step}"))
    }

    /// Claims `step` until `lease_until_ms`; `Ok(false)` when it is done,
    /// or claimed by an invocation whose lease has not run out.
    pub async fn claim(&self, step: &StepId, lease_until_ms: u64) -> Result<bool, AwsError> {
        let now = now_ms();
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .set_key(Some(Self::step_key(step)))
            .update_expression("SET #lease = :lease, #expires = :expires")
            .condition_expression(
                "attribute_not_exists(#done) AND (attribute_not_exists(#lease) OR #lease < :now)",
            )
            .expression_attribute_names("#lease", "lease_until_ms")
            .expression_attribute_names("#expires", "expires_at")
            .expression_attribute_names("#done", "done")
            .expression_attribute_values(":lease", n(lease_until_ms as i64))
            .expression_attribute_values(":expires", n((now / 1000 + CLAIM_KEPT) as i64))
            .expression_attribute_values(":now", n(now as i64))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = AwsError::from_sdk("dynamodb:UpdateItem", e);
                if e.has_code("ConditionalCheckFailedException") {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// `step` is done: a redelivery of it is skipped.
    pub async fn step_done(&self, step: &StepId) -> Result<(), AwsError> {
        self.table
            .client()
            .update_item()
            .table_name(self.table.name())
            .set_key(Some(Self::step_key(step)))
            .update_expression("SET #done = :t")
            .expression_attribute_names("#done", "done")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        Ok(())
    }

    /// `step` failed: its retry may claim it at once.
    pub async fn release(&self, step: &StepId) -> Result<(), AwsError> {
        self.table
            .client()
            .delete_item()
            .table_name(self.table.name())
            .set_key(Some(Self::step_key(step)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:DeleteItem", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_stored_counts_when_read_back_then_every_field_and_the_state_round_trip() {
        let mut counts = ReconcileCounts::default();
        for (i, (name, _)) in ReconcileCounts::default().fields().iter().enumerate() {
            counts.set(name, i as i64 + 1);
        }
        let id = ReconcileRunId::new();
        let mut item = key(RUN_KEY);
        item.insert("id".into(), s(id.as_str()));
        item.insert("state".into(), s("sweeping"));
        item.insert("segments".into(), n(4));
        for (name, value) in counts.fields() {
            item.insert(name.into(), n(value));
        }
        let run = from_item(&item).expect("a run");
        assert_eq!(run.counts, counts);
        assert_eq!(run.state, RunState::Sweeping);
        assert_eq!((run.id, run.segments), (id, 4));
        item.insert("state".into(), s("paused"));
        assert_eq!(from_item(&item), None, "a state this code never writes");
    }
}
