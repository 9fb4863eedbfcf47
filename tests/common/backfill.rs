//! The backfill's AWS resources as the template creates them, in moto, and
//! the stand-in for the SQS event source mapping that drains its queue.

use ecr_bridge_aws::replicator::Replicator;
use image_replicator::config::Config;
use image_replicator::handler;
use serde_json::json;

use super::stage::{REGION, SOURCE};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// The run table (`BackfillRunTable`): partition key `run`.
pub async fn create_run_table(sdk: &aws_config::SdkConfig, name: &str) {
    aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("run")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("run")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create the run table in moto");
}

/// Plays the SQS event source mapping until the queue is empty: `workers`
/// concurrent loops, each taking one message at a time. Returns
/// (invocations, retried).
pub async fn drain(
    replicator: &(Replicator, Config),
    sqs: aws_sdk_sqs::Client,
    queue_url: &str,
    workers: usize,
) -> (usize, usize) {
    let workers = (0..workers).map(|w| {
        let sqs = sqs.clone();
        let queue_url = queue_url.to_string();
        async move {
            let (mut invocations, mut retried) = (0, 0);
            loop {
                let got = sqs
                    .receive_message()
                    .queue_url(&queue_url)
                    .max_number_of_messages(1)
                    .visibility_timeout(60)
                    .send()
                    .await
                    .expect("receive");
                let Some(message) = got.messages().first() else {
                    break;
                };
                let event = json!({"Records": [{
                    "messageId": message.message_id().unwrap(),
                    "receiptHandle": message.receipt_handle().unwrap(),
                    "body": message.body().unwrap(),
                    "attributes": {}, "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": format!("arn:aws:sqs:{REGION}:{SOURCE}:ecr-bridge-backfill"),
                    "awsRegion": REGION
                }]});
                let (r, c) = replicator;
                let response = handler::handle(r, c, event).await.expect("sqs batch");
                invocations += 1;
                let handle = message.receipt_handle().unwrap();
                if response["batchItemFailures"].as_array().unwrap().is_empty() {
                    sqs.delete_message()
                        .queue_url(&queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete");
                } else {
                    retried += 1;
                    eprintln!("worker {w}: retrying {response}");
                    sqs.change_message_visibility()
                        .queue_url(&queue_url)
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .send()
                        .await
                        .expect("visibility");
                }
            }
            (invocations, retried)
        }
    });
    let mut totals = (0, 0);
    for (i, r) in futures_util::future::join_all(workers).await {
        totals.0 += i;
        totals.1 += r;
    }
    totals
}
