//! Where completion events go: an EventBridge bus (PutEvents), so that a
//! pipeline can start the next step (a deployment in the target account)
//! the moment an image has landed. Announcing is best effort: a refused or
//! failed PutEvents is logged and counted, never a failed replication.

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::error::AwsError;

/// The `source` of every event ecr-bridge puts on a bus.
pub const EVENT_SOURCE: &str = "ecr-bridge";

/// PutEvents takes at most 10 entries a call.
const PUT_BATCH: usize = 10;

/// One event: its `detail-type` and `detail`.
#[derive(Debug, Clone, PartialEq)]
pub struct BusEvent {
    pub detail_type: &'static str,
    pub detail: Value,
}

/// What a put of events came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Announced {
    pub sent: u64,
    pub failed: u64,
}

pub trait EventBus: Send + Sync {
    /// Puts `events`; never fails: what did not go is counted in `failed`.
    fn put<'a>(&'a self, events: &'a [BusEvent]) -> BoxFuture<'a, Announced>;
}

/// An EventBridge bus, by name or ARN.
pub struct EventBridgeBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeBus {
    pub fn new(sdk: &aws_config::SdkConfig, bus: impl Into<String>) -> Self {
        EventBridgeBus {
            client: aws_sdk_eventbridge::Client::new(sdk),
            bus: bus.into(),
        }
    }

    async fn put_batch(&self, events: &[BusEvent]) -> Result<u64, AwsError> {
        let entries = events
            .iter()
            .map(|e| {
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(EVENT_SOURCE)
                    .detail_type(e.detail_type)
                    .detail(e.detail.to_string())
                    .build()
            })
            .collect::<Vec<_>>();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("events:PutEvents", e))?;
        for entry in out.entries().iter().filter(|e| e.error_code().is_some()) {
            tracing::warn!(
                bus = %self.bus, code = entry.error_code().unwrap_or(""),
                error = entry.error_message().unwrap_or(""), "completion event refused"
            );
        }
        Ok(u64::try_from(out.failed_entry_count()).unwrap_or(0))
    }
}

impl EventBus for EventBridgeBus {
    fn put<'a>(&'a self, events: &'a [BusEvent]) -> BoxFuture<'a, Announced> {
        Box::pin(async move {
            let mut announced = Announced::default();
            for chunk in events.chunks(PUT_BATCH) {
                let n = chunk.len() as u64;
                match self.put_batch(chunk).await {
                    Ok(failed) => {
                        announced.failed += failed.min(n);
                        announced.sent += n - failed.min(n);
                    }
                    Err(e) => {
                        tracing::warn!(bus = %self.bus, events = n, error = %e, "completion events not put");
                        announced.failed += n;
                    }
                }
            }
            announced
        })
    }
}
