//! The work queue backfill fills and the replicator drains, and the work
//! item's format with its parser ([`item`]): one image to replicate per
//! message; and the backfill's listing steps ([`step`]), which fill it.

mod item;
mod step;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::error::AwsError;
pub use item::{
    as_object, parse_image_action, run_of, work_item, Envelope, EventError, ImageActionDetail,
    Parsed, BACKFILL_SOURCE, DETAIL_TYPE, RUN_FIELD,
};
pub use step::{Listing, ListingStep, RunId, SourceKey, STEP_FIELD};

/// SQS takes at most 10 messages per SendMessageBatch.
const SEND_BATCH: usize = 10;

/// Work items not yet done: waiting, and being worked on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    pub waiting: u64,
    pub in_flight: u64,
}

/// Where work items go: SQS in AWS (its event source mapping caps how many
/// replicators run at once); tests may use the same queue in moto.
pub trait WorkQueue: Send + Sync {
    /// Sends the bodies; returns how many were accepted.
    fn send<'a>(&'a self, bodies: &'a [String]) -> BoxFuture<'a, Result<usize, AwsError>>;
    fn depth(&self) -> BoxFuture<'_, Result<QueueDepth, AwsError>>;
}

/// An SQS standard queue.
pub struct SqsWorkQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl SqsWorkQueue {
    pub fn new(sdk: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        SqsWorkQueue {
            sqs: aws_sdk_sqs::Client::new(sdk),
            url: url.into(),
        }
    }
}

impl WorkQueue for SqsWorkQueue {
    fn send<'a>(&'a self, bodies: &'a [String]) -> BoxFuture<'a, Result<usize, AwsError>> {
        Box::pin(async move {
            let mut accepted = 0;
            for chunk in bodies.chunks(SEND_BATCH) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, body)| {
                        aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(body)
                            .build()
                            .map_err(|e| AwsError::permanent("sqs:SendMessageBatch", e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .sqs
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("sqs:SendMessageBatch", e))?;
                accepted += out.successful().len();
                for f in out.failed() {
                    tracing::warn!(
                        code = f.code(),
                        message = f.message().unwrap_or(""),
                        outcome = "enqueue_failed",
                        "work item refused by the queue"
                    );
                }
            }
            Ok(accepted)
        })
    }

    fn depth(&self) -> BoxFuture<'_, Result<QueueDepth, AwsError>> {
        Box::pin(async move {
            use aws_sdk_sqs::types::QueueAttributeName as A;
            let out = self
                .sqs
                .get_queue_attributes()
                .queue_url(&self.url)
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("sqs:GetQueueAttributes", e))?;
            let get = |name: A| {
                out.attributes()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            Ok(QueueDepth {
                waiting: get(A::ApproximateNumberOfMessages),
                in_flight: get(A::ApproximateNumberOfMessagesNotVisible),
            })
        })
    }
}
