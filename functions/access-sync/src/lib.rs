//! The access-sync Lambda: a thin adapter from DynamoDB Streams batches and
//! scheduled events to [`ecr_bridge_aws::access_sync::AccessSync`].

pub mod config;
pub mod event;
pub mod handler;
